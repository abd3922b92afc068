package store_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/cloudknowledge/ck/store"
)

// crashCopy copies the store's files (data file, then log) as a crash
// would leave them, and returns the copy's path.
func crashCopy(t *testing.T, s *store.Store) string {
	t.Helper()
	to := filepath.Join(t.TempDir(), "crashed.db")
	copyFile(t, s.Path(), to)
	copyFile(t, store.WALPath(s.Path()), store.WALPath(to))
	return to
}

// crashedLog reads the log of the crash copy at crashed, and returns its
// path, its bytes and where its last written block starts.
func crashedLog(t *testing.T, crashed string) (path string, data []byte, last int) {
	t.Helper()
	path = store.WALPath(crashed)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, data, lastBlock(data)
}

// lastBlock returns where the log's last written block starts: the ring
// is allocated (zeros) beyond the batches.
func lastBlock(data []byte) int {
	for pos := len(data)/4096*4096 - 4096; pos >= 0; pos -= 4096 {
		if slices.ContainsFunc(data[pos:pos+4096], func(b byte) bool { return b != 0 }) {
			return pos
		}
	}
	return -1
}

// state is what a store holds, to compare.
type state struct {
	keys, last, lamport uint64
	root                [32]byte
	recs                []store.Record
	events              []store.Event
}

func snapshot(t *testing.T, s *store.Store) state {
	t.Helper()
	st := state{keys: s.Keys(), last: s.LastIndex(), lamport: s.Lamport(), root: s.Root(), events: events(t, s)}
	if err := s.Scan("", func(r store.Record) error { st.recs = append(st.recs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return st
}

// sameState fails unless got holds exactly what want holds.
func sameState(t *testing.T, want, got *store.Store) {
	t.Helper()
	sameAs(t, snapshot(t, want), got)
}

func sameAs(t *testing.T, w state, got *store.Store) {
	t.Helper()
	g := snapshot(t, got)
	if g.keys != w.keys || g.last != w.last || g.root != w.root || g.lamport < w.lamport {
		t.Fatalf("keys %d/%d, last index %d/%d, lamport %d/%d, roots equal %v",
			g.keys, w.keys, g.last, w.last, g.lamport, w.lamport, g.root == w.root)
	}
	if len(g.recs) != len(w.recs) {
		t.Fatalf("%d records, want %d", len(g.recs), len(w.recs))
	}
	for i := range w.recs {
		if w.recs[i].Hash() != g.recs[i].Hash() {
			t.Fatalf("record %q differs: %+v, want %+v", w.recs[i].Key, g.recs[i], w.recs[i])
		}
	}
	if !slices.Equal(g.events, w.events) {
		t.Fatalf("change logs differ:\n%v\n%v", g.events, w.events)
	}
}

// events returns the whole change log (the tests here keep all of it).
func events(t *testing.T, s *store.Store) []store.Event {
	t.Helper()
	var out []store.Event
	last := s.LastIndex()
	if last == 0 {
		return nil
	}
	stop := errors.New("stop")
	err := s.Watch(t.Context(), "", 0, false, func(e store.Event) error {
		out = append(out, e)
		if e.Index == last {
			return stop
		}
		return nil
	})
	if err != stop {
		t.Fatal(err)
	}
	return out
}

// Writes committed while flushes are held are only in the log; a crash
// copy taken then opens with all of them, like the original.
func TestWALReplay(t *testing.T) {
	t.Run("nosync", func(t *testing.T) { testWALReplay(t) })
	t.Run("durable", func(t *testing.T) { testWALReplay(t, durable) }) // direct writes where the file system has them
}

func testWALReplay(t *testing.T, opts ...func(*store.Options)) {
	s := openTest(t, opts...)
	mustSet(t, s, "flushed", "before")
	release := s.HoldFlushes()
	t.Cleanup(release)
	for i := range 50 {
		mustSet(t, s, fmt.Sprintf("k%d", i%20), fmt.Sprint(i))
	}
	mustDelete(t, s, "k3")
	if _, err := s.Apply(t.Context(), write("remote", "v", 9, 500, nil)); err != nil {
		t.Fatal(err)
	}
	if err := s.Reserve(t.Context(), 9000); err != nil {
		t.Fatal(err)
	}
	crashed := crashCopy(t, s)
	release()
	c := openAt(t, crashed, opts...)
	sameState(t, s, c)
	if c.Reserved() < 9000 || c.Lamport() < 9000 {
		t.Fatalf("reservation %d, lamport %d after replay", c.Reserved(), c.Lamport())
	}
	// The replayed file goes on: a new write follows the replayed ones.
	r := mustSet(t, c, "k1", "after")
	if r.Lamport <= 9000 || c.LastIndex() != s.LastIndex()+1 {
		t.Fatalf("write after replay: lamport %d, index %d", r.Lamport, c.LastIndex())
	}
}

// A batch torn by the crash (its block half written) is not replayed; the
// ones before it are.
func TestWALTornBatch(t *testing.T) {
	s := openTest(t)
	release := s.HoldFlushes()
	t.Cleanup(release)
	for i := range 10 {
		mustSet(t, s, fmt.Sprintf("k%d", i), "v")
	}
	before := crashCopy(t, s) // the state without the last write
	mustSet(t, s, "last", "lost")
	crashed := crashCopy(t, s)
	release()
	// Each write was a batch of one block, appended: the last block
	// written is the last batch (the ring is allocated beyond it). Damage
	// its middle.
	wal, data, last := crashedLog(t, crashed)
	data[last+100] ^= 0xff
	if err := os.WriteFile(wal, data, 0o600); err != nil {
		t.Fatal(err)
	}
	c := openAt(t, crashed)
	if _, found := mustGet(t, c, "last"); found {
		t.Fatal("the torn batch was replayed")
	}
	sameState(t, openAt(t, before), c)
}

// A log shorter than its last batch (the file was extended, the data not
// written) loses that batch only.
func TestWALShortFile(t *testing.T) {
	s := openTest(t)
	release := s.HoldFlushes()
	t.Cleanup(release)
	for i := range 5 {
		mustSet(t, s, fmt.Sprintf("k%d", i), "v")
	}
	crashed := crashCopy(t, s)
	release()
	wal, _, last := crashedLog(t, crashed)
	if err := os.Truncate(wal, int64(last)+50); err != nil {
		t.Fatal(err)
	}
	c := openAt(t, crashed)
	if _, found := mustGet(t, c, "k4"); found {
		t.Fatal("a cut batch was replayed")
	}
	if _, found := mustGet(t, c, "k3"); !found || c.LastIndex() != 4 {
		t.Fatalf("k3 found %v, last index %d: want the 4 whole batches", found, c.LastIndex())
	}
}

// A small ring wraps many times and fills up: writers wait for flushes,
// nothing is lost, and crash copies taken along the way replay.
func TestWALWrap(t *testing.T) {
	s := openTest(t, store.WALSize(16*4096))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				if _, err := s.Set(t.Context(), fmt.Sprintf("g%d/%d", g, i%30), bytes.Repeat([]byte{'x'}, i*7), nil); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if n := s.Stats().Flushes; n < 10 {
		t.Errorf("%d flushes for 1600 writes in a 16-block log", n)
	}
	for round := range 5 {
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
		release := s.HoldFlushes()
		for i := range 10 { // fits the ring
			mustSet(t, s, fmt.Sprintf("round%d/%d", round, i), "v")
		}
		crashed := crashCopy(t, s)
		release()
		sameState(t, s, openAt(t, crashed, store.WALSize(16*4096)))
	}
	want := snapshot(t, s)
	sameAs(t, want, reopen(t, s, store.WALSize(16*4096)))
}

// A batch larger than the log takes goes to the data file directly, after
// what is pending; the writes around it keep their order.
func TestWALLargeBatch(t *testing.T) {
	s := openTest(t, store.WALSize(16*4096)) // batches up to 16 KiB
	mustSet(t, s, "k", "small")
	big := bytes.Repeat([]byte("big"), 10000)
	if _, err := s.Set(t.Context(), "k", big, nil); err != nil {
		t.Fatal(err)
	}
	last := mustSet(t, s, "k", "small again")
	if got, _ := mustGet(t, s, "k"); got.Hash() != last.Hash() {
		t.Fatalf("k = %q", got.Value)
	}
	release := s.HoldFlushes()
	mustSet(t, s, "after", "v")
	crashed := crashCopy(t, s)
	release()
	sameState(t, s, openAt(t, crashed, store.WALSize(16*4096)))
}

// A closed store is its data file alone: the data file moved away opens
// with everything. Its log stays, marked closed, and a store opened beside
// a closed log — its own, another store's, or its own of a later state
// than an older copy of the data file — replays none of it, neither then
// nor after a crash later: its batches never pass for the ones to come.
func TestWALKeptOnClose(t *testing.T) {
	t.Run("nosync", func(t *testing.T) { testWALKeptOnClose(t, store.WALSize(64*4096)) })
	t.Run("durable", func(t *testing.T) { testWALKeptOnClose(t, store.WALSize(64*4096), durable) })
}

func testWALKeptOnClose(t *testing.T, opts ...func(*store.Options)) {
	// closed writes n keys prefix0.. in as many batches to a new store,
	// closes it and returns its path and records.
	closed := func(t *testing.T, prefix string, n int) (string, map[string]store.Record) {
		s := openTest(t, opts...)
		release := s.HoldFlushes()
		want := map[string]store.Record{}
		for i := range n {
			r := mustSet(t, s, fmt.Sprintf("%s%d", prefix, i), "v")
			want[r.Key] = r
		}
		release()
		checkClose(t, s)
		if _, err := os.Stat(store.WALPath(s.Path())); err != nil {
			t.Fatalf("log after Close: %v", err)
		}
		return s.Path(), want
	}
	// check opens path and finds want and nothing else, then writes some
	// more and finds the same in a crash copy.
	check := func(t *testing.T, path string, want map[string]store.Record) {
		t.Helper()
		c := openAt(t, path, opts...)
		release := c.HoldFlushes()
		t.Cleanup(release)
		for i := range 5 {
			r := mustSet(t, c, fmt.Sprintf("after%d", i), "v")
			want[r.Key] = r
		}
		for _, s := range []*store.Store{c, openAt(t, crashCopy(t, c), opts...)} {
			if got := s.Keys(); got != uint64(len(want)) {
				t.Fatalf("%s: %d keys, want %d", s.Path(), got, len(want))
			}
			for k, w := range want {
				if r, _ := mustGet(t, s, k); r.Hash() != w.Hash() {
					t.Fatalf("%s: %s: %+v, want %+v", s.Path(), k, r, w)
				}
			}
		}
	}
	t.Run("reopened with its log", func(t *testing.T) {
		path, want := closed(t, "k", 20)
		check(t, path, want)
	})
	t.Run("data file alone", func(t *testing.T) {
		path, want := closed(t, "k", 20)
		moved := filepath.Join(t.TempDir(), "moved.db")
		if err := os.Rename(path, moved); err != nil {
			t.Fatal(err)
		}
		check(t, moved, want)
	})
	t.Run("another store's log", func(t *testing.T) {
		path, want := closed(t, "k", 20)
		other, _ := closed(t, "other", 30)
		copyFile(t, store.WALPath(other), store.WALPath(path))
		check(t, path, want)
	})
	t.Run("an older data file", func(t *testing.T) {
		path, want := closed(t, "k", 5)
		old := filepath.Join(t.TempDir(), "old.db")
		copyFile(t, path, old)
		s := openAt(t, path, opts...)
		release := s.HoldFlushes()
		for i := range 30 {
			mustSet(t, s, fmt.Sprintf("later%d", i), "v")
		}
		release()
		checkClose(t, s)
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		copyFile(t, old, path) // restored beside the log of a later state
		check(t, path, want)
	})
}

// Another store's log next to a data file is not replayed into it.
func TestWALOtherStore(t *testing.T) {
	a, b := openTest(t), openTest(t)
	mustSet(t, a, "k", "a")
	if err := a.Check(); err != nil { // flushes: a's data file holds k
		t.Fatal(err)
	}
	release := b.HoldFlushes()
	mustSet(t, b, "k", "b")
	mustSet(t, b, "only-b", "b")
	crashed := crashCopy(t, b)
	release()
	copyFile(t, a.Path(), crashed) // a's data file, b's log
	c := openAt(t, crashed)
	if r, _ := mustGet(t, c, "k"); string(r.Value) != "a" {
		t.Fatalf("k = %q", r.Value)
	}
	if _, found := mustGet(t, c, "only-b"); found {
		t.Fatal("another store's log was replayed")
	}
}

// Reads, listings, leaf entries and watches see pending writes and file
// contents as one: every kind of read agrees while flushes are held and
// after they ran.
func TestPendingReads(t *testing.T) {
	s := openTest(t)
	for i := range 30 {
		mustSet(t, s, fmt.Sprintf("p/%02d", i), "file")
	}
	check := func(t *testing.T) {
		recs, _, err := s.List("p/", "", 0, true)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) != 28 { // 30, 5 deleted, 3 new
			t.Fatalf("List: %d records", len(recs))
		}
		for _, r := range recs {
			if g, _ := mustGet(t, s, r.Key); g.Hash() != r.Hash() {
				t.Fatalf("List and Get disagree on %s", r.Key)
			}
			entries, err := s.LeafEntries(store.KeyHash(r.Key).Leaf())
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(entries, func(e store.LeafEntry) bool { return e.Key == r.Key })
			if i < 0 || entries[i].Hash != r.Hash() {
				t.Fatalf("leaf entries of %s: %+v", r.Key, entries)
			}
		}
		page, next, err := s.List("p/", "p/10", 5, false)
		if err != nil || len(page) != 5 || page[0].Key <= "p/10" || next != page[4].Key {
			t.Fatalf("List after p/10: %d records, next %q, %v", len(page), next, err)
		}
		sameLog := events(t, s)
		if uint64(len(sameLog)) != s.LastIndex() {
			t.Fatalf("%d events, last index %d", len(sameLog), s.LastIndex())
		}
	}
	release := s.HoldFlushes()
	for i := range 5 {
		mustDelete(t, s, fmt.Sprintf("p/%02d", i*2))
	}
	for i := range 3 {
		mustSet(t, s, fmt.Sprintf("p/%02d", 40+i), "pending")
		mustSet(t, s, fmt.Sprintf("p/%02d", 11+i), "pending")
	}
	t.Run("pending", check)
	release()
	if err := s.Check(); err != nil { // flushes
		t.Fatal(err)
	}
	t.Run("flushed", check)
}

// Writers, readers of every kind and flushes at once, on a small log:
// every read sees at least what its writer had acknowledged, and the
// change log stays consecutive throughout.
func TestPendingConcurrent(t *testing.T) {
	s := openTest(t, store.WALSize(32*4096))
	ctx := t.Context()
	w := startWatch(t, s, "", 0, false)
	var wg sync.WaitGroup
	const writers, writes = 6, 150
	for g := range writers {
		wg.Go(func() {
			for i := range writes {
				key := fmt.Sprintf("w%d/%d", g, i%7)
				rec, err := s.Set(ctx, key, []byte(fmt.Sprint(i)), nil)
				if err != nil {
					t.Error(err)
					return
				}
				got, found, err := s.Get(key)
				if err != nil || !found || got.Lamport < rec.Lamport {
					t.Errorf("read %s after writing version %d: %+v %v %v", key, rec.Lamport, got, found, err)
					return
				}
				recs, _, err := s.List(fmt.Sprintf("w%d/", g), "", 0, false)
				if err != nil || len(recs) == 0 {
					t.Errorf("list: %d, %v", len(recs), err)
					return
				}
				entries, err := s.LeafEntries(store.KeyHash(key).Leaf())
				if err != nil || !slices.ContainsFunc(entries, func(e store.LeafEntry) bool { return e.Key == key }) {
					t.Errorf("leaf entries of %s: %v", key, err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if err := s.Flush(); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	for i := uint64(1); i <= s.LastIndex(); i++ {
		if ev := w.next(t); ev.Index != i {
			t.Fatalf("event %d where %d was expected", ev.Index, i)
		}
	}
}
