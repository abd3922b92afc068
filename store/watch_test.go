package store_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/store"
)

// watcher runs Watch in the background and hands its events to a channel.
type watcher struct {
	events chan store.Event
	done   chan error
	cancel context.CancelFunc
}

func startWatch(t *testing.T, s *store.Store, prefix string, since uint64, fromNow bool) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	w := &watcher{events: make(chan store.Event, 1000), done: make(chan error, 1), cancel: cancel}
	go func() {
		w.done <- s.Watch(ctx, prefix, since, fromNow, func(ev store.Event) error {
			w.events <- ev
			return nil
		})
	}()
	t.Cleanup(cancel)
	return w
}

// next returns the next event, failing the test after a few seconds.
func (w *watcher) next(t *testing.T) store.Event {
	t.Helper()
	select {
	case ev := <-w.events:
		return ev
	case err := <-w.done:
		t.Fatalf("watch ended: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return store.Event{}
}

// stop cancels the watch and returns its error.
func (w *watcher) stop(t *testing.T) error {
	t.Helper()
	w.cancel()
	return ended(t, w.done, "after its context ended")
}

// ended returns what a Watch sent to done, failing the test (saying when
// it should have ended) if that takes more than a few seconds.
func ended(t *testing.T, done <-chan error, when string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatalf("watch did not return %s", when)
	}
	return nil
}

// History, then live events from concurrent writers: every index once, in order.
func TestWatchHistoryThenLive(t *testing.T) {
	s := openTest(t)
	for i := range 5 {
		mustSet(t, s, fmt.Sprintf("h/%d", i), "v")
	}
	w := startWatch(t, s, "", 2, false)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 25 {
				if _, err := s.Set(t.Context(), fmt.Sprintf("live/%d/%d", g, i), []byte("v"), nil); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for want := uint64(3); want <= 105; want++ {
		ev := w.next(t)
		if ev.Index != want {
			t.Fatalf("event index %d, want %d", ev.Index, want)
		}
		if ev.Op != store.OpSet || ev.Version == 0 || ev.Origin != s.NodeID() {
			t.Fatalf("event %+v", ev)
		}
	}
	wg.Wait()
	if err := w.stop(t); !errors.Is(err, context.Canceled) {
		t.Fatalf("Watch returned %v, want context.Canceled", err)
	}
	if len(w.events) != 0 {
		t.Fatalf("extra events: %+v", <-w.events)
	}
}

func TestWatchPrefixAndOps(t *testing.T) {
	s := openTest(t)
	mustSet(t, s, "a/1", "v")
	w := startWatch(t, s, "a/", 0, false)
	mustSet(t, s, "b/1", "v")
	d := mustDelete(t, s, "a/1")
	mustSet(t, s, "ab", "v")
	r := mustSet(t, s, "a/2", "v")
	want := []store.Event{
		{Index: 1, Op: store.OpSet, Key: "a/1", Version: 1, Origin: s.NodeID()},
		{Index: 3, Op: store.OpDel, Key: "a/1", Version: d.Lamport, Origin: s.NodeID()},
		{Index: 5, Op: store.OpSet, Key: "a/2", Version: r.Lamport, Origin: s.NodeID()},
	}
	for _, wev := range want {
		if ev := w.next(t); ev != wev {
			t.Fatalf("event %+v, want %+v", ev, wev)
		}
	}
}

func TestWatchFromNow(t *testing.T) {
	s := openTest(t)
	mustSet(t, s, "old", "v")
	w := startWatch(t, s, "", 0, true)
	// The watch may start before or after this write; either way it must
	// not see "old". Write until it sees a new one.
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		mustSet(t, s, "new", "v")
		select {
		case ev := <-w.events:
			if ev.Key != "new" || ev.Index < 2 {
				t.Fatalf("event %+v", ev)
			}
			return
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatal("no event")
}

func TestWatchCompacted(t *testing.T) {
	s := openTest(t, func(o *store.Options) { o.WatchHistory = 10 })
	for i := range 30 {
		mustSet(t, s, fmt.Sprintf("k%d", i), "v")
	}
	tests := []struct {
		since uint64
		ok    bool
	}{{0, false}, {5, false}, {19, false}, {20, true}, {29, true}, {30, true}}
	for _, tt := range tests {
		called := false
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
		err := s.Watch(ctx, "", tt.since, false, func(store.Event) error { called = true; return nil })
		cancel()
		if tt.ok != errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("since %d: %v", tt.since, err)
		}
		if !tt.ok && (!errors.Is(err, store.ErrCompacted) || called) {
			t.Errorf("since %d: %v, fn called %v; want ErrCompacted before fn", tt.since, err, called)
		}
	}
	// The log is trimmed in the commit, and the trim survives a reopen.
	s = reopen(t, s, func(o *store.Options) { o.WatchHistory = 10 })
	if err := s.Watch(t.Context(), "", 19, false, nil); !errors.Is(err, store.ErrCompacted) {
		t.Errorf("after reopen: %v", err)
	}
}

// A watcher whose fn is too slow falls behind the trimming: ErrCompacted.
func TestWatchSlowWatcherCompacted(t *testing.T) {
	s := openTest(t, func(o *store.Options) { o.WatchHistory = 10 })
	for i := range 10 {
		mustSet(t, s, fmt.Sprintf("k%d", i), "v")
	}
	release := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Watch(t.Context(), "", 0, false, func(store.Event) error {
			<-release
			return nil
		})
	}()
	for i := range 50 {
		mustSet(t, s, fmt.Sprintf("more%d", i), "v")
	}
	close(release)
	if err := ended(t, done, "once released"); !errors.Is(err, store.ErrCompacted) {
		t.Fatalf("Watch = %v, want ErrCompacted", err)
	}
}

func TestWatchEnds(t *testing.T) {
	s := openTest(t)
	mustSet(t, s, "k", "v")
	boom := errors.New("boom")
	if err := s.Watch(t.Context(), "", 0, false, func(store.Event) error { return boom }); err != boom {
		t.Errorf("fn error: Watch = %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Watch(ctx, "", 0, false, func(store.Event) error { return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled ctx: Watch = %v", err)
	}
	w := startWatch(t, s, "", 0, false)
	w.next(t)
	checkClose(t, s)
	if err := ended(t, w.done, "at Close"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("after Close: Watch = %v, want ErrClosed", err)
	}
}

// Indexes are per node and persisted: they continue after a reopen.
func TestWatchIndexPersisted(t *testing.T) {
	s := openTest(t)
	mustSet(t, s, "a", "v")
	mustSet(t, s, "b", "v")
	s = reopen(t, s)
	mustSet(t, s, "c", "v")
	w := startWatch(t, s, "", 0, false)
	for i, key := range []string{"a", "b", "c"} {
		if ev := w.next(t); ev.Index != uint64(i+1) || ev.Key != key {
			t.Fatalf("event %+v, want index %d key %s", ev, i+1, key)
		}
	}
}
