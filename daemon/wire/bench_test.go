package wire_test

import (
	"bytes"
	"testing"

	"github.com/cloudknowledge/ck/daemon/wire"
)

// benchUpdate is a typical small write: a 100-byte value, a 3-node vector.
func benchUpdate() *wire.Update {
	r := record("service/frontend/config", bytes.Repeat([]byte("v"), 100))
	r.VV[nodeA], r.VV[nodeB], r.VV[[16]byte{0xcc}] = 7, 3, 11
	return wire.NewUpdate(r)
}

func BenchmarkEncodeUpdate(b *testing.B) {
	m, s := benchUpdate(), wire.Plaintext(cluster)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := wire.Encode(hdrA, m, s); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeUpdate(b *testing.B) {
	s := wire.Plaintext(cluster)
	f := mustEncode(b, hdrA, benchUpdate(), s)
	b.SetBytes(int64(len(f)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := wire.Decode(f, s); err != nil {
			b.Fatal(err)
		}
	}
}
