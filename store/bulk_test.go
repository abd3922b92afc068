package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/testseed"
	"github.com/cloudknowledge/ck/store"
)

// bulkInput is a bootstrap's stream for the loader tests: records of n
// keys in key order, of every kind a peer sends — values, tombstones
// (some expired: Apply drops them), records with a TTL and a lifetime
// left, version vectors of several entries — at the clock c's time.
func bulkInput(rng *rand.Rand, c *fakeClock, n int) []store.Record {
	now := c.now().UnixMilli()
	recs := make([]store.Record, n)
	for i := range recs {
		key := fmt.Sprintf("k/%05d", i)
		node, l := byte(1+rng.IntN(3)), uint64(1+rng.IntN(1000))
		var vv store.VV
		if rng.IntN(3) == 0 {
			vv = store.VV{id(byte(1 + rng.IntN(3))): uint64(1 + rng.IntN(int(l)))}
		}
		rec := write(key, "", node, l, vv)
		rec.Value = make([]byte, rng.IntN(300))
		for j := range rec.Value {
			rec.Value[j] = byte(rng.Uint32())
		}
		rec.At = now - rng.Int64N(testTTL.Milliseconds()/2)
		switch k := rng.IntN(10); {
		case k == 0:
			rec.Value, rec.Deleted = nil, true
		case k == 1:
			rec.Value, rec.Deleted = nil, true
			rec.At = now - 2*testTTL.Milliseconds() // expired: never stored
		case k <= 3:
			rec.TTL = testTTL.Milliseconds()
			rec.Left = 1 + rng.Int64N(rec.TTL)
		}
		recs[i] = rec
	}
	return recs
}

// bulkOp is a write that comes while a bootstrap loads (a local write or
// a peer's UPDATE), at a frame boundary.
type bulkOp struct {
	after int // frames loaded before it
	key   string
	del   bool          // a local delete; else a local set, unless rec
	rec   *store.Record // a received record
}

// bulkOps returns writes to interleave with recs in frames of size
// frame: to keys loaded already and to keys still to come.
func bulkOps(rng *rand.Rand, recs []store.Record, frame, n int) []bulkOp {
	frames := (len(recs) + frame - 1) / frame
	ops := make([]bulkOp, n)
	for i := range ops {
		key := recs[rng.IntN(len(recs))].Key
		op := bulkOp{after: rng.IntN(frames + 1), key: key}
		switch rng.IntN(3) {
		case 0:
			op.del = true
		case 1:
			rec := write(key, "update", 4, uint64(1+rng.IntN(2000)), nil)
			op.rec = &rec
		}
		ops[i] = op
	}
	slices.SortStableFunc(ops, func(a, b bulkOp) int { return a.after - b.after })
	return ops
}

// do runs op on s.
func (op bulkOp) do(t *testing.T, s *store.Store) {
	t.Helper()
	var err error
	switch {
	case op.rec != nil:
		_, err = s.Apply(t.Context(), *op.rec)
	case op.del:
		_, err = s.Delete(t.Context(), op.key, nil)
	default:
		_, err = s.Set(t.Context(), op.key, []byte("local"), nil)
	}
	if err != nil {
		t.Fatalf("%+v: %v", op, err)
	}
}

// twinStores returns two empty stores with the same node id (one file
// copied), so that their local writes make the same records.
func twinStores(t *testing.T, opts ...func(*store.Options)) (a, b *store.Store) {
	t.Helper()
	dir := t.TempDir()
	pa, pb := filepath.Join(dir, "a", "store.db"), filepath.Join(dir, "b", "store.db")
	s := openAt(t, pa, opts...)
	checkClose(t, s)
	if err := os.MkdirAll(filepath.Dir(pb), 0o700); err != nil {
		t.Fatal(err)
	}
	copyFile(t, pa, pb)
	return openAt(t, pa, opts...), openAt(t, pb, opts...)
}

// TestLoaderMatchesApplyBatch loads the same stream, with the same writes
// interleaved, into one store through ApplyBatch and into its twin
// through a Loader in small chunks, and compares what they hold: every
// record, the outcomes, the digest, the key and TTL counts, the change
// log's events (as a set: the loader orders a chunk's routed records
// after its bulk ones), the key-hash index as LeafEntries reads it, and
// both pass Check (cleanup) — before and after the staged index is
// merged, and after a reopen.
func TestLoaderMatchesApplyBatch(t *testing.T) {
	tests := []struct {
		name    string
		order   func([]store.Record)
		ops     int
		purging bool
	}{
		{name: "key order", order: func([]store.Record) {}},
		{name: "key order, writes interleaved", order: func([]store.Record) {}, ops: 300},
		{name: "key order, purging", order: func([]store.Record) {}, ops: 100, purging: true},
		{name: "leaf order", order: func(recs []store.Record) {
			slices.SortFunc(recs, func(a, b store.Record) int {
				ka, kb := store.KeyHash(a.Key), store.KeyHash(b.Key)
				return slices.Compare(ka[:], kb[:])
			})
		}, ops: 50},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := testseed.Rand(t)
			c := newClock()
			opts := []func(*store.Options){func(o *store.Options) { o.Now = c.now }}
			if tt.purging {
				opts = append(opts, purging(c))
			}
			a, b := twinStores(t, opts...)
			const frame = 97
			recs := bulkInput(rng, c, 1500)
			tt.order(recs)
			ops := bulkOps(rng, recs, frame, tt.ops/2)

			want := map[string]store.Outcome{}
			next := 0
			for f := 0; f*frame < len(recs) || next < len(ops); f++ {
				for ; next < len(ops) && ops[next].after == f; next++ {
					ops[next].do(t, a)
				}
				if f*frame >= len(recs) {
					continue
				}
				frameRecs := recs[f*frame : min((f+1)*frame, len(recs))]
				res, errs, err := a.ApplyBatch(t.Context(), frameRecs)
				if err != nil {
					t.Fatal(err)
				}
				for i := range frameRecs {
					if errs[i] != nil {
						t.Fatalf("apply %q: %v", frameRecs[i].Key, errs[i])
					}
					want[frameRecs[i].Key] = res[i].Outcome
				}
			}

			l := b.NewLoader()
			defer l.Close()
			l.SetChunk(200)
			got := map[string]store.Outcome{}
			take := func(done []store.Loaded, err error) {
				t.Helper()
				if err != nil {
					t.Fatal(err)
				}
				for _, d := range done {
					if d.Err != nil {
						t.Fatalf("load %q: %v", d.Record.Key, d.Err)
					}
					got[d.Record.Key] = d.Result.Outcome
				}
			}
			next = 0
			for f := 0; f*frame < len(recs) || next < len(ops); f++ {
				if next < len(ops) && ops[next].after == f {
					take(l.Flush(t.Context())) // the same order as a's
				}
				for ; next < len(ops) && ops[next].after == f; next++ {
					ops[next].do(t, b)
				}
				if f*frame < len(recs) {
					take(l.Load(t.Context(), recs[f*frame:min((f+1)*frame, len(recs))]))
				}
			}
			take(l.Flush(t.Context()))
			if err := b.Check(); err != nil {
				t.Fatalf("check with the index staged: %v", err)
			}
			take(l.Finish(t.Context()))
			if staged, err := b.Staged(); err != nil || staged {
				t.Fatalf("staged entries after Finish: %v %v", staged, err)
			}
			if !reflect.DeepEqual(got, want) {
				for k, o := range want {
					if got[k] != o {
						t.Errorf("%q: loaded %v, applied %v", k, got[k], o)
					}
				}
				t.Fatalf("outcomes differ")
			}
			sameStores(t, a, b, recs)
			sameStores(t, reopen(t, a, opts...), reopen(t, b, opts...), recs)
		})
	}
}

// sameStores fails unless a and b hold the same records, digests,
// counts, change-log events and index entries.
func sameStores(t *testing.T, a, b *store.Store, recs []store.Record) {
	t.Helper()
	ra, rb := allRecords(t, a), allRecords(t, b)
	if len(ra) != len(rb) {
		t.Fatalf("%d records, %d loaded", len(ra), len(rb))
	}
	for k, r := range ra {
		if !reflect.DeepEqual(r, rb[k]) {
			t.Fatalf("%q: %+v, loaded %+v", k, r, rb[k])
		}
	}
	if a.Root() != b.Root() || a.Keys() != b.Keys() || a.TTLKeys() != b.TTLKeys() {
		t.Fatalf("root %x keys %d ttl %d; loaded: root %x keys %d ttl %d",
			a.Root(), a.Keys(), a.TTLKeys(), b.Root(), b.Keys(), b.TTLKeys())
	}
	if a.LastIndex() != b.LastIndex() {
		t.Fatalf("last index %d, loaded %d", a.LastIndex(), b.LastIndex())
	}
	if ea, eb := eventSet(t, a), eventSet(t, b); !reflect.DeepEqual(ea, eb) {
		t.Fatalf("events differ:\n%v\n%v", ea, eb)
	}
	leaves := map[uint16]bool{}
	for _, r := range recs {
		leaves[store.KeyHash(r.Key).Leaf()] = true
	}
	for leaf := range leaves {
		la, err := a.LeafEntries(leaf)
		if err != nil {
			t.Fatal(err)
		}
		lb, err := b.LeafEntries(leaf)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(la, lb) {
			t.Fatalf("leaf %d: %v, loaded %v", leaf, la, lb)
		}
	}
}

// allRecords returns every record s holds (expired ones too).
func allRecords(t *testing.T, s *store.Store) map[string]store.Record {
	t.Helper()
	out := map[string]store.Record{}
	if err := s.ScanAll("", func(r store.Record) error { out[r.Key] = r; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// eventSet returns the change log's events as strings, sorted, without
// their indexes.
func eventSet(t *testing.T, s *store.Store) []string {
	t.Helper()
	var out []string
	for _, ev := range events(t, s) {
		out = append(out, fmt.Sprintf("%s %s %d %s", ev.Op, ev.Key, ev.Version, ev.Origin))
	}
	slices.Sort(out)
	return out
}

// TestLoaderConcurrentWrites loads a stream while local writes and
// received records for the same keys come from other goroutines, and
// checks that nothing was overwritten blindly: every key's record
// descends from (dominates or equals) every version written or received
// for it, and Check passes.
func TestLoaderConcurrentWrites(t *testing.T) {
	rng := testseed.Rand(t)
	c := newClock()
	s := openTest(t, func(o *store.Options) { o.Now = c.now })
	recs := bulkInput(rng, c, 4000)
	var mu sync.Mutex
	seen := map[string][]store.VV{}
	note := func(key string, vv store.VV) {
		mu.Lock()
		seen[key] = append(seen[key], vv)
		mu.Unlock()
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	for w := range 3 {
		wrng := rand.New(rand.NewPCG(rng.Uint64(), uint64(w)))
		wg.Go(func() {
			for ctx.Err() == nil {
				key := recs[wrng.IntN(len(recs))].Key
				var rec store.Record
				var err error
				switch wrng.IntN(3) {
				case 0:
					rec, err = s.Set(ctx, key, []byte("local"), nil)
				case 1:
					rec, err = s.Delete(ctx, key, nil)
				default:
					var res store.ApplyResult
					in := write(key, "update", 5, uint64(1+wrng.IntN(3000)), nil)
					res, err = s.Apply(ctx, in)
					rec = in
					if err == nil && res.Outcome == store.Dropped {
						continue
					}
				}
				if err != nil {
					if ctx.Err() == nil {
						t.Error(err)
					}
					return
				}
				note(key, rec.VV)
			}
		})
	}
	l := s.NewLoader()
	defer l.Close()
	l.SetChunk(150)
	take := func(done []store.Loaded, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range done {
			if d.Err != nil {
				t.Fatalf("load %q: %v", d.Record.Key, d.Err)
			}
			if d.Result.Outcome != store.Dropped {
				note(d.Record.Key, d.Record.VV)
			}
		}
	}
	for i := 0; i < len(recs); i += 50 {
		take(l.Load(t.Context(), recs[i:min(i+50, len(recs))]))
	}
	take(l.Finish(t.Context()))
	cancel()
	wg.Wait()
	got := allRecords(t, s)
	for key, vvs := range seen {
		r, ok := got[key]
		if !ok {
			t.Fatalf("%q: no record, written %v", key, vvs)
		}
		for _, vv := range vvs {
			if o := r.VV.Compare(vv); o != store.Newer && o != store.Same {
				t.Fatalf("%q: holds vv %v, which does not descend from %v (%v)", key, r.VV, vv, o)
			}
		}
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

// TestLoaderCrash takes crash images of a store while a Loader writes
// into it (the data file as of a commit, and the log), opens each, checks
// it, and finishes the bootstrap the way a restarted node does — a normal
// sync (ApplyBatch) of the whole stream and the staged index merged —
// ending with the records of a store that got everything through
// ApplyBatch.
func TestLoaderCrash(t *testing.T) {
	rng := testseed.Rand(t)
	c := newClock()
	opt := func(o *store.Options) { o.Now = c.now }
	recs := bulkInput(rng, c, 3000)
	ref := openTest(t, opt)
	if _, _, err := ref.ApplyBatch(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	s := openTest(t, opt)
	l := s.NewLoader()
	defer l.Close()
	l.SetChunk(128)
	var images []string
	flushed := map[int]bool{} // images of a file that holds staged runs
	for i := 0; i < len(recs); i += 100 {
		if _, err := l.Load(t.Context(), recs[i:min(i+100, len(recs))]); err != nil {
			t.Fatal(err)
		}
		if i/100%16 == 3 {
			// Every chunk so far written: an image of a file with the
			// index staged. (Other images catch the writer wherever it is.)
			if _, err := l.Flush(t.Context()); err != nil {
				t.Fatal(err)
			}
			flushed[len(images)] = true
		}
		if i/100%8 == 3 { // four images, at different stages
			if rng.IntN(2) == 0 {
				// A local write between chunks: in the log, not yet flushed.
				mustSet(t, s, recs[rng.IntN(len(recs))].Key, "local")
			}
			dir := t.TempDir()
			path, err := s.CrashCopy(dir)
			if err != nil {
				t.Fatal(err)
			}
			images = append(images, path)
		}
	}
	if _, err := l.Finish(t.Context()); err != nil {
		t.Fatal(err)
	}
	for i, path := range images {
		t.Run(fmt.Sprint("image ", i), func(t *testing.T) {
			r := openAt(t, path, opt)
			if err := r.Check(); err != nil {
				t.Fatalf("crash image: %v", err)
			}
			if staged, err := r.Staged(); err != nil || flushed[i] && !staged {
				t.Fatalf("no staged index in an image taken after a flush: %v", err)
			}
			if _, _, err := r.ApplyBatch(t.Context(), recs); err != nil {
				t.Fatal(err)
			}
			if _, err := r.MergeStaged(t.Context()); err != nil {
				t.Fatal(err)
			}
			if staged, err := r.Staged(); err != nil || staged {
				t.Fatalf("staged entries after MergeStaged: %v %v", staged, err)
			}
			want := allRecords(t, ref)
			for k, rec := range allRecords(t, r) {
				if w, ok := want[k]; !ok || rec.VV.Compare(w.VV) != store.Newer && !reflect.DeepEqual(rec, w) {
					t.Fatalf("%q: %+v, want %+v or a local write over it", k, rec, w)
				}
			}
		})
	}
}

// TestLoaderPurgeUnstages purges tombstones a load wrote before their
// index entries were merged: the purge removes the staged entries with
// the records, so Check finds the index exact before and after the
// merge.
func TestLoaderPurgeUnstages(t *testing.T) {
	c := newClock()
	s := openTest(t, purging(c))
	now := c.now().UnixMilli()
	var recs []store.Record
	for i := range 500 {
		key := fmt.Sprintf("p/%04d", i)
		if i%2 == 0 {
			recs = append(recs, remoteDel(key, 2, uint64(i+1), nil, now))
		} else {
			recs = append(recs, write(key, "v", 2, uint64(i+1), nil))
		}
	}
	l := s.NewLoader()
	defer l.Close()
	l.SetChunk(64)
	if _, err := l.Load(t.Context(), recs); err != nil {
		t.Fatal(err)
	}
	if _, err := l.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	c.advance(testTTL + time.Second)
	mustPurge(t, s, 250)
	if err := s.Check(); err != nil {
		t.Fatalf("purged with the index staged: %v", err)
	}
	if _, err := l.Finish(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := s.Keys(); got != 250 {
		t.Fatalf("%d keys, want 250", got)
	}
}

// TestLoaderExpiredStaysHidden: records that arrive expired (a TTL with
// no lifetime left) are never shown by a read, not even one that runs
// while their chunk commits. The bulk commit makes its records visible
// in the file before it publishes anything in memory; a record whose
// deadline was not yet known then read as live, with its whole TTL
// (fillLeft), and a node bootstrapping after a key expired showed it.
func TestLoaderExpiredStaysHidden(t *testing.T) {
	c := newClock()
	s := openTest(t, func(o *store.Options) { o.Now = c.now })
	const n, chunk = 6000, 100
	recs := make([]store.Record, n)
	for i := range recs {
		rec := write(fmt.Sprintf("k/%05d", i), "v", 1, uint64(1+i), nil)
		rec.At, rec.TTL, rec.Left = c.now().UnixMilli(), testTTL.Milliseconds(), 0
		recs[i] = rec
	}
	ctx, cancel := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var mu sync.Mutex
	var shown []string
	for r := range 2 {
		wg.Go(func() {
			for i := r; ctx.Err() == nil; i = (i + 7) % n {
				if _, found, err := s.Get(recs[i].Key); err != nil {
					t.Error(err)
					return
				} else if found {
					mu.Lock()
					shown = append(shown, recs[i].Key)
					mu.Unlock()
					return
				}
			}
		})
	}
	l := s.NewLoader()
	defer l.Close()
	l.SetChunk(chunk)
	for i := 0; i < n; i += chunk {
		if _, err := l.Load(t.Context(), recs[i:i+chunk]); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := l.Finish(t.Context()); err != nil {
		t.Fatal(err)
	}
	cancel()
	wg.Wait()
	if len(shown) > 0 {
		t.Fatalf("a read showed %v, which arrived expired", shown)
	}
}
