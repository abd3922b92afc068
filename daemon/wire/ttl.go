package wire

import (
	"errors"

	"github.com/cloudknowledge/ck/store"
)

// A record with a TTL travels with the lifetime it has left where it is
// sent from (store.Record.Left, in ms), which is not part of the record's
// bytes or hash: the receiver's deadline is its own now + that (never
// later than one it holds), so no clock is shared (docs/PROTOCOL.md,
// Expiring keys). Each message that carries records carries
// their Left in a field of its own: UPDATE 5, ANSWER 8, FETCH_REPLY 3,
// SYNC_RECORDS 2 (a list in the records' order, left out when no record
// has a TTL). A receiver that finds it missing for a record with a TTL
// takes 0: expired at once, never a longer life.

// carryLeft copies the records' Left into the message's own fields
// (Encode).
func carryLeft(msg Message) {
	switch m := msg.(type) {
	case *Update:
		m.Left = m.Record.Left
		for i := range m.More {
			m.More[i].Left = m.More[i].Record.Left
		}
	case *Answer:
		if m.Record != nil {
			m.Left = m.Record.Left
		}
	case *FetchReply:
		if m.Record != nil {
			m.Left = m.Record.Left
		}
	case *SyncRecords:
		m.Left = nil
		for i, r := range m.Records {
			if r.TTL > 0 {
				m.Left = make([]int64, len(m.Records))
				for j := i; j < len(m.Records); j++ {
					m.Left[j] = m.Records[j].Left
				}
				break
			}
		}
	}
}

// takeLeft copies the message's Left fields into its records (decode).
func takeLeft(msg Message) error {
	switch m := msg.(type) {
	case *Update:
		for i := range m.More {
			if err := setLeft(&m.More[i].Record, m.More[i].Left); err != nil {
				return err
			}
		}
		return setLeft(&m.Record, m.Left)
	case *Answer:
		if m.Record != nil {
			return setLeft(m.Record, m.Left)
		}
	case *FetchReply:
		if m.Record != nil {
			return setLeft(m.Record, m.Left)
		}
	case *SyncRecords:
		if m.Left == nil {
			for i := range m.Records {
				m.Records[i].Left = 0
			}
			return nil
		}
		if len(m.Left) != len(m.Records) {
			return errors.New("left does not match the records")
		}
		for i := range m.Records {
			if err := setLeft(&m.Records[i], m.Left[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

func setLeft(r *store.Record, left int64) error {
	if left < 0 || left > max(r.TTL, 0) {
		return errors.New("left outside 0..ttl")
	}
	r.Left = left
	return nil
}
