package rpc

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/testseed"
)

// The direct encoder writes what encoding/json writes, for records with
// every kind of character and field.
func TestRecordJSONMatches(t *testing.T) {
	rng := testseed.Rand(t)
	pieces := []string{"a", "é", "日本", "😀", "<", ">", "&", "\"", "\\", "\n", "\r", "\t", "\b", "\f", "\x00", "\x1f",
		"\x7f", "\u2028", "\u2029", "\xff", "\xc3", "\xe2\x80", "\U0010ffff", " ", "/", "+"}
	str := func() string {
		var b []byte
		for range rng.IntN(12) {
			b = append(b, pieces[rng.IntN(len(pieces))]...)
		}
		return string(b)
	}
	for range 20000 {
		r := Record{Key: str(), Value: []byte(str()), Version: rng.Uint64() >> rng.IntN(64), Origin: str(),
			Deleted: rng.IntN(2) == 0, At: int64(rng.Uint64()) >> rng.IntN(64), Fallback: rng.IntN(2) == 0,
			TTLMS: int64(rng.IntN(3)) * 30000, TTLRemainingMS: int64(rng.IntN(2)) * 1234,
			Ephemeral: uint64(rng.IntN(2)) * 1_700_000_000_000}
		if rng.IntN(5) == 0 {
			r.Value = nil
		}
		switch rng.IntN(3) {
		case 0:
		case 1:
			r.VV = map[string]uint64{}
		default:
			r.VV = map[string]uint64{}
			for range rng.IntN(5) + 1 {
				r.VV[str()] = rng.Uint64() >> rng.IntN(64)
			}
		}
		if rng.IntN(2) == 0 {
			r.LWW = &Stamp{Lamport: rng.Uint64(), Origin: str()}
		}
		want, err := json.Marshal(struct{ R Record }{r}) // through encoding/json's compaction
		if err != nil {
			t.Fatal(err)
		}
		refl, err := r.marshalReflect()
		if err != nil {
			t.Fatal(err)
		}
		got := appendRecordJSON(nil, &r)
		if !bytes.Equal(got, refl) || !bytes.Equal(append(append([]byte(`{"R":`), got...), '}'), want) {
			t.Fatalf("record %+v:\n got %s\nwant %s", r, got, refl)
		}
	}
}

func BenchmarkRecordJSON(b *testing.B) {
	r := Record{Key: "bench/1234", Value: bytes.Repeat([]byte("abcdefgh"), 32), Version: 77,
		Origin: "0123456789abcdef0123456789abcdef", VV: map[string]uint64{"0123456789abcdef0123456789abcdef": 77},
		LWW: &Stamp{Lamport: 77, Origin: "0123456789abcdef0123456789abcdef"}, At: time.Now().UnixMilli()}
	b.Run("direct", func(b *testing.B) {
		for range b.N {
			_ = appendRecordJSON(nil, &r)
		}
	})
	b.Run("reflect", func(b *testing.B) {
		for range b.N {
			_, _ = json.Marshal(struct{ R Record }{r})
		}
	})
}
