package store

import (
	"encoding/binary"
	"math"
	"slices"
	"unicode/utf8"
)

// Records are encoded and decoded on every write and read, and the cbor
// package does it by reflection: a few microseconds and a dozen
// allocations a record, a noticeable part of a request. The functions
// here write the canonical encoding directly, byte for byte what encMode
// writes for a recordWire (TestFastCodec compares them on random records),
// and read that one layout directly; anything else — another layout, a
// non-canonical map, text that is not UTF-8 — falls back to the cbor
// package, which decides (and refuses what it refuses).

// CBOR major types.
const (
	cborUint  = 0 << 5
	cborNeg   = 1 << 5
	cborBytes = 2 << 5
	cborText  = 3 << 5
	cborArray = 4 << 5
	cborMap   = 5 << 5
	cborFalse = 0xf4
	cborTrue  = 0xf5
)

// appendHead appends a CBOR head in its shortest form.
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

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, cborTrue)
	}
	return append(b, cborFalse)
}

func appendID(b []byte, id NodeID) []byte {
	return append(append(b, cborBytes|16), id[:]...)
}

// appendRecord appends r's canonical encoding (see MarshalCBOR).
func appendRecord(b []byte, r *Record) []byte {
	fields := byte(9)
	if r.TTL != 0 {
		fields++
	}
	if r.Ephemeral != 0 {
		fields++
	}
	b = append(b, cborMap|fields, 1)
	b = appendHead(b, cborText, uint64(len(r.Key)))
	b = append(b, r.Key...)
	b = append(b, 2)
	b = appendHead(b, cborBytes, uint64(len(r.Value)))
	b = append(b, r.Value...)
	b = appendBool(append(b, 3), r.Deleted)
	b = append(b, 4)
	ids := make([]NodeID, 0, len(r.VV))
	for id, n := range r.VV {
		if n > 0 {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, NodeID.Compare) // encoded keys of one length sort as the ids do
	b = appendHead(b, cborMap, uint64(len(ids)))
	for _, id := range ids {
		b = appendHead(appendID(b, id), cborUint, r.VV[id])
	}
	b = appendHead(append(b, 5), cborUint, r.Lamport)
	b = appendID(append(b, 6), r.Origin)
	b = append(b, 7, cborArray|2)
	b = appendID(appendHead(b, cborUint, r.LWW.Lamport), r.LWW.Origin)
	b = append(b, 8)
	if r.At >= 0 {
		b = appendHead(b, cborUint, uint64(r.At))
	} else {
		b = appendHead(b, cborNeg, uint64(^r.At))
	}
	b = appendBool(append(b, 9), r.Fallback)
	if r.TTL != 0 {
		b = append(b, 10)
		if r.TTL > 0 {
			b = appendHead(b, cborUint, uint64(r.TTL))
		} else {
			b = appendHead(b, cborNeg, uint64(^r.TTL))
		}
	}
	if r.Ephemeral != 0 {
		b = appendHead(append(b, 11), cborUint, r.Ephemeral)
	}
	return b
}

// appendEvent appends a change-log entry's encoding (eventWire).
func appendEvent(b []byte, op Op, key string, version uint64, origin NodeID) []byte {
	b = append(b, cborArray|4)
	b = append(appendHead(b, cborText, uint64(len(op))), op...)
	b = append(appendHead(b, cborText, uint64(len(key))), key...)
	return appendID(appendHead(b, cborUint, version), origin)
}

// parser reads the canonical layout; ok turns false at the first thing it
// does not expect, and stays false.
type parser struct {
	b  []byte
	ok bool
}

func (p *parser) byte() byte {
	if !p.ok || len(p.b) == 0 {
		p.ok = false
		return 0
	}
	c := p.b[0]
	p.b = p.b[1:]
	return c
}

func (p *parser) expect(c byte) {
	if p.byte() != c {
		p.ok = false
	}
}

// head reads a head of the given major type (any width, as the cbor
// package accepts) and returns its argument.
func (p *parser) head(major byte) uint64 {
	c := p.byte()
	if c&0xe0 != major {
		p.ok = false
		return 0
	}
	var n int
	switch ai := c & 0x1f; {
	case ai < 24:
		return uint64(ai)
	case ai == 24:
		n = 1
	case ai == 25:
		n = 2
	case ai == 26:
		n = 4
	case ai == 27:
		n = 8
	default: // indefinite lengths and reserved values: not ours
		p.ok = false
		return 0
	}
	if !p.ok || len(p.b) < n {
		p.ok = false
		return 0
	}
	var v uint64
	for _, d := range p.b[:n] {
		v = v<<8 | uint64(d)
	}
	p.b = p.b[n:]
	return v
}

// bytes reads n bytes, without copying.
func (p *parser) bytes(n uint64) []byte {
	if !p.ok || uint64(len(p.b)) < n {
		p.ok = false
		return nil
	}
	v := p.b[:n:n]
	p.b = p.b[n:]
	return v
}

func (p *parser) bool() bool {
	switch p.byte() {
	case cborTrue:
		return true
	case cborFalse:
		return false
	}
	p.ok = false
	return false
}

func (p *parser) id() (id NodeID) {
	if p.head(cborBytes) != 16 {
		p.ok = false
		return id
	}
	copy(id[:], p.bytes(16))
	return id
}

func (p *parser) text() string { return p.textAs("") }

// textAs is text, returning known itself, not a copy, when the text is
// known: a record's key read for a lookup by that key costs no string.
func (p *parser) textAs(known string) string {
	v := p.bytes(p.head(cborText))
	if !utf8.Valid(v) {
		p.ok = false
	}
	if len(known) > 0 && string(v) == known {
		return known
	}
	return string(v)
}

// parseRecord decodes the canonical layout of a record; ok is false for
// anything else. withValue false leaves Value nil without reading it.
func parseRecord(b []byte, withValue bool) (r Record, ok bool) {
	return parseRecordOf("", b, withValue)
}

// parseRecordOf is parseRecord of a record looked up by its key, which it
// then shares rather than copies.
func parseRecordOf(key string, b []byte, withValue bool) (r Record, ok bool) {
	p := parser{b: b, ok: true}
	fields := p.byte()
	if fields != cborMap|9 && fields != cborMap|10 && fields != cborMap|11 {
		return Record{}, false
	}
	p.expect(1)
	r.Key = p.textAs(key)
	p.expect(2)
	v := p.bytes(p.head(cborBytes))
	if withValue {
		r.Value = append(make([]byte, 0, len(v)), v...) // the cbor package copies too
	}
	p.expect(3)
	r.Deleted = p.bool()
	p.expect(4)
	n := p.head(cborMap)
	if !p.ok || n > 1<<16 {
		return Record{}, false
	}
	r.VV = make(VV, n)
	var prev NodeID
	for i := uint64(0); i < n && p.ok; i++ {
		id := p.id()
		if i > 0 && id.Compare(prev) <= 0 { // canonical order, so no duplicates
			p.ok = false
		}
		r.VV[id], prev = p.head(cborUint), id
	}
	p.expect(5)
	r.Lamport = p.head(cborUint)
	p.expect(6)
	r.Origin = p.id()
	p.expect(7)
	p.expect(cborArray | 2)
	r.LWW.Lamport = p.head(cborUint)
	r.LWW.Origin = p.id()
	p.expect(8)
	if len(p.b) > 0 && p.b[0]&0xe0 == cborNeg {
		n := p.head(cborNeg)
		r.At = ^int64(n)
		if n > math.MaxInt64 {
			p.ok = false
		}
	} else {
		n := p.head(cborUint)
		r.At = int64(n)
		if n > math.MaxInt64 {
			p.ok = false
		}
	}
	p.expect(9)
	r.Fallback = p.bool()
	// Fields 10 (ttl) and 11 (ephemeral) are there only when not zero;
	// only a positive TTL is read here, anything else is the cbor
	// package's to decide (and validate's to refuse).
	extra := int(fields&0x1f) - 9
	if extra > 0 && len(p.b) > 0 && p.b[0] == 10 {
		p.expect(10)
		n := p.head(cborUint)
		r.TTL = int64(n)
		if n == 0 || n > math.MaxInt64 {
			p.ok = false
		}
		extra--
	}
	if extra > 0 {
		p.expect(11)
		if r.Ephemeral = p.head(cborUint); r.Ephemeral == 0 {
			p.ok = false
		}
		extra--
	}
	if extra != 0 {
		p.ok = false
	}
	if !p.ok || len(p.b) != 0 {
		return Record{}, false
	}
	return r, true
}

// parseEvent decodes the layout appendEvent writes.
func parseEvent(b []byte) (w eventWire, ok bool) {
	p := parser{b: b, ok: true}
	p.expect(cborArray | 4)
	w.Op = Op(p.text())
	w.Key = p.text()
	w.Version = p.head(cborUint)
	w.Origin = p.id()
	return w, p.ok && len(p.b) == 0
}

// dominatesStored reports whether vv dominates (or equals) the version
// vector of the stored record raw, read in place: no map, no key string.
// false also for a layout it does not read, which the caller then decodes
// the slow way (Applier: it cannot tell).
func dominatesStored(vv VV, raw []byte) bool {
	p := parser{b: raw, ok: true}
	if fields := p.byte(); fields != cborMap|9 && fields != cborMap|10 && fields != cborMap|11 {
		return false
	}
	p.expect(1)
	p.bytes(p.head(cborText))
	p.expect(2)
	p.bytes(p.head(cborBytes))
	p.expect(3)
	p.bool()
	p.expect(4)
	n := p.head(cborMap)
	for i := uint64(0); i < n && p.ok; i++ {
		id := p.id()
		if l := p.head(cborUint); p.ok && vv[id] < l {
			return false
		}
	}
	return p.ok
}
