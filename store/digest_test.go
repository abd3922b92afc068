package store_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/testseed"
	"github.com/cloudknowledge/ck/store"
)

// After random writes, deletes and applies, the in-memory tree equals a
// rebuild (Check, at cleanup and after reopening), a store holding the same
// records has the same digests, and the levels are consistent.
func TestDigestRandomOps(t *testing.T) {
	rng := testseed.Rand(t)
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

// digestState is what Open loads or rebuilds, to compare.
type digestState struct {
	root       [32]byte
	tops       [256]store.Hash
	keys       uint64
	ttlKeys    int
	lamport    uint64
	persistent bool
}

func digestOf(s *store.Store) digestState {
	return digestState{root: s.Root(), tops: s.TopDigests(), keys: s.Keys(), ttlKeys: s.TTLKeys(), lamport: s.Lamport(), persistent: s.FromSnapshot()}
}

// randomOps writes, deletes, applies, sets with a TTL, lets time pass,
// expires and purges, at random.
func randomOps(t *testing.T, s *store.Store, rng *rand.Rand, c *fakeClock, n int) {
	t.Helper()
	for i := range n {
		key := fmt.Sprintf("d/%d", rng.IntN(200))
		switch rng.IntN(8) {
		case 0:
			mustDelete(t, s, key)
		case 1:
			rec := write(key, fmt.Sprint(i), byte(rng.IntN(3)+1), uint64(rng.IntN(600)+1), nil)
			if _, err := s.Apply(t.Context(), rec); err != nil {
				t.Fatal(err)
			}
		case 2:
			mustSetTTL(t, s, key, fmt.Sprint(i), time.Duration(rng.IntN(60)+1)*time.Second)
		case 3:
			c.advance(time.Duration(rng.IntN(30)) * time.Second)
			if _, err := s.Expire(); err != nil {
				t.Fatal(err)
			}
		case 4:
			if rng.IntN(10) == 0 {
				c.advance(2 * testTTL)
				if _, err := s.Purge(); err != nil {
					t.Fatal(err)
				}
			}
		default:
			mustSet(t, s, key, fmt.Sprint(i))
		}
	}
}

// A store closed cleanly opens with the digest, key count and deadlines
// from its snapshot, equal to what a rebuild from the records finds, after
// random writes, deletes, applies, expiries and purges over several
// restarts (Check, at every close, also compares the snapshot with a
// rebuild).
func TestDigestSnapshotRestart(t *testing.T) {
	rng := testseed.Rand(t)
	c := newClock()
	s := openTest(t, purging(c))
	for round := range 4 {
		randomOps(t, s, rng, c, 300)
		s = reopen(t, s, purging(c))
		if !s.FromSnapshot() {
			t.Fatalf("round %d: a cleanly closed store rebuilt its digest", round)
		}
	}
	for i := range 5 { // whatever the dice said, some of each
		mustSetTTL(t, s, fmt.Sprintf("ttl/%d", i), "v", time.Hour)
		mustSet(t, s, fmt.Sprintf("del/%d", i), "v")
		mustDelete(t, s, fmt.Sprintf("del/%d", i))
	}
	s = reopen(t, s, purging(c))
	if !s.FromSnapshot() {
		t.Fatal("a cleanly closed store rebuilt its digest")
	}
	loaded := digestOf(s)
	checkClose(t, s)
	if err := store.EditSnapshot(s.Path(), false, func([]byte) []byte { return nil }); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, s.Path(), purging(c))
	rebuilt := digestOf(s)
	if rebuilt.persistent {
		t.Fatal("a store without a snapshot did not rebuild")
	}
	loaded.persistent, loaded.lamport, rebuilt.lamport = false, max(loaded.lamport, rebuilt.lamport), max(loaded.lamport, rebuilt.lamport)
	if loaded != rebuilt {
		t.Fatalf("loaded from the snapshot %+v, rebuilt %+v", loaded, rebuilt)
	}
}

// A snapshot Open must not trust is rebuilt: a stale one (writes came
// after it: a crash), a damaged one (Check reports it: the file was
// damaged), none; the next Close writes a good one. One forged to look
// current is trusted by Open, and Check finds it.
func TestDigestSnapshotInvalid(t *testing.T) {
	flip := func(v []byte) []byte { v[len(v)/2] ^= 1; return v }
	const undecodable = "digest snapshot does not decode"
	for _, tc := range []struct {
		name    string
		restamp bool
		edit    func([]byte) []byte // nil: a crash after a clean restart
		trusted bool
		check   string // what Check reports; "": nothing
	}{
		{name: "stale after a crash"},
		{name: "damaged", edit: flip, check: undecodable},
		{name: "truncated", edit: func(v []byte) []byte { return v[:len(v)-1] }, check: undecodable},
		{name: "missing", edit: func([]byte) []byte { return nil }},
		{name: "forged", restamp: true, edit: flip, trusted: true, check: "digest snapshot differs"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t)
			for i := range 200 {
				mustSet(t, s, fmt.Sprintf("k/%d", i), "v")
			}
			s = reopen(t, s)
			path := s.Path()
			if tc.edit == nil {
				mustSet(t, s, "k/after", "v")
				mustDelete(t, s, "k/1")
				if err := s.Flush(); err != nil {
					t.Fatal(err)
				}
				path = crashCopy(t, s)
			} else {
				checkClose(t, s)
				if err := store.EditSnapshot(path, tc.restamp, tc.edit); err != nil {
					t.Fatal(err)
				}
			}
			o, err := store.Open(path, store.Options{NoSync: true})
			if err != nil {
				t.Fatal(err)
			}
			if o.FromSnapshot() != tc.trusted {
				o.Close()
				t.Fatalf("loaded from the snapshot: %v, want %v", o.FromSnapshot(), tc.trusted)
			}
			err = o.Check()
			if cerr := o.Close(); cerr != nil {
				t.Fatal(cerr)
			}
			switch {
			case tc.check == "" && err != nil:
				t.Fatal(err)
			case tc.check != "" && (!errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), tc.check)):
				t.Fatalf("check: %v, want %q", err, tc.check)
			}
			if tc.trusted {
				return // the forged tree is what the store holds now
			}
			if s := openAt(t, path); !s.FromSnapshot() {
				t.Fatal("the close after a rebuild wrote no snapshot")
			}
		})
	}
}
