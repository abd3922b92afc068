package wire

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/cloudknowledge/ck/store"
	"github.com/fxamacker/cbor/v2"
)

// Decode limits. Nothing in a body is allocated before the CBOR decoder
// has checked the whole body well-formed (or, for the direct reader of
// fastcodec.go, checked a declared count against the bytes left), so no
// declared length can exceed what the frame holds; these bound what a
// small frame can make the decoder build (an array of 10^6 empty records
// from 1 MB, say).
const (
	// MaxEntries bounds a SyncKeys list or a SyncRecords batch.
	MaxEntries = 1 << 16
	// maxMapPairs matches the store's bound on version vector entries.
	maxMapPairs = 1 << 16
	// Message → records → record → vv, with room for later fields.
	maxNesting = 8
)

var (
	// encMode sorts map keys (the VV of an Answer) so a message has one
	// encoding: tests and fuzzing compare bytes. Records embed their own
	// canonical encoding (store.Record.MarshalCBOR).
	encMode = func() cbor.UserBufferEncMode {
		m, err := cbor.EncOptions{Sort: cbor.SortCoreDeterministic}.UserBufferEncMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
	// decMode ignores unknown fields (a later minor version may add some)
	// and refuses what would make a field ambiguous: duplicate keys,
	// indefinite lengths, tags.
	decMode = func() cbor.DecMode {
		m, err := cbor.DecOptions{
			DupMapKey:        cbor.DupMapKeyEnforcedAPF,
			MaxNestedLevels:  maxNesting,
			MaxArrayElements: MaxEntries,
			MaxMapPairs:      maxMapPairs,
			IndefLength:      cbor.IndefLengthForbidden,
			TagsMd:           cbor.TagsForbidden,
		}.DecMode()
		if err != nil {
			panic(err)
		}
		return m
	}()
)

// decodeBody decodes an opened body: the type byte, then a CBOR map. With
// fast, UPDATE and ACK in the layout Encode writes are read directly
// (fastcodec.go); everything else, and always without fast, by reflection.
func decodeBody(h Header, body []byte, fast bool) (Message, error) {
	if len(body) < 1 {
		return nil, ErrShort
	}
	t := MsgType(body[0])
	msg := newMessage(t)
	if msg == nil {
		return nil, fmt.Errorf("%w: %d", ErrType, body[0])
	}
	// A map, not null: CBOR null would decode into any struct as nothing.
	if len(body) < 2 || body[1]>>5 != 5 {
		return nil, fmt.Errorf("%w: %s: body is not a map", ErrMalformed, t)
	}
	parsed, ok := msg, false
	if fast {
		parsed, ok = parseFast(t, body[1:])
	}
	if ok {
		msg = parsed
	} else if err := decMode.Unmarshal(body[1:], msg); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, t, err)
	}
	check := msg.check
	if u, ok := msg.(*Update); ok {
		check = u.checkReceived
	}
	if err := check(h); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, t, err)
	}
	if err := takeLeft(msg); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, t, err)
	}
	return msg, nil
}

// Digests is a level of the digest tree: 256 top nodes, or the 256 leaves
// under one. On the wire it is one 4,096-byte string, exactly.
type Digests [256]store.Hash

const digestsLen = 256 * len(store.Hash{})

// digestsHead is the CBOR head of a 4,096-byte byte string.
var digestsHead = [3]byte{0x59, byte(digestsLen >> 8), byte(digestsLen & 0xff)}

// MarshalCBOR writes d as one byte string.
func (d Digests) MarshalCBOR() ([]byte, error) {
	b := make([]byte, 0, len(digestsHead)+digestsLen)
	b = append(b, digestsHead[:]...)
	for i := range d {
		b = append(b, d[i][:]...)
	}
	return b, nil
}

// UnmarshalCBOR insists on exactly 4,096 bytes: the decoder would
// otherwise zero-fill a short array, inventing differences.
func (d *Digests) UnmarshalCBOR(b []byte) error {
	if len(b) != len(digestsHead)+digestsLen || !bytes.Equal(b[:3], digestsHead[:]) {
		return errors.New("digests: want a byte string of 4096 bytes")
	}
	b = b[len(digestsHead):]
	for i := range d {
		d[i] = store.Hash(b[i*16 : i*16+16])
	}
	return nil
}

var (
	_ cbor.Marshaler   = Digests{}
	_ cbor.Unmarshaler = (*Digests)(nil)
)

func (m *Hello) check(h Header) error {
	if m.ID != h.Sender || m.Epoch != h.Epoch {
		return errors.New("id or epoch differs from the envelope's")
	}
	return nil
}

func (m *Bye) check(h Header) error {
	if m.ID != h.Sender || m.Epoch != h.Epoch {
		return errors.New("id or epoch differs from the envelope's")
	}
	return nil
}

func (m *Update) check(Header) error { return m.checkAll(false) }

// checkReceived is check for a decoded UPDATE: each write's Raw is set to
// the record's encoding its hash was checked over, for the receiver's
// store to take as it is (store.Applier.ApplyHashed).
func (m *Update) checkReceived(Header) error { return m.checkAll(true) }

func (m *Update) checkAll(keep bool) error {
	if err := m.checkOne(keep); err != nil {
		return err
	}
	for i := range m.More {
		u := &m.More[i]
		if len(u.More) > 0 {
			return errors.New("an update in more has more of its own")
		}
		if err := u.checkOne(keep); err != nil {
			return fmt.Errorf("more[%d]: %w", i, err)
		}
	}
	return nil
}

func (m *Update) checkOne(keep bool) error {
	switch {
	case keep:
		raw, h := m.Record.Encoded()
		if h != m.Hash {
			return errors.New("hash is not the record's")
		}
		m.Raw = raw
	case m.Raw == nil && m.Record.Hash() != m.Hash:
		// A sender's Raw is its store's encoding, hashed there (Update.Raw).
		return errors.New("hash is not the record's")
	}
	return m.AckRequest.check()
}

func (m *Announce) check(Header) error {
	if store.KeyHash(m.Key) != m.KeyHash {
		return errors.New("key hash is not the key's")
	}
	return m.Acks().check()
}

func (m *Ack) check(h Header) error {
	if m.From != h.Sender {
		return errors.New("from differs from the envelope's sender")
	}
	return nil
}

func (m *Answer) check(Header) error {
	r := m.Record
	switch {
	case r == nil:
		return nil
	case !m.Found:
		return errors.New("record in a not-found answer")
	case r.Hash() != m.Hash || r.Lamport != m.Lamport || r.Deleted != m.Deleted || !r.VV.Equal(m.VV):
		return errors.New("record differs from the answer's version")
	}
	return nil
}

func (m *FetchReply) check(Header) error {
	if m.Found != (m.Record != nil) {
		return errors.New("found and record disagree")
	}
	return nil
}

func (m *SyncKeys) check(Header) error {
	for _, e := range m.Entries {
		if e.KeyHash.Leaf() != m.Leaf {
			return fmt.Errorf("key hash %s outside leaf %d", e.KeyHash, m.Leaf)
		}
	}
	return nil
}

func (m *Query) check(Header) error {
	if (m.HaveHash != nil) != (len(m.HaveVV) > 0) {
		return errors.New("have_vv and have_hash disagree")
	}
	return nil
}

func (*Fetch) check(Header) error       { return nil }
func (*SyncTop) check(Header) error     { return nil }
func (*SyncLeaves) check(Header) error  { return nil }
func (*SyncRecords) check(Header) error { return nil }
func (*SyncDone) check(Header) error    { return nil }
