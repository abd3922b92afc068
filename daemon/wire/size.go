package wire

import "github.com/cloudknowledge/ck/store"

// RecordSize is the length of r's canonical CBOR (store.Record.MarshalCBOR),
// computed without encoding it: a 64 MiB value need not be copied to learn
// that it does not fit a datagram. An ANSWER's sender uses it to skip
// encoding one with a record that cannot fit; for other messages, encode
// and compare the frame's length. A test holds it to the real encoding.
func RecordSize(r *store.Record) int {
	n := 1 // map head, 9 pairs
	n += 1 + headLen(uint64(len(r.Key))) + len(r.Key)
	n += 1 + headLen(uint64(len(r.Value))) + len(r.Value)
	n += 1 + 1 // deleted
	entries, vv := 0, 0
	for _, l := range r.VV {
		if l > 0 { // zero entries are not encoded
			entries++
			vv += idLen + headLen(l)
		}
	}
	n += 1 + headLen(uint64(entries)) + vv
	n += 1 + headLen(r.Lamport)
	n += 1 + idLen                              // origin
	n += 1 + 1 + headLen(r.LWW.Lamport) + idLen // lww: [lamport, origin]
	n += 1 + intLen(r.At)
	n += 1 + 1 // fallback
	if r.TTL != 0 {
		n += 1 + intLen(r.TTL)
	}
	if r.Ephemeral != 0 {
		n += 1 + headLen(r.Ephemeral)
	}
	return n
}

// UpdateSize is the exact length of the frame Encode makes of
// NewUpdate(*r) with s: what the origin of a write compares with
// max_datagram to choose between UPDATE and ANNOUNCE.
func UpdateSize(r *store.Record, s Sealer) int {
	// type byte; map head; key 1, record; key 2, 16-byte string; key 5,
	// the ttl left (when not 0).
	n := HeaderSize + 1 + 1 + 1 + RecordSize(r) + 1 + hashLen + s.Overhead()
	if r.Left > 0 {
		n += 1 + intLen(r.Left)
	}
	return n
}

// MoreSize is how many bytes r, asking req for ACKs, adds to an UPDATE's
// frame as an entry of its More: the entry's map and fields (the array's
// head is MoreHeadSize).
func MoreSize(r *store.Record, req AckRequest) int {
	n := 1 + 1 + RecordSize(r) + 1 + hashLen + AckRequestSize(req)
	if r.Left > 0 {
		n += 1 + intLen(r.Left)
	}
	return n
}

// MoreHeadSize is what an UPDATE's frame grows by for a More of n entries,
// beyond the entries themselves: the field's key and the array's head.
func MoreHeadSize(n int) int { return 1 + headLen(uint64(n)) }

// FollowSize is how many bytes an Update.Follow of f adds to an UPDATE's
// frame: nothing for 0, else the field's key and the number.
func FollowSize(f uint8) int {
	if f == 0 {
		return 0
	}
	return 1 + headLen(uint64(f))
}

// AckRequestSize is how many bytes r adds to an UPDATE's frame (what
// UpdateSize counts without it): its fields, as long as the body map keeps
// fewer than 24 pairs, as it does.
func AckRequestSize(r AckRequest) int {
	n := 0
	if r.NoAck {
		n += 1 + 1
	}
	if len(r.AckFrom) > 0 {
		n += 1 + headLen(uint64(len(r.AckFrom))) + len(r.AckFrom)*idLen
	}
	return n
}

// A node id or hash as a CBOR byte string: head, 16 bytes.
const (
	idLen   = 1 + len(store.NodeID{})
	hashLen = 1 + len(store.Hash{})
)

// headLen is the length of a CBOR head carrying argument v, shortest form.
func headLen(v uint64) int {
	switch {
	case v < 24:
		return 1
	case v <= 0xff:
		return 2
	case v <= 0xffff:
		return 3
	case v <= 0xffffffff:
		return 5
	}
	return 9
}

// intLen is the length of a CBOR integer (major type 0 or 1).
func intLen(v int64) int {
	if v < 0 {
		return headLen(uint64(^v)) // -1 - v
	}
	return headLen(uint64(v))
}

// sizeHint guesses a body's length so Encode allocates once.
func sizeHint(msg Message) int {
	switch m := msg.(type) {
	case *Update:
		// Each write's fields, with room for its Left (9 bytes at most);
		// More's head and Follow (3 bytes each at most).
		n := 6 + updateHint(m)
		for i := range m.More {
			n += updateHint(&m.More[i])
		}
		return n
	case *Ack:
		n := 16 + len(m.Key) + 2*idLen + 9 + 9 // map, keys, key, ids, lamport, More's head
		for _, e := range m.More {
			n += 1 + 9 + len(e.Key) + idLen + 9
		}
		return n
	case *Answer:
		if m.Record != nil {
			return 64 + 2*RecordSize(m.Record) // the VV twice, roughly
		}
	case *FetchReply:
		if m.Record != nil {
			return 8 + RecordSize(m.Record)
		}
	case *SyncRecords:
		n := 8
		for i := range m.Records {
			n += RecordSize(&m.Records[i])
		}
		return n
	case *SyncTop, *SyncLeaves:
		return 16 + len(digestsHead) + digestsLen
	case *SyncKeys:
		return 16 + len(m.Entries)*(1+2*hashLen)
	}
	return 128
}

// updateHint is one write of an UPDATE's share of sizeHint.
func updateHint(u *Update) int {
	return 3 + RecordSize(&u.Record) + hashLen + AckRequestSize(u.AckRequest) + 10
}
