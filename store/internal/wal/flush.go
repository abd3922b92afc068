package wal

import "time"

// Flushing writes the pending batches into the data file, in one
// transaction with the file's own fsyncs, and records the last batch's
// number (the store's wal_lsn) in the same transaction; only then may the
// log's space be reused. The Flusher runs it on its own goroutine, every
// FlushEvery or sooner when the pending batches take 1/FlushShare of the
// log or the committer needs their space, so commits go on while it
// writes. Many writes of the same key or of neighbouring keys then cost
// one page write, where a commit per write rewrote a dozen pages. While
// flushes fail for lack of space it waits FlushRetry after each failure,
// doubling up to FlushEvery.
const (
	FlushEvery = time.Second
	FlushShare = 4
	FlushRetry = 50 * time.Millisecond
)

// Sink is what a flush writes into: the store's data file. What a set
// means there (the buckets, the indexes, the change log) is the store's
// business; the overlay decides when a set is frozen, written and dropped.
type Sink[E any] struct {
	// Write writes a set into the file in one transaction.
	Write func(*Set[E]) error
	// Retries are tried in order after a failed Write: each one that
	// returns true (it made room) is followed by another Write.
	Retries []func(error) bool
	// Flushed is told how a flush ended: the batches it wrote, its error
	// (nil: success) and whether the flush before failed too. It returns
	// the error to keep (nil on success).
	Flushed func(batches int, err error, again bool) error
}

// Lock holds off flushes (and waits for one running); a flush takes it too.
func (o *Overlay[E]) Lock() { o.flusher.Lock() }

// Unlock lets flushes run again.
func (o *Overlay[E]) Unlock() { o.flusher.Unlock() }

// Kick asks the flusher for a flush now.
func (o *Overlay[E]) Kick() { o.flusher.Kick() }

// Run runs the flusher until Stop, calling flush (which calls Flush): see
// Flusher.Run.
func (o *Overlay[E]) Run(flush func() error, backOff func(error) bool) {
	o.flusher.Run(flush, FlushEvery, FlushRetry, backOff)
}

// Stop stops the flusher; Close then flushes what is left itself (FlushAll).
func (o *Overlay[E]) Stop() { o.flusher.Stop() }

// FlushAll flushes until nothing is pending, or a flush fails.
func (o *Overlay[E]) FlushAll() error {
	for {
		o.mu.RLock()
		idle := o.Idle()
		o.mu.RUnlock()
		if idle {
			return nil
		}
		if err := o.Flush(); err != nil {
			return err
		}
	}
}

// Flush writes the frozen set, freezing the active one first if nothing
// is frozen. A failed flush keeps the frozen set for the next try.
func (o *Overlay[E]) Flush() error {
	o.flusher.Lock()
	defer o.flusher.Unlock()
	var next *Set[E]
	if o.frozen == nil { // only flushes change frozen, and they hold the flusher
		// The next active set sized like the last one, so that commits do
		// not grow its maps and events step by step; made before the lock
		// that commits and reads wait for.
		next = newSetSized[E](o.hintRecs, o.hintEvents)
	}
	o.mu.Lock()
	if o.frozen == nil {
		if o.active.Empty() {
			o.mu.Unlock()
			return nil
		}
		o.frozen, o.active = o.active, next
		o.hintRecs, o.hintEvents = len(o.frozen.Recs), len(o.frozen.Events)
	}
	fr := o.frozen
	o.mu.Unlock()

	err := o.sink.Write(fr)
	for _, retry := range o.sink.Retries {
		if retry(err) {
			err = o.sink.Write(fr)
		}
	}
	var again bool
	if err != nil {
		o.mu.RLock()
		again = o.err != nil
		o.mu.RUnlock()
	}
	err = o.sink.Flushed(fr.Batches, err, again)
	o.mu.Lock()
	if err == nil {
		o.frozen = nil
	}
	o.err = err
	close(o.sig) // wakes a committer waiting for space
	o.sig = make(chan struct{})
	o.mu.Unlock()
	o.flushes.Add(1)
	return err
}
