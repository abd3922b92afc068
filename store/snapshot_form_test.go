package store

import (
	"math/rand/v2"
	"testing"
	"time"
)

// TestSnapshotForms: a tree with few non-zero leaves is written sparse,
// about 18 bytes a leaf, and one with most of them whole (the first
// format, 1 MiB); both decode to the same tree, header and root.
func TestSnapshotForms(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	for _, tc := range []struct {
		name    string
		leaves  int
		key     string
		maxSize int
	}{
		{"empty", 0, "sparse", snapHeader + 32},
		{"small", 100, "sparse", snapHeader + 100*sparseEntry + 32},
		{"half", 1 << 15, "sparse", snapSize},
		{"full", 1 << 16, "snapshot", snapSize},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := new(digest)
			for _, i := range rng.Perm(len(d.leaves))[:tc.leaves] {
				var h Hash
				for j := range h {
					h[j] = byte(rng.IntN(256))
				}
				h[0] |= 1 // not zero
				d.update(Hash{byte(i >> 8), byte(i)}, Hash{}, h)
			}
			d.computeRoot()
			m := digestSnap{txid: 7, keys: uint64(tc.leaves), maxL: 9, ttlKeys: 3}
			key, val := encodeSnapshot(d, m)
			if string(key) != tc.key || len(val) > tc.maxSize {
				t.Fatalf("written under %q, %d bytes; want %q, at most %d", key, len(val), tc.key, tc.maxSize)
			}
			got := new(digest)
			gm, ok := decodeSnapshot(val, got)
			if !ok || gm != m || *got != *d {
				t.Fatalf("decoded ok %v, header %+v (want %+v), tree equal %v", ok, gm, m, *got == *d)
			}
		})
	}
}
