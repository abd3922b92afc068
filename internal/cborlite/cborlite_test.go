package cborlite

import (
	"bytes"
	"math"
	"testing"

	"github.com/fxamacker/cbor/v2"
)

// TestAppendHeadAsCBOR: every width of head is written as the cbor
// package writes it, and read back by Head.
func TestAppendHeadAsCBOR(t *testing.T) {
	for _, n := range []uint64{0, 1, 23, 24, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64} {
		want, err := cbor.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		got := AppendHead(nil, Uint, n)
		if !bytes.Equal(got, want) {
			t.Errorf("AppendHead(%d) = %x, want %x", n, got, want)
		}
		r := NewReader(got)
		if v := r.Head(Uint); !r.OK || v != n || len(r.B) != 0 {
			t.Errorf("Head(%x) = %d, ok %v, %d left", got, v, r.OK, len(r.B))
		}
	}
	s := "café"
	if got, want := AppendText(nil, s), must(cbor.Marshal(s)); !bytes.Equal(got, want) {
		t.Errorf("AppendText = %x, want %x", got, want)
	}
	id := [16]byte{1, 2, 3}
	if got, want := AppendID(nil, id), must(cbor.Marshal(id[:])); !bytes.Equal(got, want) {
		t.Errorf("AppendID = %x, want %x", got, want)
	}
}

func must(b []byte, err error) []byte {
	if err != nil {
		panic(err)
	}
	return b
}

// TestReaderRefuses: a Reader stops at what it does not read — another
// major type, an indefinite length, input cut short, text that is not
// UTF-8, a string of another length where an id is read — and stays
// stopped.
func TestReaderRefuses(t *testing.T) {
	for _, c := range []struct {
		name string
		in   []byte
		read func(*Reader)
	}{
		{"another major type", []byte{Text | 1, 'a'}, func(r *Reader) { r.Head(Uint) }},
		{"indefinite length", []byte{Array | 31}, func(r *Reader) { r.Head(Array) }},
		{"head cut short", []byte{Uint | 25, 1}, func(r *Reader) { r.Head(Uint) }},
		{"string cut short", []byte{Bytes | 3, 1, 2}, func(r *Reader) { r.Bytes(r.Head(Bytes)) }},
		{"not UTF-8", []byte{Text | 1, 0xff}, func(r *Reader) { r.Text() }},
		{"id of 15 bytes", append([]byte{Bytes | 15}, make([]byte, 15)...), func(r *Reader) { r.ID() }},
		{"not a boolean", []byte{Null}, func(r *Reader) { r.Bool() }},
		{"empty", nil, func(r *Reader) { r.Byte() }},
	} {
		r := NewReader(c.in)
		c.read(&r)
		if r.OK {
			t.Errorf("%s: read %x without failing", c.name, c.in)
		}
		if v := r.Head(Uint); v != 0 || r.OK {
			t.Errorf("%s: a failed Reader read on (%d)", c.name, v)
		}
	}
	r := NewReader(AppendText(nil, "key"))
	known := "key"
	if got := r.TextAs(known); !r.OK || got != known {
		t.Errorf("TextAs = %q, ok %v", got, r.OK)
	}
}
