package store_test

import (
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/cloudknowledge/ck/store"
)

// After random writes, deletes and applies, the in-memory tree equals a
// rebuild (Check, at cleanup and after reopening), a store holding the same
// records has the same digests, and the levels are consistent.
func TestDigestRandomOps(t *testing.T) {
	rng := testSeed(t)
	s := openTest(t)
	for i := range 500 {
		key := fmt.Sprintf("d/%d", rng.IntN(120))
		switch rng.IntN(4) {
		case 0:
			mustDelete(t, s, key)
		case 1:
			rec := write(key, fmt.Sprint(i), byte(rng.IntN(3)+1), uint64(rng.IntN(600)+1), nil)
			if _, err := s.Apply(t.Context(), rec); err != nil {
				t.Fatal(err)
			}
		default:
			mustSet(t, s, key, fmt.Sprint(i))
		}
		if i%100 == 0 {
			if err := s.Check(); err != nil {
				t.Fatalf("after %d ops: %v", i, err)
			}
		}
	}
	root := s.Root()
	s = reopen(t, s)
	if s.Root() != root {
		t.Fatal("root changed across reopen")
	}

	copyOf := openTest(t)
	err := s.Scan("", func(r store.Record) error {
		_, err := copyOf.Apply(t.Context(), r)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if copyOf.Root() != root || copyOf.TopDigests() != s.TopDigests() {
		t.Fatal("a store holding the same records has another digest")
	}

	tops := s.TopDigests()
	for i := range tops {
		var x store.Hash
		for _, l := range s.LeafDigests(uint8(i)) {
			for j := range x {
				x[j] ^= l[j]
			}
		}
		if x != tops[i] {
			t.Fatalf("top %d is not the XOR of its leaves", i)
		}
	}
	h := sha256.New()
	for _, d := range tops {
		h.Write(d[:])
	}
	if [32]byte(h.Sum(nil)) != root {
		t.Fatal("root is not SHA-256 of the top digests")
	}
}

func TestDigestEmpty(t *testing.T) {
	s := openTest(t)
	if s.Root() != sha256.Sum256(make([]byte, 256*16)) {
		t.Fatal("empty root")
	}
	mustSet(t, s, "k", "v")
	mustDelete(t, s, "k")
	if s.Root() == sha256.Sum256(make([]byte, 256*16)) {
		t.Fatal("a tombstone is not in the digest")
	}
}

func TestLeafEntries(t *testing.T) {
	s := openTest(t)
	for i := range 50 {
		mustSet(t, s, fmt.Sprintf("k%d", i), "v")
	}
	mustDelete(t, s, "k7")
	for i := range 50 {
		key := fmt.Sprintf("k%d", i)
		rec, _ := mustGet(t, s, key)
		leaf := store.KeyHash(key).Leaf()
		entries, err := s.LeafEntries(leaf)
		if err != nil {
			t.Fatal(err)
		}
		var x store.Hash
		found := false
		for _, e := range entries {
			if e.Key == key && e.Hash == rec.Hash() && e.KeyHash == store.KeyHash(key) {
				found = true
			}
			if e.KeyHash.Leaf() != leaf {
				t.Fatalf("entry %+v outside leaf %d", e, leaf)
			}
			for j := range x {
				x[j] ^= e.Hash[j]
			}
		}
		if !found {
			t.Fatalf("%s missing from leaf %d: %+v", key, leaf, entries)
		}
		if x != s.LeafDigests(uint8(leaf >> 8))[leaf&0xff] {
			t.Fatalf("leaf %d digest is not the XOR of its entries", leaf)
		}
	}
}
