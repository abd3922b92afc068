package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/testseed"
	"github.com/cloudknowledge/ck/store"
)

// doneLog collects an Applier's outcomes by tag (an int: the record's
// index) and tells when all are in.
type doneLog struct {
	mu    sync.Mutex
	got   map[int]store.ApplyDone
	calls int
	all   chan struct{}
	want  int
}

func newDoneLog(want int) *doneLog {
	return &doneLog{got: map[int]store.ApplyDone{}, all: make(chan struct{}), want: want}
}

func (d *doneLog) fn(t *testing.T) func([]store.ApplyDone) {
	return func(ds []store.ApplyDone) {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.calls++
		for _, x := range ds {
			i := x.Tag.(int)
			if _, dup := d.got[i]; dup {
				t.Errorf("record %d reported twice", i)
			}
			d.got[i] = x
		}
		if len(d.got) == d.want {
			close(d.all)
		}
	}
}

func (d *doneLog) wait(t *testing.T) {
	t.Helper()
	select {
	case <-d.all:
	case <-time.After(time.Minute):
		d.mu.Lock()
		defer d.mu.Unlock()
		t.Fatalf("%d of %d outcomes after a minute", len(d.got), d.want)
	}
}

func (d *doneLog) get(i int) store.ApplyDone {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.got[i]
}

func tagsOf(from, n int) []any {
	tags := make([]any, n)
	for i := range tags {
		tags[i] = from + i
	}
	return tags
}

// An Applier gives each record the outcome Apply would give it applied in
// the same order, leaves the same store, reports a refused record before
// Apply returns, and reports a record only once it is durable: a crash
// copy taken when the last outcome arrived holds every record reported
// as stored.
func TestApplier(t *testing.T) {
	rng := testseed.Rand(t)
	recs := receivedRecords(rng, 1500, 300)
	one := openTest(t, func(o *store.Options) { o.Resolver = union })
	queued := openTest(t, durable, func(o *store.Options) { o.Resolver = union })
	var want []store.ApplyResult
	var wantErr []error
	for _, r := range recs {
		res, err := one.Apply(t.Context(), r)
		want, wantErr = append(want, res), append(wantErr, err)
	}
	log := newDoneLog(len(recs))
	a := queued.NewApplier(log.fn(t))
	for from := 0; from < len(recs); { // datagrams' worth, one call each
		n := min(len(recs)-from, 1+rng.IntN(8))
		a.Apply(t.Context(), recs[from:from+n], tagsOf(from, n))
		for i := from; i < from+n; i++ {
			if wantErr[i] != nil && log.get(i).Err == nil {
				t.Fatalf("record %d, refused by Apply (%v), not reported when Apply returned", i, wantErr[i])
			}
		}
		from += n
	}
	log.wait(t)
	crashed := crashCopy(t, queued)
	for i := range want {
		got := log.get(i)
		if !errors.Is(got.Err, store.ErrBadRecord) && got.Err != nil || (wantErr[i] == nil) != (got.Err == nil) {
			t.Fatalf("record %d: error %v, Apply's %v", i, got.Err, wantErr[i])
		}
		if got.Result.Outcome != want[i].Outcome || got.Result.Record.Hash() != want[i].Record.Hash() {
			t.Fatalf("record %d: %v %+v, Apply gave %v %+v", i, got.Result.Outcome, got.Result.Record, want[i].Outcome, want[i].Record)
		}
	}
	if one.Root() != queued.Root() || one.LastIndex() != queued.LastIndex() || one.Keys() != queued.Keys() || one.Lamport() != queued.Lamport() {
		t.Errorf("stores differ: root %x/%x, last index %d/%d, keys %d/%d, lamport %d/%d", one.Root(), queued.Root(),
			one.LastIndex(), queued.LastIndex(), one.Keys(), queued.Keys(), one.Lamport(), queued.Lamport())
	}
	after := openAt(t, crashed, func(o *store.Options) { o.Resolver = union })
	if after.Root() != one.Root() {
		t.Error("the crash copy taken after the last outcome lacks records reported stored")
	}
}

// With nothing committing or queued and recent batches lone (here: none
// yet), Apply commits the records itself, as a lone local writer does
// (submit): their outcomes are in, durable, when it returns, in one
// commit and one call.
func TestApplierCommitsHere(t *testing.T) {
	for _, n := range []int{1, 2, 7} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			s := openTest(t)
			before := s.Stats()
			log := newDoneLog(n)
			a := s.NewApplier(log.fn(t))
			var recs []store.Record
			for i := range n {
				recs = append(recs, write(fmt.Sprint("here/", i), "v", 2, uint64(1+i), nil))
			}
			a.Apply(t.Context(), recs, tagsOf(0, n))
			log.mu.Lock()
			got, calls := len(log.got), log.calls
			log.mu.Unlock()
			if got != n || calls != 1 {
				t.Fatalf("%d outcomes in %d calls when Apply returned, want %d in 1", got, calls, n)
			}
			for i := range n {
				if d := log.get(i); d.Err != nil || d.Result.Outcome != store.Applied {
					t.Errorf("record %d: %v, %v", i, d.Result.Outcome, d.Err)
				}
			}
			if c := s.Stats().Commits - before.Commits; c != 1 {
				t.Errorf("%d commits, want 1", c)
			}
		})
	}
}

// A receive loop commits only when that cannot wait for a flush: with the
// unflushed log at the size that starts one (and the flush held), Apply
// queues for the committer and returns before the outcome, as before.
func TestApplierLeavesFlushWaitToCommitter(t *testing.T) {
	const ring = 1 << 20
	s := openTest(t, store.WALSize(ring))
	release := s.HoldFlushes()
	t.Cleanup(release)
	value := strings.Repeat("v", 4096)
	for i := 0; s.LogRoom(); i++ { // lone writes, until a flush is due
		if i == ring/4096 {
			t.Fatalf("%d writes of 4 KiB into a log of %d bytes, and no flush due", i, ring)
		}
		mustSet(t, s, fmt.Sprint("fill/", i), value)
	}
	gate := make(chan struct{})
	a := s.NewApplier(func([]store.ApplyDone) { <-gate })
	returned := make(chan struct{})
	go func() {
		a.Apply(t.Context(), []store.Record{write("held", "v", 2, 1, nil)}, []any{0})
		close(returned)
	}()
	select {
	case <-returned:
	case <-time.After(10 * time.Second):
		t.Error("Apply committed on its caller's goroutine with a flush due: it did not return while the outcome was held")
	}
	close(gate)
	<-returned
}

// Records queued by separate Apply calls while a commit runs are committed
// together by the next one: what the receive loop's datagrams rely on.
func TestApplierGathers(t *testing.T) {
	s := openTest(t)
	mustSet(t, s, "first", "v") // moves the reservation: the next local write goes to the early hook
	hold, held := make(chan struct{}), make(chan struct{})
	var once sync.Once
	s.SetEarly(func([]store.Early) {
		once.Do(func() { close(held); <-hold }) // the committer stops here, before its log write
	})
	setDone := make(chan error, 1)
	go func() {
		_, err := s.Set(t.Context(), "blocker", []byte("v"), nil)
		setDone <- err
	}()
	<-held
	before := s.Stats()
	const calls = 50
	log := newDoneLog(calls)
	a := s.NewApplier(log.fn(t))
	for i := range calls {
		a.Apply(t.Context(), []store.Record{write(fmt.Sprint("k/", i), "v", 2, uint64(1+i), nil)}, []any{i})
	}
	close(hold)
	if err := <-setDone; err != nil {
		t.Fatal(err)
	}
	log.wait(t)
	st := s.Stats()
	// The held commit is counted once it returns: it and one more.
	if c := st.Commits - before.Commits; c != 2 {
		t.Errorf("%d records queued by %d calls during a commit took %d commits, want 1 after it", calls, calls, c-1)
	}
	log.mu.Lock()
	if log.calls != 1 {
		t.Errorf("the outcomes of one commit came in %d calls, want 1", log.calls)
	}
	log.mu.Unlock()
	for i := range calls {
		if d := log.get(i); d.Err != nil || d.Result.Outcome != store.Applied {
			t.Errorf("record %d: %v, %v", i, d.Result.Outcome, d.Err)
		}
	}
}

// A closed store and an ended context refuse queued records, reported
// before Apply returns; Close waits for queued records' commits.
func TestApplierRefuses(t *testing.T) {
	recs := []store.Record{write("a", "v", 2, 1, nil), write("b", "v", 2, 2, nil)}
	t.Run("closed", func(t *testing.T) {
		s := openTest(t)
		checkClose(t, s)
		log := newDoneLog(len(recs))
		s.NewApplier(log.fn(t)).Apply(t.Context(), recs, tagsOf(0, 2))
		for i := range recs {
			if err := log.get(i).Err; !errors.Is(err, store.ErrClosed) {
				t.Errorf("record %d on a closed store: %v", i, err)
			}
		}
	})
	t.Run("context ended", func(t *testing.T) {
		s := openTest(t)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		log := newDoneLog(len(recs))
		s.NewApplier(log.fn(t)).Apply(ctx, recs, tagsOf(0, 2))
		for i := range recs {
			if err := log.get(i).Err; !errors.Is(err, context.Canceled) {
				t.Errorf("record %d with an ended context: %v", i, err)
			}
		}
		if _, found := mustGet(t, s, "a"); found {
			t.Error("a record refused for its context was stored")
		}
	})
	t.Run("close waits", func(t *testing.T) {
		s := openTest(t, durable)
		log := newDoneLog(len(recs))
		s.NewApplier(log.fn(t)).Apply(t.Context(), recs, tagsOf(0, 2))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		for i := range recs {
			if d := log.get(i); d.Err != nil || d.Result.Outcome != store.Applied {
				t.Errorf("record %d queued before Close: %v, %v", i, d.Result.Outcome, d.Err)
			}
		}
	})
}

// ApplyHashed stores a record whose hash matches as Apply does, and
// refuses one whose hash does not (before it returns, before any other
// check, unstored), whatever else is wrong with it.
func TestApplierHashed(t *testing.T) {
	good := write("a", "x", 1, 5, nil)
	bad := write("b", "y", 1, 6, nil)
	badAndInvalid := write("c", "z", 1, 7, nil)
	badAndInvalid.Lamport = 0 // ErrBadRecord, were the hash checked second
	ttl := write("d", "w", 1, 8, nil)
	ttl.TTL, ttl.Left = 60_000, 500_000 // Left is no part of the hash: clamped, not refused
	recs := []store.Record{good, bad, badAndInvalid, ttl}
	hashes := []store.Hash{good.Hash(), store.KeyHash("not b"), store.KeyHash("not c"), ttl.Hash()}
	s := openTest(t)
	log := newDoneLog(len(recs))
	s.NewApplier(log.fn(t)).ApplyHashed(t.Context(), recs, nil, hashes, tagsOf(0, len(recs)))
	for _, i := range []int{1, 2} {
		if err := log.get(i).Err; !errors.Is(err, store.ErrHashMismatch) {
			t.Errorf("record %d with a wrong hash: %v when ApplyHashed returned, want ErrHashMismatch", i, err)
		}
	}
	log.wait(t)
	for _, i := range []int{0, 3} {
		if d := log.get(i); d.Err != nil || d.Result.Outcome != store.Applied || d.Result.Record.Hash() != hashes[i] {
			t.Errorf("record %d with its hash: %v %v", i, d.Result.Outcome, d.Err)
		}
	}
	for _, key := range []string{"b", "c"} {
		if _, found := mustGet(t, s, key); found {
			t.Errorf("%q, refused for its hash, was stored", key)
		}
	}
	if got, _ := mustGet(t, s, "d"); got.Left > ttl.TTL {
		t.Errorf("left %d ms, above the record's TTL %d", got.Left, ttl.TTL)
	}
}

// ApplyHashed takes a record's encoding and hash as given when it is
// handed them — what is stored, and what a read and the digests see, are
// those bytes — and checks a record given without one against its hash.
func TestApplierEncoded(t *testing.T) {
	given := write("a", "x", 1, 5, nil)
	raw, h := given.Encoded()
	unchecked := write("b", "y", 1, 6, nil)
	recs := []store.Record{given, unchecked}
	s := openTest(t)
	log := newDoneLog(len(recs))
	s.NewApplier(log.fn(t)).ApplyHashed(t.Context(), recs, [][]byte{raw, nil}, []store.Hash{h, store.KeyHash("not b")}, tagsOf(0, 2))
	if err := log.get(1).Err; !errors.Is(err, store.ErrHashMismatch) {
		t.Errorf("a record without its encoding and with a wrong hash: %v, want ErrHashMismatch", err)
	}
	log.wait(t)
	if d := log.get(0); d.Err != nil || d.Result.Outcome != store.Applied || d.Result.Record.Hash() != h {
		t.Errorf("the record with its encoding: %v %v", d.Result.Outcome, d.Err)
	}
	if got, found := mustGet(t, s, "a"); !found || got.Hash() != h || string(got.Value) != "x" {
		t.Errorf("stored %+v (found %v), want the record given", got, found)
	}
}

// A conflict hook that takes its time does not hold up Apply's caller (a
// receive loop): Apply returns while the resolver runs, and batches given
// meanwhile reach the committer after the one being resolved, in order;
// whether the stored record it conflicts with is in the pending sets or
// the file (read there through a cursor, not the pending sets).
func TestApplierSlowResolver(t *testing.T) {
	for _, inFile := range []bool{false, true} {
		t.Run(map[bool]string{false: "pending", true: "file"}[inFile], func(t *testing.T) {
			testApplierSlowResolver(t, inFile)
		})
	}
}

func testApplierSlowResolver(t *testing.T, inFile bool) {
	release, entered := make(chan struct{}), make(chan struct{}, 1)
	slow := resolverFunc(func(_ string, w, l *store.Record) ([]byte, bool, error) {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		return append(append([]byte{}, w.Value...), l.Value...), false, nil
	})
	withSlow := func(o *store.Options) { o.Resolver = slow }
	s := openTest(t, withSlow)
	if _, err := s.Apply(t.Context(), write("k", "a", 1, 5, nil)); err != nil {
		t.Fatal(err)
	}
	if inFile {
		s = reopen(t, s, withSlow) // closing flushes "a" into the file
	}
	log := newDoneLog(3)
	a := s.NewApplier(log.fn(t))
	returned := make(chan struct{})
	go func() {
		a.Apply(t.Context(), []store.Record{write("k", "b", 2, 6, nil)}, []any{0}) // concurrent with "a": resolved
		a.Apply(t.Context(), []store.Record{write("k", "c", 3, 9, store.VV{id(1): 5, id(2): 6})}, []any{1})
		a.Apply(t.Context(), []store.Record{write("other", "x", 2, 7, nil)}, []any{2})
		close(returned)
	}()
	<-entered
	select {
	case <-returned:
	case <-time.After(time.Minute):
		t.Fatal("Apply waited for the conflict hook")
	}
	if _, found, _ := s.Get("other"); found {
		t.Error("a batch given after the one being resolved was committed before it")
	}
	close(release)
	log.wait(t)
	for i := range 3 {
		if d := log.get(i); d.Err != nil {
			t.Errorf("record %d: %v", i, d.Err)
		}
	}
	// "c" descends from "a" and "b": it replaces their merge.
	got, _, _ := s.Get("k")
	if d := log.get(0); d.Result.Outcome != store.Resolved || string(d.Result.Record.Value) != "ba" && string(d.Result.Record.Value) != "ab" {
		t.Errorf("the concurrent write: %v %q, want resolved", d.Result.Outcome, d.Result.Record.Value)
	}
	if d := log.get(1); d.Result.Outcome != store.Applied || string(got.Value) != "c" {
		t.Errorf("the descendant: %v, k = %q; want applied, c", d.Result.Outcome, got.Value)
	}
	if _, found, _ := s.Get("other"); !found {
		t.Error("the last batch was not stored")
	}
}

// A batch of received records commits without waiting for company; a
// local write's batch smaller than the recent ones waits (docs/
// ARCHITECTURE.md, "Waiting for company"). Fails with the received rule
// removed from commitQueued.
func TestReceivedBatchesDoNotWait(t *testing.T) {
	s := openTest(t)
	done := make(chan []store.ApplyDone, 1)
	a := s.NewApplier(func(d []store.ApplyDone) { done <- d })
	apply := func(key string, lamport uint64) {
		t.Helper()
		a.Apply(t.Context(), []store.Record{write(key, "v", 2, lamport, nil)}, []any{0})
		if d := <-done; len(d) != 1 || d[0].Err != nil {
			t.Fatalf("apply %s: %+v", key, d)
		}
	}
	mustSet(t, s, "warm", "v") // the clock's reservation made before counting
	apply("warm/received", 1)

	s.SetCompany(8, time.Millisecond)
	before := s.CompanyWaits()
	apply("received", 2)
	if w := s.CompanyWaits() - before; w != 0 {
		t.Fatalf("a batch of one received record waited for company (%d waits)", w)
	}
	s.SetCompany(8, time.Millisecond)
	before = s.CompanyWaits()
	mustSet(t, s, "local", "v")
	if w := s.CompanyWaits() - before; w != 1 {
		t.Fatalf("a lone local write after batches of 8: %d waits for company, want 1", w)
	}
}
