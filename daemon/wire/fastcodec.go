package wire

import (
	"math"

	"github.com/cloudknowledge/ck/internal/cborlite"
	"github.com/cloudknowledge/ck/store"
)

// UPDATE and ACK are most of what a replicated write costs a node in this
// package, and the cbor package encodes and decodes them by reflection: a
// tenth of a peer's CPU per write (docs/ARCHITECTURE.md, "The wire
// codec"). The functions here write them directly, byte for byte what
// encMode writes (TestFastCodec compares them on random messages), and
// read directly the one layout that encoder writes. Anything else — keys
// out of order or unknown, a non-shortest map head, a null, a tag —
// makes the reader give up, and decodeBody decodes the body by reflection
// as before, which decides and refuses what it refuses. So the fast
// reader only ever accepts a subset of what decMode accepts, and returns
// for it the message decMode returns (FuzzFastDecode holds it to that).
// Records inside are the store's (store.Record.MarshalCBOR and
// UnmarshalCBOR, which have their own fast path), as with decMode.

// Smallest encodings of a More entry, which bound how many entries a
// declared length may make the reader allocate: an UPDATE's map head,
// record (every field at its shortest) and hash; an ACK's array of key,
// origin and lamport.
const (
	minRecordLen    = 1 + 2 + 2 + 2 + 2 + 2 + (1 + idLen) + (1 + 1 + 1 + idLen) + 2 + 2
	minMoreUpdate   = 1 + 1 + minRecordLen + 1 + hashLen
	minAckEntryLen  = 1 + 1 + idLen + 1
	recordSkipDepth = 2 // a record's map and the containers in it (vv, lww)
)

// appendFast appends msg's CBOR map as encMode would, if msg is of a type
// written here.
func appendFast(b []byte, msg Message) ([]byte, bool) {
	switch m := msg.(type) {
	case *Update:
		return appendUpdate(b, m), true
	case *Ack:
		return appendAck(b, m), true
	}
	return b, false
}

func appendInt(b []byte, v int64) []byte {
	if v < 0 {
		return cborlite.AppendHead(b, cborlite.Neg, uint64(^v)) // -1 - v
	}
	return cborlite.AppendHead(b, cborlite.Uint, uint64(v))
}

// appendUpdate writes the fields in key order, leaving out the omitempty
// ones that are empty, as the struct tags tell encMode to.
func appendUpdate(b []byte, u *Update) []byte {
	n := 2 // record and hash, always
	for _, present := range [...]bool{u.NoAck, len(u.AckFrom) > 0, u.Left != 0, len(u.More) > 0, u.Follow != 0} {
		if present {
			n++
		}
	}
	b = append(b, cborlite.Map|byte(n), 1)
	if u.Raw != nil {
		b = append(b, u.Raw...)
	} else {
		rec, _ := u.Record.MarshalCBOR() // never fails: it only appends
		b = append(b, rec...)
	}
	b = cborlite.AppendID(append(b, 2), u.Hash)
	if u.NoAck {
		b = append(b, 3, cborlite.True)
	}
	if len(u.AckFrom) > 0 {
		b = cborlite.AppendHead(append(b, 4), cborlite.Array, uint64(len(u.AckFrom)))
		for _, id := range u.AckFrom {
			b = cborlite.AppendID(b, id)
		}
	}
	if u.Left != 0 {
		b = appendInt(append(b, 5), u.Left)
	}
	if len(u.More) > 0 {
		b = cborlite.AppendHead(append(b, 6), cborlite.Array, uint64(len(u.More)))
		for i := range u.More {
			b = appendUpdate(b, &u.More[i])
		}
	}
	if u.Follow != 0 {
		b = cborlite.AppendHead(append(b, 7), cborlite.Uint, uint64(u.Follow))
	}
	return b
}

func appendAck(b []byte, a *Ack) []byte {
	n := byte(4)
	if len(a.More) > 0 {
		n++
	}
	b = cborlite.AppendText(append(b, cborlite.Map|n, 1), a.Key)
	b = cborlite.AppendID(append(b, 2), a.Origin)
	b = cborlite.AppendHead(append(b, 3), cborlite.Uint, a.Lamport)
	b = cborlite.AppendID(append(b, 4), a.From)
	if len(a.More) > 0 {
		b = cborlite.AppendHead(append(b, 5), cborlite.Array, uint64(len(a.More)))
		for _, e := range a.More {
			b = cborlite.AppendText(append(b, cborlite.Array|3), e.Key)
			b = cborlite.AppendHead(cborlite.AppendID(b, e.Origin), cborlite.Uint, e.Lamport)
		}
	}
	return b
}

// parseFast decodes the CBOR map of a body of type t, if t is a type read
// here and b is in the layout appendFast writes; ok false means "decode
// it by reflection", never "refuse it".
func parseFast(t MsgType, b []byte) (msg Message, ok bool) {
	p := parser{cborlite.NewReader(b)}
	switch t {
	case TypeUpdate:
		u := new(Update)
		p.update(u, false)
		msg = u
	case TypeAck:
		a := new(Ack)
		p.ack(a)
		msg = a
	default:
		return nil, false
	}
	if !p.OK || len(p.B) != 0 {
		return nil, false
	}
	return msg, true
}

// parser reads the canonical layout (cborlite.Reader): OK turns false
// at the first thing it does not expect, and stays false.
type parser struct{ cborlite.Reader }

// count reads an array head whose entries take at least minLen bytes
// each, and fails if the rest of the body cannot hold them or there are
// more than limit: what the caller allocates is bounded by the frame.
func (p *parser) count(limit, minLen int) int {
	n := p.Head(cborlite.Array)
	if !p.OK || n > uint64(limit) || n*uint64(minLen) > uint64(len(p.B)) {
		p.Fail()
		return 0
	}
	return int(n)
}

// id reads a 16-byte string with its one-byte head: a node id or a hash.
// decMode would read a longer head too, or pad or truncate other lengths
// into a hash; those are its to decide.
func (p *parser) id() [16]byte {
	if len(p.B) > 0 && p.B[0] != cborlite.Bytes|16 {
		p.Fail()
	}
	return p.ID()
}

func (p *parser) int64() int64 {
	if len(p.B) > 0 && p.B[0]&0xe0 == cborlite.Neg {
		n := p.Head(cborlite.Neg)
		if n > math.MaxInt64 {
			p.Fail()
		}
		return ^int64(n)
	}
	n := p.Head(cborlite.Uint)
	if n > math.MaxInt64 {
		p.Fail()
	}
	return int64(n)
}

// mapHead reads the head of a map with fewer than 24 pairs, as every map
// written here is, and returns its pair count.
func (p *parser) mapHead() int {
	c := p.Byte()
	if c&0xe0 != cborlite.Map || c&0x1f >= 24 {
		p.Fail()
		return 0
	}
	return int(c & 0x1f)
}

// key reads the next map key: a known one (1..last), above the one
// before (the canonical order, and so no duplicates).
func (p *parser) key(prev, last byte) byte {
	k := p.Byte()
	if k <= prev || k > last {
		p.Fail()
	}
	return k
}

// update reads an UPDATE's map; in More (inMore) a More of its own is
// refused by check anyway, so it is left to decMode.
func (p *parser) update(u *Update, inMore bool) {
	n := p.mapHead()
	var k, have byte
	for range n {
		if k = p.key(k, 7); !p.OK {
			return
		}
		switch k {
		case 1:
			p.record(&u.Record)
		case 2:
			u.Hash = p.id()
		case 3:
			u.NoAck = p.Bool()
		case 4:
			u.AckFrom = make([]store.NodeID, p.count(MaxAckFrom, idLen))
			for i := range u.AckFrom {
				u.AckFrom[i] = p.id()
			}
		case 5:
			u.Left = p.int64()
		case 6:
			if inMore {
				p.Fail()
				return
			}
			u.More = make([]Update, p.count(MaxEntries, minMoreUpdate))
			for i := 0; i < len(u.More) && p.OK; i++ {
				p.update(&u.More[i], true)
			}
		case 7:
			f := p.Head(cborlite.Uint)
			if f > MaxFollow { // decMode: overflows uint8
				p.Fail()
			}
			u.Follow = uint8(f)
		}
		have |= 1 << k
	}
	// The encoder always writes the record and the hash; the minimum
	// size of a More entry counts on both.
	if have&(1<<1|1<<2) != 1<<1|1<<2 {
		p.Fail()
	}
}

// record hands the record's bytes to store.Record.UnmarshalCBOR, as
// decMode does, once skip has found them well formed.
func (p *parser) record(r *store.Record) {
	start := p.B
	if len(start) == 0 || start[0]&0xe0 != cborlite.Map {
		p.Fail()
		return
	}
	p.skip(recordSkipDepth)
	if !p.OK {
		return
	}
	if err := r.UnmarshalCBOR(start[:len(start)-len(p.B)]); err != nil {
		p.Fail()
	}
}

// skip passes over one well-formed data item of at most depth levels of
// arrays and maps. It accepts less than decMode's well-formedness check
// (no tags, no indefinite lengths, no simple values but false, true and
// null, no floats), so what it passes decMode's check passes too: the
// record sits at most four levels deep in a body, and with its own two
// within decMode's maxNesting.
func (p *parser) skip(depth int) {
	if !p.OK || len(p.B) == 0 {
		p.Fail()
		return
	}
	c := p.B[0]
	switch major := c & 0xe0; major {
	case cborlite.Uint, cborlite.Neg:
		p.Head(major)
	case cborlite.Bytes, cborlite.Text:
		p.Bytes(p.Head(major))
	case cborlite.Array, cborlite.Map:
		n, limit := p.Head(major), uint64(MaxEntries)
		if major == cborlite.Map {
			limit = maxMapPairs
		}
		if !p.OK || depth == 0 || n > limit {
			p.Fail()
			return
		}
		if major == cborlite.Map {
			n *= 2 // keys and values
		}
		if n > uint64(len(p.B)) { // each item takes a byte at least
			p.Fail()
			return
		}
		for range n {
			if p.skip(depth - 1); !p.OK {
				return
			}
		}
	default:
		if c != cborlite.False && c != cborlite.True && c != cborlite.Null {
			p.Fail()
			return
		}
		p.B = p.B[1:]
	}
}

func (p *parser) ack(a *Ack) {
	n := p.mapHead()
	var k byte
	for range n {
		if k = p.key(k, 5); !p.OK {
			return
		}
		switch k {
		case 1:
			a.Key = p.Text()
		case 2:
			a.Origin = p.id()
		case 3:
			a.Lamport = p.Head(cborlite.Uint)
		case 4:
			a.From = p.id()
		case 5:
			a.More = make([]AckEntry, p.count(MaxEntries, minAckEntryLen))
			for i := range a.More {
				e := &a.More[i]
				if p.Byte() != cborlite.Array|3 { // toarray: exactly the three fields
					p.Fail()
					return
				}
				e.Key, e.Origin, e.Lamport = p.Text(), p.id(), p.Head(cborlite.Uint)
			}
		}
	}
}
