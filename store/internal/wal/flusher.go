package wal

import (
	"sync"
	"time"
)

// Flusher runs the flushes that write logged batches into the data file
// (only then may the ring's space be reused): on its own goroutine every
// so often, sooner when kicked, and one at a time, so that commits go on
// while it writes. What a flush writes is the store's business; the
// Flusher only decides when, and keeps others (Close, a consistency check,
// a test holding flushes) out while one runs.
type Flusher struct {
	mu   sync.Mutex    // held over a flush
	kick chan struct{} // asks for a flush now
	stop chan struct{} // closed by Stop: Run returns
	done chan struct{} // closed when Run has returned
}

// NewFlusher returns a Flusher; Run starts it.
func NewFlusher() *Flusher {
	return &Flusher{kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// Lock holds off flushes (and waits for one running); a flush takes it too.
func (f *Flusher) Lock() { f.mu.Lock() }

// Unlock lets flushes run again.
func (f *Flusher) Unlock() { f.mu.Unlock() }

// Kick asks for a flush now. It does not block.
func (f *Flusher) Kick() {
	select {
	case f.kick <- struct{}{}:
	default:
	}
}

// Run calls flush every every and at each kick until Stop. After a flush
// whose error backOff accepts (a full disk), it waits retry, doubling up to
// every while such failures go on, and ignores kicks meanwhile: a failed
// flush of a large pending set costs as much as a good one, and writers
// would kick it at every commit.
func (f *Flusher) Run(flush func() error, every, retry time.Duration, backOff func(error) bool) {
	defer close(f.done)
	t := time.NewTicker(every)
	defer t.Stop()
	wait := retry
	for {
		select {
		case <-f.kick:
		case <-t.C:
		case <-f.stop:
			return
		}
		err := flush()
		switch {
		case err == nil:
			wait = retry
		case backOff(err):
			select {
			case <-time.After(wait):
			case <-f.stop:
				return
			}
			wait = min(2*wait, every)
		}
	}
}

// Stop makes Run return and waits for it; a flush running finishes first.
func (f *Flusher) Stop() {
	close(f.stop)
	<-f.done
}
