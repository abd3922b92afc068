// Package cborlite writes and reads the few CBOR items ckd's hand-written
// codecs are made of — heads, byte and text strings, booleans, 16-byte
// ids — for the store's records and events (store/cborfast.go) and the
// wire's UPDATE and ACK (daemon/wire/fastcodec.go). Both write exactly
// what the cbor package writes for their types and read only that
// layout, leaving anything else to the cbor package (docs/ARCHITECTURE.md,
// "The wire codec"); what they share is here, once.
package cborlite

import (
	"encoding/binary"
	"math"
	"unicode/utf8"
)

// Major types (the top three bits of a head) and simple values.
const (
	Uint  = 0 << 5
	Neg   = 1 << 5
	Bytes = 2 << 5
	Text  = 3 << 5
	Array = 4 << 5
	Map   = 5 << 5
	False = 0xf4
	True  = 0xf5
	Null  = 0xf6
)

// AppendHead appends a head of the given major type and argument in its
// shortest form, as the cbor package writes it.
func AppendHead(b []byte, major byte, n uint64) []byte {
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

// AppendBool appends true or false.
func AppendBool(b []byte, v bool) []byte {
	if v {
		return append(b, True)
	}
	return append(b, False)
}

// AppendID appends a 16-byte string (a node id, a hash).
func AppendID(b []byte, id [16]byte) []byte {
	return append(append(b, Bytes|16), id[:]...)
}

// AppendText appends a text string.
func AppendText(b []byte, s string) []byte {
	return append(AppendHead(b, Text, uint64(len(s))), s...)
}

// Reader reads items from B. OK turns false at the first thing it does
// not expect, and stays false; what it returns after that is zero.
type Reader struct {
	B  []byte
	OK bool
}

// NewReader returns a Reader of b.
func NewReader(b []byte) Reader { return Reader{B: b, OK: true} }

// Fail marks the input as not what the caller reads.
func (p *Reader) Fail() { p.OK = false }

// Byte reads one byte.
func (p *Reader) Byte() byte {
	if !p.OK || len(p.B) == 0 {
		p.OK = false
		return 0
	}
	c := p.B[0]
	p.B = p.B[1:]
	return c
}

// Head reads a head of the given major type, of any width (the cbor
// package accepts them all and reads the same number), and returns its
// argument. Indefinite lengths and reserved values are not read here.
func (p *Reader) Head(major byte) uint64 {
	c := p.Byte()
	if c&0xe0 != major {
		p.OK = false
		return 0
	}
	var n int
	switch ai := c & 0x1f; {
	case ai < 24:
		return uint64(ai)
	case ai <= 27:
		n = 1 << (ai - 24)
	default:
		p.OK = false
		return 0
	}
	if !p.OK || len(p.B) < n {
		p.OK = false
		return 0
	}
	var v uint64
	for _, d := range p.B[:n] {
		v = v<<8 | uint64(d)
	}
	p.B = p.B[n:]
	return v
}

// Bytes reads the next n bytes, without copying.
func (p *Reader) Bytes(n uint64) []byte {
	if !p.OK || uint64(len(p.B)) < n {
		p.OK = false
		return nil
	}
	v := p.B[:n:n]
	p.B = p.B[n:]
	return v
}

// Bool reads true or false.
func (p *Reader) Bool() bool {
	switch p.Byte() {
	case True:
		return true
	case False:
		return false
	}
	p.OK = false
	return false
}

// ID reads a byte string of exactly 16 bytes.
func (p *Reader) ID() (id [16]byte) {
	if p.Head(Bytes) != 16 {
		p.OK = false
		return id
	}
	copy(id[:], p.Bytes(16))
	return id
}

// Text reads a text string, which must be valid UTF-8 (the cbor package
// refuses other text).
func (p *Reader) Text() string { return p.TextAs("") }

// TextAs is Text, returning known itself, not a copy, when the text is
// known: a record's key read for a lookup by that key costs no string.
func (p *Reader) TextAs(known string) string {
	v := p.Bytes(p.Head(Text))
	if !utf8.Valid(v) {
		p.OK = false
	}
	if len(known) > 0 && string(v) == known {
		return known
	}
	return string(v)
}
