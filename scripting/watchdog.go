package scripting

import (
	"context"
	"runtime"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
)

// The heap watchdog. Lua's `..` is one VM instruction that no built-in
// wrapper can cap, and a loop of them (`x = x .. x`) doubles memory per
// step; the hook's timeout stops the loop only between instructions. So
// while any hook runs, a goroutine samples the Go heap every
// watchdogPeriod through runtime/metrics (a cheap read, no
// stop-the-world). The sample counts garbage not yet collected, so when it
// passes HeapLimit the watchdog first forces a collection (at most one per
// gcInterval) and only if the heap is still above the limit cancels every
// running call with ErrHeapLimit — each stops at its next instruction and
// its state is discarded.
//
// What it bounds: memory grows past the limit by what running hooks
// allocate in one period and one forced collection, plus the single
// instruction in flight (a concatenation of two strings already in
// memory, or a capped built-in).

const (
	watchdogPeriod = 10 * time.Millisecond
	gcInterval     = 50 * time.Millisecond
	heapMetric     = "/memory/classes/heap/objects:bytes"
)

type watchdog struct {
	limit   uint64
	log     hclog.Logger
	mu      sync.Mutex
	next    uint64
	running map[uint64]context.CancelCauseFunc
	wake    chan struct{}
	done    chan struct{}
	stop    sync.Once
	sample  []metrics.Sample
	lastGC  time.Time // of the watchdog's own forced collections
}

func newWatchdog(limit uint64, log hclog.Logger) *watchdog {
	w := &watchdog{
		limit:   limit,
		log:     log,
		running: map[uint64]context.CancelCauseFunc{},
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		sample:  []metrics.Sample{{Name: heapMetric}},
	}
	go w.loop()
	return w
}

// add registers a running call; remove unregisters it.
func (w *watchdog) add(cancel context.CancelCauseFunc) uint64 {
	w.mu.Lock()
	w.next++
	id := w.next
	w.running[id] = cancel
	first := len(w.running) == 1
	w.mu.Unlock()
	if first {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
	return id
}

func (w *watchdog) remove(id uint64) {
	w.mu.Lock()
	delete(w.running, id)
	w.mu.Unlock()
}

func (w *watchdog) close() { w.stop.Do(func() { close(w.done) }) }

// loop sleeps while no hook runs, and samples the heap while any does.
func (w *watchdog) loop() {
	t := time.NewTicker(watchdogPeriod)
	t.Stop()
	for {
		select {
		case <-w.done:
			return
		case <-w.wake:
		}
		t.Reset(watchdogPeriod)
		for w.active() {
			select {
			case <-w.done:
				t.Stop()
				return
			case <-t.C:
			}
			w.check()
		}
		t.Stop()
	}
}

func (w *watchdog) active() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.running) > 0
}

func (w *watchdog) heap() uint64 {
	metrics.Read(w.sample)
	if w.sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return w.sample[0].Value.Uint64()
}

// check cancels the running calls if the heap, garbage collected, is
// above the limit.
func (w *watchdog) check() {
	if w.heap() <= w.limit || time.Since(w.lastGC) < gcInterval {
		return
	}
	runtime.GC()
	w.lastGC = time.Now()
	heap := w.heap()
	if heap <= w.limit {
		return
	}
	w.mu.Lock()
	n := len(w.running)
	for _, cancel := range w.running {
		cancel(ErrHeapLimit)
	}
	w.mu.Unlock()
	w.log.Warn("heap above hook_heap_limit: cancelled running hooks", "heap", heap, "limit", w.limit, "cancelled", n)
}
