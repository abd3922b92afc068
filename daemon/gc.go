package daemon

import (
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync"
)

// HeapFloor is the garbage ckd lets the heap gather at least between two
// collections (docs/ARCHITECTURE.md, "Garbage collection"). ckd's live
// heap is small — a few MiB beside the store's unflushed records — and at
// the runtime's default (GOGC=100: collect once the heap is twice the live
// one) a node replicating 10,000 writes a second collected 20 times a
// second, each cycle waking a worker thread per P and turning the write
// barrier on: 10–15 % of its CPU. The memory limit (Config.MemoryLimit)
// still bounds the heap whatever the floor.
const HeapFloor = 32 << 20

// maxGCPercent bounds the GOGC the floor sets, for a nearly empty heap.
const maxGCPercent = 10_000

// gcPercentFor returns the GOGC that makes the heap goal live + floor when
// the live heap is below floor, and the default 100 (a goal of twice the
// live heap) otherwise.
func gcPercentFor(live, floor uint64) int {
	if live >= floor {
		return 100
	}
	return int(min(floor*100/max(live, 1), maxGCPercent))
}

// firstLive stands for the live heap before the first collection has
// measured it: the runtime's own starting goal (4 MiB at GOGC=100).
const firstLive = 4 << 20

// gcTuner sets GOGC after every collection from the live heap it found.
type gcTuner struct {
	floor uint64
	set   func(int) int // debug.SetGCPercent
	live  func() uint64 // liveHeap

	mu      sync.Mutex
	percent int  // the GOGC in force
	stopped bool // stop was called: no more cycles, percent restored
	before  int  // the GOGC before the tuner
}

// TuneGC keeps the heap goal at least floor above the live heap, by
// setting GOGC after each collection, until stop is called (which
// restores the GOGC it found). ckd calls it unless GOGC is set in its
// environment.
func TuneGC(floor uint64) (stop func()) {
	sample := []rtmetrics.Sample{{Name: "/gc/heap/live:bytes"}}
	live := func() uint64 { // called under the tuner's lock
		rtmetrics.Read(sample)
		if sample[0].Value.Kind() != rtmetrics.KindUint64 {
			return 0
		}
		return sample[0].Value.Uint64()
	}
	return newGCTuner(floor, debug.SetGCPercent, live).stop
}

func newGCTuner(floor uint64, set func(int) int, live func() uint64) *gcTuner {
	t := &gcTuner{floor: floor, set: set, live: live}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.percent = gcPercentFor(max(t.live(), firstLive), floor)
	t.before = set(t.percent)
	t.arm()
	return t
}

// sentinel is what the tuner's cleanup hangs on: unreachable once made, so
// each collection runs the cleanup. It holds a pointer and 16 bytes so
// that it is not a tiny allocation, whose cleanup could wait for its
// neighbours.
type sentinel struct {
	_ *byte
	_ [16]byte
}

// arm makes the next collection call cycle.
func (t *gcTuner) arm() {
	runtime.AddCleanup(new(sentinel), (*gcTuner).cycle, t)
}

// cycle runs on the runtime's cleanup goroutine after a collection: it sets
// GOGC for the live heap that collection found, and arms the next.
func (t *gcTuner) cycle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	if p := gcPercentFor(t.live(), t.floor); p != t.percent {
		t.percent = p
		t.set(p)
	}
	t.arm()
}

func (t *gcTuner) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.stopped {
		t.stopped = true
		t.set(t.before)
	}
}
