package wire

import (
	"encoding/binary"
	"math"
	"unicode/utf8"

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

// CBOR major types and simple values.
const (
	cborUint  = 0 << 5
	cborNeg   = 1 << 5
	cborBytes = 2 << 5
	cborText  = 3 << 5
	cborArray = 4 << 5
	cborMap   = 5 << 5
	cborFalse = 0xf4
	cborTrue  = 0xf5
	cborNull  = 0xf6
)

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

// appendHead appends a CBOR head in its shortest form, as encMode does.
func appendHead(b []byte, major byte, n uint64) []byte {
	switch {
	case n < 24:
		return append(b, major|byte(n))
	case n <= math.MaxUint8:
		return append(b, major|24, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, major|25), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, major|26), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, major|27), n)
}

func appendInt(b []byte, v int64) []byte {
	if v < 0 {
		return appendHead(b, cborNeg, uint64(^v)) // -1 - v
	}
	return appendHead(b, cborUint, uint64(v))
}

func appendID(b []byte, id [16]byte) []byte {
	return append(append(b, cborBytes|16), id[:]...)
}

func appendText(b []byte, s string) []byte {
	return append(appendHead(b, cborText, uint64(len(s))), s...)
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
	b = append(b, cborMap|byte(n), 1)
	if u.Raw != nil {
		b = append(b, u.Raw...)
	} else {
		rec, _ := u.Record.MarshalCBOR() // never fails: it only appends
		b = append(b, rec...)
	}
	b = appendID(append(b, 2), u.Hash)
	if u.NoAck {
		b = append(b, 3, cborTrue)
	}
	if len(u.AckFrom) > 0 {
		b = appendHead(append(b, 4), cborArray, uint64(len(u.AckFrom)))
		for _, id := range u.AckFrom {
			b = appendID(b, id)
		}
	}
	if u.Left != 0 {
		b = appendInt(append(b, 5), u.Left)
	}
	if len(u.More) > 0 {
		b = appendHead(append(b, 6), cborArray, uint64(len(u.More)))
		for i := range u.More {
			b = appendUpdate(b, &u.More[i])
		}
	}
	if u.Follow != 0 {
		b = appendHead(append(b, 7), cborUint, uint64(u.Follow))
	}
	return b
}

func appendAck(b []byte, a *Ack) []byte {
	n := byte(4)
	if len(a.More) > 0 {
		n++
	}
	b = appendText(append(b, cborMap|n, 1), a.Key)
	b = appendID(append(b, 2), a.Origin)
	b = appendHead(append(b, 3), cborUint, a.Lamport)
	b = appendID(append(b, 4), a.From)
	if len(a.More) > 0 {
		b = appendHead(append(b, 5), cborArray, uint64(len(a.More)))
		for _, e := range a.More {
			b = appendText(append(b, cborArray|3), e.Key)
			b = appendHead(appendID(b, e.Origin), cborUint, e.Lamport)
		}
	}
	return b
}

// parseFast decodes the CBOR map of a body of type t, if t is a type read
// here and b is in the layout appendFast writes; ok false means "decode
// it by reflection", never "refuse it".
func parseFast(t MsgType, b []byte) (msg Message, ok bool) {
	p := parser{b: b, ok: true}
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
	if !p.ok || len(p.b) != 0 {
		return nil, false
	}
	return msg, true
}

// parser reads the canonical layout; ok turns false at the first thing it
// does not expect, and stays false.
type parser struct {
	b  []byte
	ok bool
}

func (p *parser) fail() { p.ok = false }

func (p *parser) byte() byte {
	if !p.ok || len(p.b) == 0 {
		p.fail()
		return 0
	}
	c := p.b[0]
	p.b = p.b[1:]
	return c
}

// head reads a head of the given major type, of any width (decMode
// accepts them all and reads the same number), and returns its argument.
// Indefinite lengths and reserved values are not ours.
func (p *parser) head(major byte) uint64 {
	c := p.byte()
	if c&0xe0 != major {
		p.fail()
		return 0
	}
	var n int
	switch ai := c & 0x1f; {
	case ai < 24:
		return uint64(ai)
	case ai <= 27:
		n = 1 << (ai - 24)
	default:
		p.fail()
		return 0
	}
	if !p.ok || len(p.b) < n {
		p.fail()
		return 0
	}
	var v uint64
	for _, d := range p.b[:n] {
		v = v<<8 | uint64(d)
	}
	p.b = p.b[n:]
	return v
}

// bytes returns the next n bytes, without copying.
func (p *parser) bytes(n uint64) []byte {
	if !p.ok || uint64(len(p.b)) < n {
		p.fail()
		return nil
	}
	v := p.b[:n:n]
	p.b = p.b[n:]
	return v
}

// count reads an array head whose entries take at least minLen bytes
// each, and fails if the rest of the body cannot hold them or there are
// more than limit: what the caller allocates is bounded by the frame.
func (p *parser) count(limit, minLen int) int {
	n := p.head(cborArray)
	if !p.ok || n > uint64(limit) || n*uint64(minLen) > uint64(len(p.b)) {
		p.fail()
		return 0
	}
	return int(n)
}

func (p *parser) bool() bool {
	switch p.byte() {
	case cborTrue:
		return true
	case cborFalse:
		return false
	}
	p.fail()
	return false
}

// id reads a 16-byte string: a node id or a hash. decMode would pad or
// truncate other lengths into a hash; they are its to decide.
func (p *parser) id() (id [16]byte) {
	if p.byte() != cborBytes|16 {
		p.fail()
		return id
	}
	copy(id[:], p.bytes(16))
	return id
}

func (p *parser) text() string {
	v := p.bytes(p.head(cborText))
	if !utf8.Valid(v) { // decMode refuses invalid UTF-8
		p.fail()
	}
	return string(v)
}

func (p *parser) int64() int64 {
	if len(p.b) > 0 && p.b[0]&0xe0 == cborNeg {
		n := p.head(cborNeg)
		if n > math.MaxInt64 {
			p.fail()
		}
		return ^int64(n)
	}
	n := p.head(cborUint)
	if n > math.MaxInt64 {
		p.fail()
	}
	return int64(n)
}

// mapHead reads the head of a map with fewer than 24 pairs, as every map
// written here is, and returns its pair count.
func (p *parser) mapHead() int {
	c := p.byte()
	if c&0xe0 != cborMap || c&0x1f >= 24 {
		p.fail()
		return 0
	}
	return int(c & 0x1f)
}

// key reads the next map key: a known one (1..last), above the one
// before (the canonical order, and so no duplicates).
func (p *parser) key(prev, last byte) byte {
	k := p.byte()
	if k <= prev || k > last {
		p.fail()
	}
	return k
}

// update reads an UPDATE's map; in More (inMore) a More of its own is
// refused by check anyway, so it is left to decMode.
func (p *parser) update(u *Update, inMore bool) {
	n := p.mapHead()
	var k, have byte
	for range n {
		if k = p.key(k, 7); !p.ok {
			return
		}
		switch k {
		case 1:
			p.record(&u.Record)
		case 2:
			u.Hash = p.id()
		case 3:
			u.NoAck = p.bool()
		case 4:
			u.AckFrom = make([]store.NodeID, p.count(MaxAckFrom, idLen))
			for i := range u.AckFrom {
				u.AckFrom[i] = p.id()
			}
		case 5:
			u.Left = p.int64()
		case 6:
			if inMore {
				p.fail()
				return
			}
			u.More = make([]Update, p.count(MaxEntries, minMoreUpdate))
			for i := 0; i < len(u.More) && p.ok; i++ {
				p.update(&u.More[i], true)
			}
		case 7:
			f := p.head(cborUint)
			if f > MaxFollow { // decMode: overflows uint8
				p.fail()
			}
			u.Follow = uint8(f)
		}
		have |= 1 << k
	}
	// The encoder always writes the record and the hash; the minimum
	// size of a More entry counts on both.
	if have&(1<<1|1<<2) != 1<<1|1<<2 {
		p.fail()
	}
}

// record hands the record's bytes to store.Record.UnmarshalCBOR, as
// decMode does, once skip has found them well formed.
func (p *parser) record(r *store.Record) {
	start := p.b
	if len(start) == 0 || start[0]&0xe0 != cborMap {
		p.fail()
		return
	}
	p.skip(recordSkipDepth)
	if !p.ok {
		return
	}
	if err := r.UnmarshalCBOR(start[:len(start)-len(p.b)]); err != nil {
		p.fail()
	}
}

// skip passes over one well-formed data item of at most depth levels of
// arrays and maps. It accepts less than decMode's well-formedness check
// (no tags, no indefinite lengths, no simple values but false, true and
// null, no floats), so what it passes decMode's check passes too: the
// record sits at most four levels deep in a body, and with its own two
// within decMode's maxNesting.
func (p *parser) skip(depth int) {
	if !p.ok || len(p.b) == 0 {
		p.fail()
		return
	}
	c := p.b[0]
	switch major := c & 0xe0; major {
	case cborUint, cborNeg:
		p.head(major)
	case cborBytes, cborText:
		p.bytes(p.head(major))
	case cborArray, cborMap:
		n, limit := p.head(major), uint64(MaxEntries)
		if major == cborMap {
			limit = maxMapPairs
		}
		if !p.ok || depth == 0 || n > limit {
			p.fail()
			return
		}
		if major == cborMap {
			n *= 2 // keys and values
		}
		if n > uint64(len(p.b)) { // each item takes a byte at least
			p.fail()
			return
		}
		for range n {
			if p.skip(depth - 1); !p.ok {
				return
			}
		}
	default:
		if c != cborFalse && c != cborTrue && c != cborNull {
			p.fail()
			return
		}
		p.b = p.b[1:]
	}
}

func (p *parser) ack(a *Ack) {
	n := p.mapHead()
	var k byte
	for range n {
		if k = p.key(k, 5); !p.ok {
			return
		}
		switch k {
		case 1:
			a.Key = p.text()
		case 2:
			a.Origin = p.id()
		case 3:
			a.Lamport = p.head(cborUint)
		case 4:
			a.From = p.id()
		case 5:
			a.More = make([]AckEntry, p.count(MaxEntries, minAckEntryLen))
			for i := range a.More {
				e := &a.More[i]
				if p.byte() != cborArray|3 { // toarray: exactly the three fields
					p.fail()
					return
				}
				e.Key, e.Origin, e.Lamport = p.text(), p.id(), p.head(cborUint)
			}
		}
	}
}
