package store_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/testseed"
	"github.com/cloudknowledge/ck/store"
)

func mustSetTTL(t testing.TB, s *store.Store, key, value string, ttl time.Duration) store.Record {
	t.Helper()
	rec, err := s.SetTTL(t.Context(), key, []byte(value), nil, ttl)
	if err != nil {
		t.Fatalf("set %q ttl %s: %v", key, ttl, err)
	}
	return rec
}

// visible reports what Get, List and Scan say of key, failing when they
// disagree.
func visible(t *testing.T, s *store.Store, key string) bool {
	t.Helper()
	_, got, err := s.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	recs, _, err := s.List(key, "", 0, false)
	if err != nil {
		t.Fatal(err)
	}
	scanned := 0
	if err := s.Scan(key, func(store.Record) error { scanned++; return nil }); err != nil {
		t.Fatal(err)
	}
	if (len(recs) == 1) != got || (scanned == 1) != got {
		t.Fatalf("%q: get %v, list %d, scan %d", key, got, len(recs), scanned)
	}
	return got
}

// TestTTLExpires: a record with a TTL is read with its remaining
// lifetime, hidden from every read once its deadline passes (before any
// background work), logged as an expire event, and still handed to peers
// (Peek) with Left 0, its bytes unchanged.
func TestTTLExpires(t *testing.T) {
	c := newClock()
	s := openTest(t, purging(c))
	w := mustSetTTL(t, s, "k", "v", 10*time.Second)
	if w.TTL != 10000 || w.Left != 10000 {
		t.Fatalf("written: ttl %d left %d", w.TTL, w.Left)
	}
	root := s.Root()
	c.advance(4 * time.Second)
	got, _, _ := s.Get("k")
	if got.Left != 6000 {
		t.Fatalf("left after 4 s: %d, want 6000", got.Left)
	}
	if !visible(t, s, "k") {
		t.Fatal("hidden before its deadline")
	}
	c.advance(6 * time.Second)
	if visible(t, s, "k") {
		t.Fatal("visible past its deadline")
	}
	p, found, err := s.Peek("k")
	if err != nil || !found || p.Left != 0 || p.Hash() != w.Hash() {
		t.Fatalf("peek: found %v left %d err %v", found, p.Left, err)
	}
	if s.Root() != root {
		t.Fatal("an expiry changed the digest")
	}
	if _, err := s.Expire(); err != nil || s.Stats().Expired != 1 {
		t.Fatalf("expire: %d logged, %v", s.Stats().Expired, err)
	}
	evs := events(t, s)
	if last := evs[len(evs)-1]; last.Op != store.OpExpire || last.Key != "k" || last.Version != w.Lamport {
		t.Fatalf("last event %+v", last)
	}
	if _, err := s.Expire(); err != nil || s.Stats().Expired != 1 {
		t.Fatalf("a second pass: %d logged in all, %v", s.Stats().Expired, err)
	}
}

// TestTTLReceived: a receiver's deadline is its now + the lifetime the
// sender said was left, never later than one it holds for the same record,
// and a newer version has its own lifetime.
func TestTTLReceived(t *testing.T) {
	c := newClock()
	s := openTest(t, purging(c))
	rec := write("k", "v", 2, 5, nil)
	rec.TTL, rec.Left, rec.At = 10000, 3000, c.now().UnixMilli()
	mustApply(t, s, rec, store.Applied)
	got, _, _ := s.Get("k")
	if got.Left != 3000 {
		t.Fatalf("left %d, want the sender's 3000", got.Left)
	}
	rec.Left = 9000 // learnt again, later, with a longer life: ignored
	mustApply(t, s, rec, store.Ignored)
	rec.Left = 1000 // a shorter one lowers it
	mustApply(t, s, rec, store.Ignored)
	if got, _, _ = s.Get("k"); got.Left != 1000 {
		t.Fatalf("left %d, want 1000", got.Left)
	}
	hostile := write("h", "v", 2, 6, nil)
	hostile.TTL, hostile.Left, hostile.At = 2000, 1<<40, c.now().UnixMilli()
	mustApply(t, s, hostile, store.Applied)
	if got, _, _ = s.Get("h"); got.Left != 2000 {
		t.Fatalf("a remaining lifetime above the ttl: left %d", got.Left)
	}
	c.advance(time.Second)
	if visible(t, s, "k") {
		t.Fatal("visible past the deadline the sender gave")
	}
	newer := write("k", "v2", 3, 7, rec.VV)
	mustApply(t, s, newer, store.Applied)
	if !visible(t, s, "k") {
		t.Fatal("a newer version without a ttl is hidden")
	}
	late := write("x", "v", 2, 8, nil)
	late.TTL, late.Left, late.At = 10000, 0, c.now().UnixMilli() // expired where it came from
	mustApply(t, s, late, store.Applied)
	if visible(t, s, "x") {
		t.Fatal("a record received expired is visible")
	}
	for _, bad := range []int64{-1, testTTL.Milliseconds() + 1} {
		r := write("b", "v", 2, 9, nil)
		r.TTL = bad
		if _, err := s.Apply(t.Context(), r); !errors.Is(err, store.ErrBadRecord) {
			t.Errorf("ttl %d: %v, want ErrBadRecord", bad, err)
		}
	}
}

// TestTTLWrite: bad TTLs are refused, a compare-and-set sees an expired
// key as absent, and the write replacing it dominates it.
func TestTTLWrite(t *testing.T) {
	c := newClock()
	s := openTest(t, purging(c))
	for _, ttl := range []time.Duration{time.Millisecond, 999 * time.Millisecond, testTTL + time.Second, -time.Second} {
		if _, err := s.SetTTL(t.Context(), "bad", []byte("v"), nil, ttl); !errors.Is(err, store.ErrBadTTL) {
			t.Errorf("ttl %s: %v, want ErrBadTTL", ttl, err)
		}
	}
	if _, found, _ := s.Get("bad"); found {
		t.Fatal("a refused write was stored")
	}
	old := mustSetTTL(t, s, "k", "v", 2*time.Second)
	zero := uint64(0)
	if _, err := s.SetTTL(t.Context(), "k", []byte("w"), &zero, 2*time.Second); !errors.Is(err, store.ErrVersionMismatch) {
		t.Fatalf("if-version 0 on a live key: %v", err)
	}
	c.advance(2 * time.Second)
	w, err := s.SetTTL(t.Context(), "k", []byte("w"), &zero, 0)
	if err != nil {
		t.Fatalf("if-version 0 on an expired key: %v", err)
	}
	if store.Compare(&w, &old) != store.Newer || w.TTL != 0 {
		t.Fatalf("the new write does not dominate the expired one (ttl %d)", w.TTL)
	}
	c.advance(time.Hour)
	if !visible(t, s, "k") {
		t.Fatal("a write without a ttl expired")
	}
}

// TestTTLRestart: deadlines survive a restart, the time the store was
// closed counting; an expiry logged before is not logged again.
func TestTTLRestart(t *testing.T) {
	c := newClock()
	s := openTest(t, purging(c))
	mustSetTTL(t, s, "a", "v", 10*time.Second)
	mustSetTTL(t, s, "b", "v", 2*time.Second)
	rec := write("r", "v", 2, 5, nil)
	rec.TTL, rec.Left, rec.At = 60000, 5000, c.now().UnixMilli()
	mustApply(t, s, rec, store.Applied)
	c.advance(3 * time.Second)
	if _, err := s.Expire(); err != nil || s.Stats().Expired != 1 {
		t.Fatalf("expire b: %d logged, %v", s.Stats().Expired, err)
	}
	s = reopen(t, s, purging(c))
	c.advance(3 * time.Second)
	if got, _, _ := s.Get("a"); got.Left != 4000 {
		t.Fatalf("a: left %d after 6 s, want 4000", got.Left)
	}
	if visible(t, s, "r") || visible(t, s, "b") {
		t.Fatal("a received record outlived the sender's deadline across a restart")
	}
	if _, err := s.Expire(); err != nil || s.Stats().Expired != 1 {
		t.Fatalf("after the restart %d expire events (%v), want 1 (r)", s.Stats().Expired, err)
	}
}

// TestTTLPurge: an expired record stays (hidden, the same bytes) until
// At + TTL + TombstoneTTL, then goes to the purge log like a tombstone,
// which drops it when a node that was away sends it back.
func TestTTLPurge(t *testing.T) {
	c := newClock()
	s := openTest(t, purging(c))
	w := mustSetTTL(t, s, "k", "v", 10*time.Second)
	mustSet(t, s, "plain", "v")
	c.advance(testTTL)
	mustPurge(t, s, 0)
	if _, found, _ := s.Peek("k"); !found {
		t.Fatal("purged before At + TTL + TombstoneTTL")
	}
	c.advance(10 * time.Second)
	if _, found, _ := s.Peek("k"); found {
		t.Fatal("past At + TTL + TombstoneTTL, still handed to peers")
	}
	mustPurge(t, s, 1)
	if s.PurgeLogLen() != 1 || s.TTLKeys() != 0 || s.Keys() != 1 {
		t.Fatalf("purge log %d, deadlines %d, keys %d", s.PurgeLogLen(), s.TTLKeys(), s.Keys())
	}
	w.Left = 5000
	mustApply(t, s, w, store.Dropped)
}

// TestTTLConcurrentWrites: writes with and without TTLs racing expiries and
// the expirer leave a consistent store (Check in cleanup).
func TestTTLConcurrentWrites(t *testing.T) {
	rng := testseed.Rand(t)
	seed := rng.Uint64()
	c := newClock()
	s := openTest(t, purging(c))
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				key := []string{"a", "b", "c"}[(uint64(i)+seed+uint64(g))%3]
				ttl := time.Duration((i+g)%3) * time.Second
				if _, err := s.SetTTL(t.Context(), key, []byte("v"), nil, ttl); err != nil {
					t.Error(err)
					return
				}
				if i%50 == 0 {
					c.advance(time.Second)
					if _, err := s.Expire(); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
}
