package store_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/store"
	bolt "go.etcd.io/bbolt"
)

const (
	testTTL      = time.Hour
	testPurgeTTL = 10 * time.Hour
)

// fakeClock is a store's clock that tests move by hand.
type fakeClock struct{ ms atomic.Int64 }

func newClock() *fakeClock {
	c := &fakeClock{}
	c.ms.Store(1_700_000_000_000)
	return c
}

func (c *fakeClock) now() time.Time          { return time.UnixMilli(c.ms.Load()) }
func (c *fakeClock) advance(d time.Duration) { c.ms.Add(d.Milliseconds()) }

// purging makes a store purge tombstones after testTTL on clock c.
func purging(c *fakeClock) func(*store.Options) {
	return func(o *store.Options) {
		o.Now, o.TombstoneTTL, o.PurgeLogTTL = c.now, testTTL, testPurgeTTL
	}
}

// remoteDel is a tombstone written by node n at lamport l over vv, at ms.
func remoteDel(key string, n byte, l uint64, vv store.VV, at int64) store.Record {
	r := write(key, "", n, l, vv)
	r.Value, r.Deleted, r.At = nil, true, at
	return r
}

func mustApply(t *testing.T, s *store.Store, rec store.Record, want store.Outcome) store.ApplyResult {
	t.Helper()
	res, err := s.Apply(t.Context(), rec)
	if err != nil {
		t.Fatalf("apply %q: %v", rec.Key, err)
	}
	if res.Outcome != want {
		t.Fatalf("apply %q (vv %v): %v, want %v", rec.Key, rec.VV, res.Outcome, want)
	}
	return res
}

// mustPurge runs a purge pass; then the store must have purged want
// tombstones since it opened (the purger may have done some of it).
func mustPurge(t *testing.T, s *store.Store, want uint64) {
	t.Helper()
	if _, err := s.Purge(); err != nil {
		t.Fatal(err)
	}
	if n := s.Stats().Purged; n != want {
		t.Fatalf("purged %d tombstones, want %d", n, want)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestPurgeTombstone: a tombstone is returned until At + TTL, hidden from
// then on, and purged by a pass: the digest tree is as if the key had
// never been written, the purge log holds it, and it survives a reopen.
func TestPurgeTombstone(t *testing.T) {
	c := newClock()
	s := openTest(t, purging(c))
	empty := openTest(t)
	ctx := t.Context()
	if _, err := s.Set(ctx, "k", []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(ctx, "other", []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := empty.Set(ctx, "other", []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	del, err := s.Delete(ctx, "k", nil)
	if err != nil {
		t.Fatal(err)
	}
	c.advance(testTTL - time.Millisecond)
	mustPurge(t, s, 0)
	if rec, found := mustGet(t, s, "k"); !found || !rec.Deleted {
		t.Fatalf("tombstone before its TTL: %+v found=%v", rec, found)
	}
	c.advance(time.Millisecond)
	if _, found := mustGet(t, s, "k"); found {
		t.Fatal("an expired tombstone is still returned by Get")
	}
	var scanned []string
	if err := s.Scan("", func(r store.Record) error { scanned = append(scanned, r.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(scanned) != "[other]" {
		t.Fatalf("Scan returned %v", scanned)
	}
	mustPurge(t, s, 1)
	// "other" has another origin and hash on each store: compare the leaf
	// of "k" alone.
	leaf := store.KeyHash("k").Leaf()
	if es, err := s.LeafEntries(leaf); err != nil || len(es) != 0 {
		t.Fatalf("leaf of a purged key: %v, %v", es, err)
	}
	if s.PurgeLogLen() != 1 {
		t.Fatalf("purge log has %d entries", s.PurgeLogLen())
	}
	got, err := s.PurgedRecords(store.KeyHash("k"))
	if err != nil || len(got) != 1 || got[0].Hash() != del.Hash() {
		t.Fatalf("PurgedRecords = %+v, %v; want the tombstone %+v", got, err, del)
	}
	if st := s.Stats(); st.Purged != 1 {
		t.Fatalf("stats %+v", st)
	}
	s = reopen(t, s, purging(c))
	if s.PurgeLogLen() != 1 {
		t.Fatalf("after reopen the purge log has %d entries", s.PurgeLogLen())
	}
}

// TestPurgeLogDropsResurrection: after the purge, the deleted value coming
// back from a node that was away (its vv dominated by the tombstone's, or
// equal) is dropped; a new write is not; once the purge log entry itself
// expires the old value would be taken again — which is why nodes apart
// for longer than purge_log_ttl are quarantined.
func TestPurgeLogDropsResurrection(t *testing.T) {
	c := newClock()
	s := openTest(t, purging(c))
	old := write("k", "old", 1, 10, nil)
	mustApply(t, s, old, store.Applied)
	mustApply(t, s, remoteDel("k", 2, 11, old.VV, c.ms.Load()), store.Applied)
	c.advance(testTTL)
	mustPurge(t, s, 1)
	before := s.LastIndex()
	root := s.Root()
	mustApply(t, s, old, store.Dropped)
	older := write("k", "older", 1, 5, nil)
	mustApply(t, s, older, store.Dropped)
	if s.Root() != root || s.LastIndex() != before {
		t.Fatal("a dropped record changed the store")
	}
	if _, found := mustGet(t, s, "k"); found {
		t.Fatal("the deleted value came back")
	}
	fresh := write("k", "new", 3, 50, nil)
	mustApply(t, s, fresh, store.Applied)
	if st := s.Stats(); st.Dropped != 2 {
		t.Fatalf("stats %+v", st)
	}

	c.advance(testPurgeTTL)
	mustPurge(t, s, 1)
	if s.PurgeLogLen() != 0 {
		t.Fatalf("purge log has %d entries after purge_log_ttl", s.PurgeLogLen())
	}
	other := write("j", "x", 1, 12, nil)
	mustApply(t, s, other, store.Applied)
}

// TestApplyExpiredTombstone: an expired tombstone is never stored, but it
// removes the record it covers (a watcher sees the delete) and goes into
// the purge log; one concurrent with the stored record leaves it alone.
func TestApplyExpiredTombstone(t *testing.T) {
	c := newClock()
	s := openTest(t, purging(c))
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	a := write("a", "va", 1, 10, nil)
	b := write("b", "vb", 1, 11, nil)
	mustApply(t, s, a, store.Applied)
	mustApply(t, s, b, store.Applied)
	since := s.LastIndex()
	events := make(chan store.Event, 10)
	go s.Watch(ctx, "", since, false, func(ev store.Event) error { events <- ev; return nil })

	at := c.ms.Load() - testTTL.Milliseconds()
	mustApply(t, s, remoteDel("a", 2, 20, a.VV, at), store.Dropped)
	if _, found := mustGet(t, s, "a"); found {
		t.Fatal("the value an expired tombstone covers is still there")
	}
	select {
	case ev := <-events:
		if ev.Key != "a" || ev.Op != store.OpDel {
			t.Fatalf("event %+v", ev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no delete event")
	}
	mustApply(t, s, remoteDel("b", 2, 21, store.VV{id(2): 3}, at), store.Dropped)
	if rec, found := mustGet(t, s, "b"); !found || string(rec.Value) != "vb" {
		t.Fatalf("a concurrent expired tombstone removed %+v", rec)
	}
	mustApply(t, s, remoteDel("none", 2, 22, nil, at), store.Dropped)
	if s.PurgeLogLen() != 3 || s.Keys() != 1 {
		t.Fatalf("purge log %d entries, %d keys", s.PurgeLogLen(), s.Keys())
	}
	// The log now covers a's old value.
	mustApply(t, s, a, store.Dropped)
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestPurgeLogMerges: two purges of one key keep one entry covering both.
func TestPurgeLogMerges(t *testing.T) {
	c := newClock()
	s := openTest(t, purging(c))
	at := c.ms.Load() - testTTL.Milliseconds()
	d1 := remoteDel("k", 1, 10, nil, at)
	d2 := remoteDel("k", 2, 12, nil, at-1)
	mustApply(t, s, d1, store.Dropped)
	mustApply(t, s, d2, store.Dropped)
	if s.PurgeLogLen() != 1 {
		t.Fatalf("purge log has %d entries", s.PurgeLogLen())
	}
	both := write("k", "both", 3, 13, nil) // a resolution of the two: lamport above both
	both.VV = store.VV{id(1): 10, id(2): 12}
	mustApply(t, s, both, store.Dropped)
	mustApply(t, s, write("k", "v1", 1, 9, nil), store.Dropped)
	mustApply(t, s, write("k", "new", 3, 30, nil), store.Applied)
}

// TestPurgeMany purges more tombstones than one transaction takes, with
// writes going on, and the store checks.
func TestPurgeMany(t *testing.T) {
	c := newClock()
	s := openTest(t, purging(c))
	ctx := t.Context()
	const n = 25000
	recs := make([]store.Record, 0, n)
	for i := range n {
		recs = append(recs, remoteDel(fmt.Sprintf("k%05d", i), 1, uint64(i+1), nil, c.ms.Load()))
	}
	errs := make(chan error, 8)
	for w := range 8 {
		go func() {
			for i := w; i < n; i += 8 {
				if _, err := s.Apply(ctx, recs[i]); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Set(ctx, "live", []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	c.advance(testTTL)
	done := make(chan error)
	go func() {
		for i := range 200 {
			if _, err := s.Set(ctx, fmt.Sprintf("during%d", i), []byte("x"), nil); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	mustPurge(t, s, n)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s.PurgeLogLen() != n || s.Keys() != 201 {
		t.Fatalf("purge log %d, keys %d", s.PurgeLogLen(), s.Keys())
	}
}

// TestPurgerRuns: the store's own purger purges without being asked.
func TestPurgerRuns(t *testing.T) {
	s := openTest(t, func(o *store.Options) { o.TombstoneTTL, o.PurgeLogTTL = 50*time.Millisecond, time.Hour })
	if _, err := s.Delete(t.Context(), "k", nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for s.Stats().Purged == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the purger did not purge an expired tombstone")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestUpgradeIndexesTombstones: a format 2 file (no tombstone index, no
// purge log) is upgraded at open, and its tombstones purge.
func TestUpgradeIndexesTombstones(t *testing.T) {
	c := newClock()
	path := filepath.Join(t.TempDir(), "store.db")
	s, err := store.Open(path, store.Options{NoSync: true, Now: c.now})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		k := fmt.Sprint("k", i)
		if _, err := s.Set(t.Context(), k, []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			if _, err := s.Delete(t.Context(), k, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	forgeFile(t, path, func(tx *bolt.Tx) error {
		return errors.Join(
			tx.DeleteBucket([]byte("tombs")),
			tx.DeleteBucket([]byte("purged")),
			tx.Bucket(store.BucketMeta).Put(store.MetaFormat, []byte{0, 0, 0, 0, 0, 0, 0, 2}),
		)
	})
	s = openAt(t, path, purging(c))
	c.advance(testTTL)
	mustPurge(t, s, 5)
}

// TestApplyBatchPurges: ApplyBatch treats expired tombstones and records
// the purge log covers as Apply does: neither is stored.
func TestApplyBatchPurges(t *testing.T) {
	c := newClock()
	s := openTest(t, purging(c))
	a := write("a", "va", 1, 10, nil)
	mustApply(t, s, a, store.Applied)
	at := c.ms.Load() - testTTL.Milliseconds()
	// Expired tombstones are handled after the batch's records are
	// stored, so the old c below, stored by the batch, is removed by the
	// expired tombstone of c that covers it.
	batch := []store.Record{
		remoteDel("a", 2, 20, a.VV, at), // expired: removes a
		write("b", "vb", 1, 11, nil),    // plain
		remoteDel("c", 2, 21, nil, at),  // expired
		write("c", "old c", 2, 5, nil),  // covered by the tombstone above
	}
	res, errs, err := s.ApplyBatch(t.Context(), batch)
	if err != nil {
		t.Fatal(err)
	}
	want := []store.Outcome{store.Dropped, store.Applied, store.Dropped, store.Applied}
	for i := range batch {
		if errs[i] != nil || res[i].Outcome != want[i] {
			t.Errorf("record %d (%s): %v, %v; want %v", i, batch[i].Key, res[i].Outcome, errs[i], want[i])
		}
	}
	for _, key := range []string{"a", "c"} {
		if rec, found := mustGet(t, s, key); found {
			t.Errorf("%s survived the expired tombstone that covers it: %+v", key, rec)
		}
	}
	// Now the purge log covers both old values.
	res, errs, err = s.ApplyBatch(t.Context(), []store.Record{a, write("c", "old c", 2, 5, nil)})
	if err != nil || errs[0] != nil || errs[1] != nil || res[0].Outcome != store.Dropped || res[1].Outcome != store.Dropped {
		t.Fatalf("covered records in a batch: %+v %v %v", res, errs, err)
	}
	if s.Keys() != 1 {
		t.Fatalf("%d keys, want 1 (b)", s.Keys())
	}
}

// TestScanAllAndPurged: ScanAll returns expired tombstones that Scan
// hides; once purged they are in ScanPurged.
func TestScanAllAndPurged(t *testing.T) {
	c := newClock()
	s := openTest(t, purging(c))
	if _, err := s.Delete(t.Context(), "d", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Set(t.Context(), "v", []byte("x"), nil); err != nil {
		t.Fatal(err)
	}
	c.advance(testTTL)
	keys := func(scan func(func(store.Record) error) error) string {
		var out []string
		if err := scan(func(r store.Record) error { out = append(out, r.Key); return nil }); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(out)
	}
	scan := func(fn func(store.Record) error) error { return s.Scan("", fn) }
	all := func(fn func(store.Record) error) error { return s.ScanAll("", fn) }
	if got := keys(scan); got != "[v]" {
		t.Errorf("Scan: %s", got)
	}
	if got := keys(all); got != "[d v]" {
		t.Errorf("ScanAll before the purge: %s", got)
	}
	mustPurge(t, s, 1)
	if got := keys(all); got != "[v]" {
		t.Errorf("ScanAll after the purge: %s", got)
	}
	if got := keys(s.ScanPurged); got != "[d]" {
		t.Errorf("ScanPurged: %s", got)
	}
}
