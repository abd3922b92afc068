package store_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cloudknowledge/ck/internal/testseed"
	"github.com/cloudknowledge/ck/store"
)

// fillApplied stores n records from a peer (keys prefix/0 …) in batches,
// as a bootstrap does.
func fillApplied(t *testing.T, s *store.Store, prefix string, n int) {
	t.Helper()
	for i := 0; i < n; i += 500 {
		recs := make([]store.Record, 0, 500)
		for j := i; j < min(i+500, n); j++ {
			recs = append(recs, write(fmt.Sprintf("%s/%d", prefix, j), fmt.Sprint(j), 9, uint64(j+1), nil))
		}
		_, errs, err := s.ApplyBatch(t.Context(), recs)
		if err != nil {
			t.Fatal(err)
		}
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
}

// waitCounted waits for s to have counted its records.
func waitCounted(t *testing.T, s *store.Store) {
	t.Helper()
	select {
	case <-s.Counted():
	case <-time.After(time.Minute):
		t.Fatal("the store did not finish counting within a minute")
	}
}

// noDigest fails unless s offers no digest: it is still counting.
func noDigest(t *testing.T, s *store.Store, when string) {
	t.Helper()
	if !s.Counting() {
		t.Fatalf("%s: not counting", when)
	}
	if s.Root() != ([32]byte{}) || s.TopDigests() != ([256]store.Hash{}) || s.LeafDigests(7) != ([256]store.Hash{}) {
		t.Fatalf("%s: a digest offered while counting", when)
	}
}

// TestCountInBackground: a crash copy of a store with many keys, some of
// its batches only in the log, reopened with the count held in the
// background: it serves reads (an expired record stays hidden) and
// writes, deletes, applies, expiries, purges and flushes at once while
// offering no digest; once the count completes, its digest tree and key
// count equal a rebuild of its records (Check), and its tree, key count
// and deadlines equal those of a store that counted the same files in
// Open.
func TestCountInBackground(t *testing.T) {
	rng := testseed.Rand(t)
	c := newClock()
	s := openTest(t, purging(c))
	fillApplied(t, s, "b", 5000)
	randomOps(t, s, rng, c, 400)
	mustSetTTL(t, s, "ttl/gone", "v", 10*time.Second)
	c.advance(20 * time.Second)
	if _, err := s.Expire(); err != nil {
		t.Fatal(err)
	}
	release := s.HoldFlushes() // what follows is only in the log: replayed at open
	for i := range 100 {
		key := fmt.Sprintf("d/%d", rng.IntN(200))
		switch rng.IntN(4) {
		case 0:
			mustDelete(t, s, key)
		case 1:
			mustSetTTL(t, s, key, "t", time.Duration(rng.IntN(60)+1)*time.Second)
		case 2:
			mustApply(t, s, write(fmt.Sprintf("b/%d", i), "newer", 8, uint64(6000+i), store.VV{id(9): uint64(i + 1)}), store.Applied)
		default:
			mustSet(t, s, key, fmt.Sprint(i))
		}
	}
	crashed := crashCopy(t, s)
	release()

	hold := make(chan struct{})
	o := openAt(t, crashed, purging(c), store.HoldCount(hold))
	start := sync.OnceFunc(func() { close(hold) })
	t.Cleanup(start) // before the check at the end, which waits for the count
	noDigest(t, o, "opened")
	if o.FromSnapshot() {
		t.Fatal("a crash copy loaded a snapshot")
	}
	for _, i := range []int{777, 1234, 4999} { // not among those applied over
		key := fmt.Sprintf("b/%d", i)
		if rec, found := mustGet(t, o, key); !found || string(rec.Value) != fmt.Sprint(i) {
			t.Fatalf("%s while counting: found %v, %q", key, found, rec.Value)
		}
	}
	if visible(t, o, "ttl/gone") {
		t.Fatal("a record whose deadline passed before the crash is visible while counting")
	}
	randomOps(t, o, rng, c, 300)
	for i := range 50 { // over records of the file the count has not read
		mustDelete(t, o, fmt.Sprintf("b/%d", rng.IntN(5000)))
		mustSetTTL(t, o, fmt.Sprintf("b/%d", rng.IntN(5000)), "t", 30*time.Second)
		mustSet(t, o, fmt.Sprintf("new/%d", i), "v")
	}
	c.advance(40 * time.Second)
	if _, err := o.Expire(); err != nil {
		t.Fatal(err)
	}
	c.advance(2 * testTTL)
	if _, err := o.Purge(); err != nil {
		t.Fatal(err)
	}
	if err := o.Flush(); err != nil {
		t.Fatal(err)
	}
	noDigest(t, o, "after the writes")
	start()
	waitCounted(t, o)
	if err := o.Check(); err != nil {
		t.Fatal(err)
	}
	got := digestOf(o)
	if got.root == ([32]byte{}) {
		t.Fatal("no root once counted")
	}

	inline := openAt(t, crashCopy(t, o))
	if inline.Counting() {
		t.Fatal("a small file was counted in the background")
	}
	want := digestOf(inline)
	got.lamport, want.lamport = 0, 0
	if got != want {
		t.Fatalf("counted in the background %+v, in Open %+v", got, want)
	}
}

// TestCountClose: Close during a count in the background is clean, and
// writes no snapshot (the tree is not complete): the next Open counts
// again and finds everything written meanwhile.
func TestCountClose(t *testing.T) {
	s := openTest(t)
	fillApplied(t, s, "b", 1000)
	mustSet(t, s, "k", "v")
	if err := s.Flush(); err != nil { // into the file the count reads
		t.Fatal(err)
	}
	crashed := crashCopy(t, s)

	hold := make(chan struct{}) // never closed: Close must not wait for it
	opts := store.Options{NoSync: true}
	store.HoldCount(hold)(&opts)
	o, err := store.Open(crashed, opts)
	if err != nil {
		t.Fatal(err)
	}
	noDigest(t, o, "opened")
	mustSet(t, o, "during", "v")
	mustDelete(t, o, "b/7")
	closed := make(chan error, 1)
	go func() { closed <- o.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close waited for the count")
	}
	if !o.Counting() {
		t.Fatal("a count Close cut short says it completed")
	}
	r := openAt(t, crashed, store.CountInBackground)
	if r.FromSnapshot() {
		t.Fatal("Close during the count wrote a snapshot")
	}
	waitCounted(t, r)
	if _, found := mustGet(t, r, "during"); !found {
		t.Fatal("a write during the count is lost")
	}
	if rec, _ := mustGet(t, r, "b/7"); !rec.Deleted {
		t.Fatal("a delete during the count is lost")
	}
	if n := r.Keys(); n != 1001 { // 1000 + k + during - b/7
		t.Fatalf("keys %d, want 1001", n)
	}
}

// TestCountDeadlines: records with a TTL that reached the file without
// their deadline (a crash within a second of their write) get one from
// the count, At + TTL, unless a write replaced them meanwhile.
func TestCountDeadlines(t *testing.T) {
	c := newClock()
	s := openTest(t, purging(c))
	fillApplied(t, s, "b", 500)
	for i := range 4 {
		mustSetTTL(t, s, fmt.Sprintf("ttl/%d", i), "v", time.Hour)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	crashed := crashCopy(t, s)
	forgeFile(t, crashed, func(tx *bolt.Tx) error { // their deadlines were not persisted yet
		for i := range 4 {
			if err := tx.Bucket([]byte("ttl")).Delete([]byte(fmt.Sprintf("ttl/%d", i))); err != nil {
				return err
			}
		}
		return nil
	})

	c.advance(10 * time.Minute)
	hold := make(chan struct{})
	o := openAt(t, crashed, purging(c), store.HoldCount(hold))
	start := sync.OnceFunc(func() { close(hold) })
	t.Cleanup(start)
	mustSet(t, o, "ttl/3", "no ttl now")
	if n := o.TTLKeys(); n != 0 {
		t.Fatalf("%d deadlines known before the count", n)
	}
	start()
	waitCounted(t, o)
	if n := o.TTLKeys(); n != 3 {
		t.Fatalf("%d deadlines after the count, want 3", n)
	}
	for i := range 3 {
		rec, found := mustGet(t, o, fmt.Sprintf("ttl/%d", i))
		if want := (50 * time.Minute).Milliseconds(); !found || rec.Left != want {
			t.Fatalf("ttl/%d: found %v, %d ms left, want %d", i, found, rec.Left, want)
		}
	}
}

// TestCountCorrupt: a record that does not decode, found by a count in
// the background, ends it without a tree: the store still serves the
// others, Counting stays true (no digest is ever offered), and Check
// reports the record.
func TestCountCorrupt(t *testing.T) {
	s := openTest(t)
	fillApplied(t, s, "b", 300)
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	crashed := crashCopy(t, s)
	forgeFile(t, crashed, func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("kv")).Put([]byte("b/150"), []byte{0xff, 0x00})
	})
	opts := store.Options{NoSync: true}
	store.CountInBackground(&opts)
	o, err := store.Open(crashed, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if rec, found := mustGet(t, o, "b/7"); !found || string(rec.Value) != "7" {
		t.Fatalf("b/7: found %v, %q", found, rec.Value)
	}
	if err := o.Check(); !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), "b/150") {
		t.Fatalf("check: %v, want the corrupt record", err)
	}
	noDigest(t, o, "after a failed count")
}
