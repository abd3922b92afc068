package scripting

import (
	"errors"
	"sync/atomic"
)

// Stats are the engine's counters, for the daemon's metrics.
type Stats struct {
	Calls         uint64 // calls of a hook function (refused ones included)
	Rejections    uint64 // on_set calls that rejected the write
	Errors        uint64 // calls that failed with ErrHook (timeouts and heap cancels included)
	Timeouts      uint64 // calls that ran past their timeout
	HeapCancels   uint64 // calls cancelled by the heap watchdog
	Fallbacks     uint64 // on_conflict failures (the caller used last-writer-wins)
	PoolExhausted uint64 // calls that waited for a state in vain
	Abandoned     uint64 // states abandoned by calls that overran
	LogsDropped   uint64 // ck.log lines over the per-call limit

	PoolBusy         int // states in use now, abandoned ones still running included
	PoolLive         int // states existing now
	AbandonedRunning int // abandoned states whose Lua code has not stopped yet
}

type counters struct {
	calls, rejections, errors, timeouts, heapCancels atomic.Uint64
	fallbacks, poolExhausted, abandoned, logsDropped atomic.Uint64
	abandonedRunning                                 atomic.Int64
}

func (c *counters) count(err error) {
	c.calls.Add(1)
	var re *RejectError
	switch {
	case err == nil:
	case errors.As(err, &re):
		c.rejections.Add(1)
	default:
		c.errors.Add(1)
		switch {
		case errors.Is(err, ErrTimeout):
			c.timeouts.Add(1)
		case errors.Is(err, ErrHeapLimit):
			c.heapCancels.Add(1)
		case errors.Is(err, ErrPoolExhausted):
			c.poolExhausted.Add(1)
		}
	}
}

// Stats returns a snapshot of the counters.
func (e *Engine) Stats() Stats {
	busy, live := e.pool.busy()
	c := &e.stats
	return Stats{
		Calls:            c.calls.Load(),
		Rejections:       c.rejections.Load(),
		Errors:           c.errors.Load(),
		Timeouts:         c.timeouts.Load(),
		HeapCancels:      c.heapCancels.Load(),
		Fallbacks:        c.fallbacks.Load(),
		PoolExhausted:    c.poolExhausted.Load(),
		Abandoned:        c.abandoned.Load(),
		LogsDropped:      c.logsDropped.Load(),
		PoolBusy:         busy,
		PoolLive:         live,
		AbandonedRunning: int(c.abandonedRunning.Load()),
	}
}

// Add returns the sum of two engines' counters, with s's gauges: the
// daemon keeps totals across reloads, which replace the engine.
func (s Stats) Add(o Stats) Stats {
	s.Calls += o.Calls
	s.Rejections += o.Rejections
	s.Errors += o.Errors
	s.Timeouts += o.Timeouts
	s.HeapCancels += o.HeapCancels
	s.Fallbacks += o.Fallbacks
	s.PoolExhausted += o.PoolExhausted
	s.Abandoned += o.Abandoned
	s.LogsDropped += o.LogsDropped
	return s
}
