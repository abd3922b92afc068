package store

import (
	"math"
	"slices"

	"github.com/cloudknowledge/ck/internal/cborlite"
)

// Records are encoded and decoded on every write and read, and the cbor
// package does it by reflection: a few microseconds and a dozen
// allocations a record, a noticeable part of a request. The functions
// here write the canonical encoding directly, byte for byte what encMode
// writes for a recordWire (TestFastCodec compares them on random records),
// and read that one layout directly; anything else — another layout, a
// non-canonical map, text that is not UTF-8 — falls back to the cbor
// package, which decides (and refuses what it refuses).

// appendRecord appends r's canonical encoding (see MarshalCBOR).
func appendRecord(b []byte, r *Record) []byte {
	fields := byte(9)
	if r.TTL != 0 {
		fields++
	}
	if r.Ephemeral != 0 {
		fields++
	}
	b = append(b, cborlite.Map|fields, 1)
	b = cborlite.AppendHead(b, cborlite.Text, uint64(len(r.Key)))
	b = append(b, r.Key...)
	b = append(b, 2)
	b = cborlite.AppendHead(b, cborlite.Bytes, uint64(len(r.Value)))
	b = append(b, r.Value...)
	b = cborlite.AppendBool(append(b, 3), r.Deleted)
	b = append(b, 4)
	ids := make([]NodeID, 0, len(r.VV))
	for id, n := range r.VV {
		if n > 0 {
			ids = append(ids, id)
		}
	}
	slices.SortFunc(ids, NodeID.Compare) // encoded keys of one length sort as the ids do
	b = cborlite.AppendHead(b, cborlite.Map, uint64(len(ids)))
	for _, id := range ids {
		b = cborlite.AppendHead(cborlite.AppendID(b, id), cborlite.Uint, r.VV[id])
	}
	b = cborlite.AppendHead(append(b, 5), cborlite.Uint, r.Lamport)
	b = cborlite.AppendID(append(b, 6), r.Origin)
	b = append(b, 7, cborlite.Array|2)
	b = cborlite.AppendID(cborlite.AppendHead(b, cborlite.Uint, r.LWW.Lamport), r.LWW.Origin)
	b = append(b, 8)
	if r.At >= 0 {
		b = cborlite.AppendHead(b, cborlite.Uint, uint64(r.At))
	} else {
		b = cborlite.AppendHead(b, cborlite.Neg, uint64(^r.At))
	}
	b = cborlite.AppendBool(append(b, 9), r.Fallback)
	if r.TTL != 0 {
		b = append(b, 10)
		if r.TTL > 0 {
			b = cborlite.AppendHead(b, cborlite.Uint, uint64(r.TTL))
		} else {
			b = cborlite.AppendHead(b, cborlite.Neg, uint64(^r.TTL))
		}
	}
	if r.Ephemeral != 0 {
		b = cborlite.AppendHead(append(b, 11), cborlite.Uint, r.Ephemeral)
	}
	return b
}

// appendEvent appends a change-log entry's encoding (eventWire).
func appendEvent(b []byte, op Op, key string, version uint64, origin NodeID) []byte {
	b = append(b, cborlite.Array|4)
	b = append(cborlite.AppendHead(b, cborlite.Text, uint64(len(op))), op...)
	b = append(cborlite.AppendHead(b, cborlite.Text, uint64(len(key))), key...)
	return cborlite.AppendID(cborlite.AppendHead(b, cborlite.Uint, version), origin)
}

// parser reads the canonical layout (cborlite.Reader): OK turns false
// at the first thing it does not expect, and stays false.
type parser struct{ cborlite.Reader }

func (p *parser) expect(c byte) {
	if p.Byte() != c {
		p.OK = false
	}
}

// parseRecord decodes the canonical layout of a record; ok is false for
// anything else. withValue false leaves Value nil without reading it.
func parseRecord(b []byte, withValue bool) (r Record, ok bool) {
	return parseRecordOf("", b, withValue)
}

// parseRecordOf is parseRecord of a record looked up by its key, which it
// then shares rather than copies.
func parseRecordOf(key string, b []byte, withValue bool) (r Record, ok bool) {
	p := parser{cborlite.NewReader(b)}
	fields := p.Byte()
	if fields != cborlite.Map|9 && fields != cborlite.Map|10 && fields != cborlite.Map|11 {
		return Record{}, false
	}
	p.expect(1)
	r.Key = p.TextAs(key)
	p.expect(2)
	v := p.Bytes(p.Head(cborlite.Bytes))
	if withValue {
		r.Value = append(make([]byte, 0, len(v)), v...) // the cbor package copies too
	}
	p.expect(3)
	r.Deleted = p.Bool()
	p.expect(4)
	n := p.Head(cborlite.Map)
	if !p.OK || n > 1<<16 {
		return Record{}, false
	}
	r.VV = make(VV, n)
	var prev NodeID
	for i := uint64(0); i < n && p.OK; i++ {
		id := NodeID(p.ID())
		if i > 0 && id.Compare(prev) <= 0 { // canonical order, so no duplicates
			p.OK = false
		}
		r.VV[id], prev = p.Head(cborlite.Uint), id
	}
	p.expect(5)
	r.Lamport = p.Head(cborlite.Uint)
	p.expect(6)
	r.Origin = p.ID()
	p.expect(7)
	p.expect(cborlite.Array | 2)
	r.LWW.Lamport = p.Head(cborlite.Uint)
	r.LWW.Origin = p.ID()
	p.expect(8)
	if len(p.B) > 0 && p.B[0]&0xe0 == cborlite.Neg {
		n := p.Head(cborlite.Neg)
		r.At = ^int64(n)
		if n > math.MaxInt64 {
			p.OK = false
		}
	} else {
		n := p.Head(cborlite.Uint)
		r.At = int64(n)
		if n > math.MaxInt64 {
			p.OK = false
		}
	}
	p.expect(9)
	r.Fallback = p.Bool()
	// Fields 10 (ttl) and 11 (ephemeral) are there only when not zero;
	// only a positive TTL is read here, anything else is the cbor
	// package's to decide (and validate's to refuse).
	extra := int(fields&0x1f) - 9
	if extra > 0 && len(p.B) > 0 && p.B[0] == 10 {
		p.expect(10)
		n := p.Head(cborlite.Uint)
		r.TTL = int64(n)
		if n == 0 || n > math.MaxInt64 {
			p.OK = false
		}
		extra--
	}
	if extra > 0 {
		p.expect(11)
		if r.Ephemeral = p.Head(cborlite.Uint); r.Ephemeral == 0 {
			p.OK = false
		}
		extra--
	}
	if extra != 0 {
		p.OK = false
	}
	if !p.OK || len(p.B) != 0 {
		return Record{}, false
	}
	return r, true
}

// parseEvent decodes the layout appendEvent writes.
func parseEvent(b []byte) (w eventWire, ok bool) {
	p := parser{cborlite.NewReader(b)}
	p.expect(cborlite.Array | 4)
	w.Op = Op(p.Text())
	w.Key = p.Text()
	w.Version = p.Head(cborlite.Uint)
	w.Origin = p.ID()
	return w, p.OK && len(p.B) == 0
}

// dominatesStored reports whether vv dominates (or equals) the version
// vector of the stored record raw, read in place: no map, no key string.
// false also for a layout it does not read, which the caller then decodes
// the slow way (Applier: it cannot tell).
func dominatesStored(vv VV, raw []byte) bool {
	p := parser{cborlite.NewReader(raw)}
	if fields := p.Byte(); fields != cborlite.Map|9 && fields != cborlite.Map|10 && fields != cborlite.Map|11 {
		return false
	}
	p.expect(1)
	p.Bytes(p.Head(cborlite.Text))
	p.expect(2)
	p.Bytes(p.Head(cborlite.Bytes))
	p.expect(3)
	p.Bool()
	p.expect(4)
	n := p.Head(cborlite.Map)
	for i := uint64(0); i < n && p.OK; i++ {
		id := NodeID(p.ID())
		if l := p.Head(cborlite.Uint); p.OK && vv[id] < l {
			return false
		}
	}
	return p.OK
}
