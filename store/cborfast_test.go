package store

import (
	"bytes"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/cborlite"
	"github.com/cloudknowledge/ck/internal/testseed"
)

// randomRecord covers the encoding's edges: every head width, empty and
// nil values and vectors, zero vector entries, negative and extreme times.
func randomRecord(rng *rand.Rand) Record {
	widths := []uint64{0, 1, 23, 24, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64}
	num := func() uint64 {
		if rng.IntN(2) == 0 {
			return widths[rng.IntN(len(widths))]
		}
		return rng.Uint64() >> rng.IntN(64)
	}
	id := func() (n NodeID) {
		for i := range n {
			n[i] = byte(rng.IntN(4)) // few distinct ids: collisions and order
		}
		return n
	}
	keys := []string{"k", "a/b", "café/日本", strings.Repeat("x", 24), strings.Repeat("y", 300), strings.Repeat("z", 1024)}
	r := Record{Key: keys[rng.IntN(len(keys))], Deleted: rng.IntN(3) == 0, Lamport: num(),
		Origin: id(), LWW: Stamp{Lamport: num(), Origin: id()}, Fallback: rng.IntN(4) == 0}
	if rng.IntN(3) == 0 {
		r.TTL = int64(num() >> 1)
	}
	if rng.IntN(3) == 0 {
		r.Ephemeral = num()
	}
	switch rng.IntN(4) {
	case 0: // nil
	case 1:
		r.Value = []byte{}
	default:
		r.Value = make([]byte, []int{1, 23, 24, 256, 70000}[rng.IntN(5)])
		for i := range r.Value {
			r.Value[i] = byte(rng.IntN(256))
		}
	}
	switch rng.IntN(3) {
	case 0: // nil
	case 1:
		r.VV = VV{}
	default:
		r.VV = VV{}
		for range rng.IntN(40) + 1 {
			r.VV[id()] = num() * uint64(rng.IntN(5)) // some zeros
		}
	}
	r.At = int64(num())
	if rng.IntN(2) == 0 {
		r.At = -r.At - int64(rng.IntN(2))
	}
	return r
}

// The direct encoder writes exactly what the cbor package writes, and the
// direct decoder reads it back as the cbor package does.
func TestFastCodec(t *testing.T) {
	rng := testseed.Rand(t)
	for range 3000 {
		r := randomRecord(rng)
		want, err := r.marshalReflect()
		if err != nil {
			t.Fatal(err)
		}
		got, _ := r.MarshalCBOR()
		if !bytes.Equal(got, want) {
			t.Fatalf("encoding of %+v:\n got %x\nwant %x", r, got, want)
		}
		fast, ok := parseRecord(got, true)
		if !ok {
			t.Fatalf("canonical encoding not parsed: %x", got)
		}
		var slow Record
		if err := slow.unmarshalReflect(got); err != nil {
			t.Fatal(err)
		}
		sameRecord(t, fast, slow)
		meta, ok := parseRecord(got, false)
		slow.Value = nil
		if !ok {
			t.Fatal("meta not parsed")
		}
		sameRecord(t, meta, slow)
		// Looked up by its key, or by another, it reads the same.
		for _, key := range []string{r.Key, "other"} {
			of, ok := parseRecordOf(key, got, false)
			if !ok {
				t.Fatalf("meta not parsed, looked up by %q", key)
			}
			sameRecord(t, of, slow)
		}

		ev := appendEvent(nil, opOf(&r), r.Key, r.Lamport, r.Origin)
		wantEv, err := encMode.Marshal(eventWire{Op: opOf(&r), Key: r.Key, Version: r.Lamport, Origin: r.Origin})
		if err != nil || !bytes.Equal(ev, wantEv) {
			t.Fatalf("event: %x, want %x (%v)", ev, wantEv, err)
		}
		if w, ok := parseEvent(ev); !ok || w.Op != opOf(&r) || w.Key != r.Key || w.Version != r.Lamport || w.Origin != r.Origin {
			t.Fatalf("event parsed as %+v, %v", w, ok)
		}
	}
}

// Whatever the direct decoder accepts, the cbor package accepts too, with
// the same result: damaged and foreign encodings included.
func TestFastDecodeNeverLaxer(t *testing.T) {
	rng := testseed.Rand(t)
	for range 20000 {
		r := randomRecord(rng)
		b, _ := r.MarshalCBOR()
		b = bytes.Clone(b)
		switch rng.IntN(4) {
		case 0:
			b[rng.IntN(len(b))] ^= byte(1 << rng.IntN(8))
		case 1:
			b = b[:rng.IntN(len(b))]
		case 2:
			b = append(b, byte(rng.IntN(256)))
		default:
			i := rng.IntN(len(b))
			b[i] = byte(rng.IntN(256))
		}
		fast, ok := parseRecord(b, true)
		var slow Record
		err := slow.unmarshalReflect(b)
		if ok && err != nil {
			t.Fatalf("direct decoder accepted %x, the cbor package refuses it: %v", b, err)
		}
		if ok {
			sameRecord(t, fast, slow)
		}
		var fromMethod Record
		if merr := fromMethod.UnmarshalCBOR(b); (merr == nil) != (err == nil) {
			t.Fatalf("UnmarshalCBOR: %v, the cbor package: %v", merr, err)
		}
	}
}

func sameRecord(t *testing.T, got, want Record) {
	t.Helper()
	norm := func(r Record) Record {
		if len(r.VV) == 0 {
			r.VV = nil
		}
		if len(r.Value) == 0 {
			r.Value = nil
		}
		return r
	}
	if g, w := norm(got), norm(want); !reflect.DeepEqual(g, w) {
		t.Fatalf("decoded\n%+v\nwant\n%+v", g, w)
	}
}

func BenchmarkRecordCodec(b *testing.B) {
	r := Record{Key: "bench/1234", Value: make([]byte, 256), VV: VV{NewNodeID(): 77}, Lamport: 77,
		Origin: NewNodeID(), LWW: Stamp{Lamport: 77}, At: time.Now().UnixMilli()}
	raw, _ := r.MarshalCBOR()
	b.Run("encode/direct", func(b *testing.B) {
		for range b.N {
			_, _ = r.MarshalCBOR()
		}
	})
	b.Run("encode/reflect", func(b *testing.B) {
		for range b.N {
			_, _ = r.marshalReflect()
		}
	})
	b.Run("decode/direct", func(b *testing.B) {
		for range b.N {
			var x Record
			_ = x.UnmarshalCBOR(raw)
		}
	})
	b.Run("decode/reflect", func(b *testing.B) {
		for range b.N {
			var x Record
			_ = x.unmarshalReflect(raw)
		}
	})
}

// TestDecodeHeadAt: the tombstone index's quick look agrees with a full
// decode, for live records and tombstones of every size.
func TestDecodeHeadAt(t *testing.T) {
	id := NodeID{1}
	for _, rec := range []Record{
		{Key: "k", Value: []byte("v"), VV: VV{id: 1}, Lamport: 1, Origin: id, LWW: Stamp{1, id}, At: 5},
		{Key: "long/key", Value: make([]byte, 70000), VV: VV{id: 9}, Lamport: 9, Origin: id, LWW: Stamp{9, id}, At: -3},
		{Key: "d", Deleted: true, VV: VV{id: 2}, Lamport: 2, Origin: id, LWW: Stamp{2, id}, At: 1_700_000_000_123},
		{Key: "e", Deleted: true, VV: VV{id: 3}, Lamport: 3, Origin: id, LWW: Stamp{3, id}},
	} {
		h, err := decodeHeadAt(encodeRecord(&rec))
		if err != nil || h.Deleted != rec.Deleted || rec.Deleted && h.At != rec.At {
			t.Errorf("%q: %+v, %v", rec.Key, h, err)
		}
	}
	if _, err := decodeHeadAt([]byte{0xa9, 0x01}); err == nil {
		t.Error("a truncated record decoded")
	}
}

// dominatesStored, read in place from a stored record, says what
// VV.Dominates says of the decoded one, whatever the layout's head widths
// and optional fields; an encoding it cannot read gives false (the caller
// then decodes it).
func TestDominatesStored(t *testing.T) {
	rng := testseed.Rand(t)
	for i := range 3000 {
		r := randomRecord(rng)
		raw := encodeRecord(&r)
		// vv: the stored one, some entries raised or lowered, some dropped
		// or added, so that every order occurs.
		vv := VV{}
		for id, n := range r.VV {
			switch rng.IntN(5) {
			case 0:
			case 1:
				vv[id] = n / 2
			case 2:
				vv[id] = n + uint64(rng.IntN(2))
			default:
				vv[id] = n
			}
		}
		if rng.IntN(3) == 0 {
			vv[NodeID{byte(i)}] = rng.Uint64()
		}
		if got, want := dominatesStored(vv, raw), vv.Dominates(r.VV); got != want {
			t.Fatalf("vv %v over stored %v: %v, want %v", vv, r.VV, got, want)
		}
	}
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"empty", nil},
		{"not a map", []byte{0x80}},
		{"foreign map size", []byte{cborlite.Map | 3, 1, 0x60}},
		{"cut in the vector", encodeRecord(&Record{Key: "k", VV: VV{NodeID{1}: 5}})[:20]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if dominatesStored(VV{NodeID{1}: 9}, tc.raw) {
				t.Error("an unreadable record passed as dominated")
			}
		})
	}
}
