package daemon

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live, floor uint64
		want        int
	}{
		{live: 3 * mib, floor: 32 * mib, want: 1066},      // goal 3 + 32 MiB
		{live: 32 * mib, floor: 32 * mib, want: 100},      // the default from the floor up
		{live: 100 * mib, floor: 32 * mib, want: 100},     // goal twice the live heap
		{live: 0, floor: 32 * mib, want: maxGCPercent},    // nothing live: bounded
		{live: 1024, floor: 32 * mib, want: maxGCPercent}, // nearly nothing
		{live: 16 * mib, floor: 32 * mib, want: 200},      // goal 16 + 32 MiB
		{live: 4 * mib, floor: 0, want: 100},              // no floor: the runtime's default
	} {
		if got := gcPercentFor(c.live, c.floor); got != c.want {
			t.Errorf("gcPercentFor(%d, %d) = %d, want %d", c.live, c.floor, got, c.want)
		}
	}
}

// TestGCTunerFollowsCollections runs real collections: after each, the
// tuner sets GOGC for the live heap it reads then; stop restores the GOGC
// it found and ends the cycles. (The live heap and the setter are the
// test's, so that the process's own GOGC is left alone.)
func TestGCTunerFollowsCollections(t *testing.T) {
	const floor = 32 << 20
	var (
		mu  sync.Mutex
		set []int
	)
	record := func(p int) int {
		mu.Lock()
		defer mu.Unlock()
		set = append(set, p)
		return 77 // "the GOGC before"
	}
	last := func() (int, int) {
		mu.Lock()
		defer mu.Unlock()
		return set[len(set)-1], len(set)
	}
	var live atomic.Uint64
	live.Store(0) // before any collection: the tuner assumes firstLive
	tu := newGCTuner(floor, record, live.Load)
	if p, _ := last(); p != gcPercentFor(firstLive, floor) {
		t.Fatalf("GOGC at start %d, want %d", p, gcPercentFor(firstLive, floor))
	}
	for _, l := range []uint64{2 << 20, 64 << 20, 8 << 20} {
		live.Store(l)
		want := gcPercentFor(l, floor)
		deadline := time.Now().Add(10 * time.Second)
		for {
			runtime.GC() // the cleanup runs after the collection, on its own goroutine
			if p, _ := last(); p == want {
				break
			}
			if time.Now().After(deadline) {
				p, _ := last()
				t.Fatalf("live heap %d: GOGC %d, want %d", l, p, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	tu.stop()
	p, n := last()
	if p != 77 {
		t.Fatalf("after stop GOGC %d, want the 77 it found", p)
	}
	live.Store(1 << 20)
	for range 3 {
		runtime.GC()
	}
	time.Sleep(50 * time.Millisecond)
	if _, m := last(); m != n {
		t.Fatalf("the tuner set GOGC %d times after stop", m-n)
	}
}
