package store

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Group commit. bbolt's Batch waits up to 10 ms for company, which is slow
// with few writers; here one committer goroutine takes the first queued
// request, drains whatever else is already queued without waiting, and runs
// them all in one transaction and one fsync. Under load the batch grows by
// itself: requests queue while the previous fsync runs.
const (
	maxBatch      = 1024     // requests per transaction
	maxBatchBytes = 32 << 20 // value bytes per transaction
)

// errNothingToCommit rolls back a batch that changed nothing.
var errNothingToCommit = errors.New("nothing to commit")

type reqKind uint8

const (
	reqSet reqKind = iota
	reqDelete
	reqApply
	reqReserve
)

// request is one queued write. The committer fills res/err and closes done.
type request struct {
	kind      reqKind
	key       string
	value     []byte
	ifVersion *uint64
	rec       Record       // apply: the received record,
	raw       []byte       // its canonical encoding (computed by the caller's goroutine),
	pre       *preResolved // and its resolution against the current record, if any
	reserve   uint64       // reserve: the lamport to cover

	res  ApplyResult
	err  error
	done chan struct{}
}

// preResolved is a conflict resolution computed outside the committer
// against the record whose hash is cur; it is used only if that is still
// the current record.
type preResolved struct {
	cur Hash
	rec Record
}

func (r *request) size() int { return len(r.value) + len(r.raw) }

// submit queues r and waits for its commit. When ctx ends first it returns
// ctx.Err(), and the write may or may not still be committed; r must not
// be read then (the committer may still be writing it).
func (s *Store) submit(ctx context.Context, r *request) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	s.inflight.Add(1) // before Close's Wait, which needs the write lock
	s.mu.RUnlock()
	defer s.inflight.Done()
	if err := ctx.Err(); err != nil {
		return err
	}

	r.done = make(chan struct{})
	select {
	case s.reqs <- r:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-r.done:
		return r.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// run is the committer goroutine.
func (s *Store) run() {
	defer close(s.done)
	var g gatherer
	for {
		select {
		case r := <-s.reqs:
			batch := g.gather(s.reqs, r, true)
			t0 := time.Now()
			s.commit(batch)
			g.committed(len(batch), time.Since(t0))
		case <-s.stop:
			// No caller can submit any more; commit what callers that
			// gave up waiting (ctx) left in the queue.
			for {
				select {
				case r := <-s.reqs:
					s.commit(g.gather(s.reqs, r, false))
				default:
					return
				}
			}
		}
	}
}

// gatherer forms batches. Writers released by a commit come back a little
// later (a client's next request); one that arrives just after the next
// commit has started waits for all of it. With n writers, taking only those
// already queued makes batches alternate between a few and nearly n, and a
// commit costs the same for 2 records as for 16 (its fsyncs). So when the
// last batch was larger than what is queued now, gather waits a moment for
// as many as it held — at most a fraction of a commit's duration, so that
// writers that left cost little — and a single writer never waits.
type gatherer struct {
	last    int           // size of the last batch
	took    time.Duration // how long its commit took (smoothed)
	timer   *time.Timer
	waiting bool // the timer is armed
}

// maxGatherWait bounds the wait for company whatever commits cost.
const maxGatherWait = 500 * time.Microsecond

func (g *gatherer) committed(n int, took time.Duration) {
	g.last = n
	g.took = (3*g.took + took) / 4
}

// gather returns first and the requests queued behind it, within the batch
// limits; with wait, it may wait for more as described above.
func (g *gatherer) gather(reqs <-chan *request, first *request, wait bool) []*request {
	batch := []*request{first}
	size := first.size()
	full := func() bool { return len(batch) >= maxBatch || size >= maxBatchBytes }
	for !full() {
		select {
		case r := <-reqs:
			batch = append(batch, r)
			size += r.size()
			continue
		default:
		}
		if !wait || len(batch) >= g.last {
			return batch
		}
		d := min(g.took/4, maxGatherWait)
		if d <= 0 {
			return batch
		}
		if g.timer == nil {
			g.timer = time.NewTimer(d)
		} else {
			g.timer.Reset(d)
		}
		wait = false // once per batch
		for !full() && len(batch) < g.last {
			select {
			case r := <-reqs:
				batch = append(batch, r)
				size += r.size()
				continue
			case <-g.timer.C:
			}
			return batch
		}
		g.timer.Stop()
	}
	return batch
}

// commit runs a batch in one transaction. A request whose condition fails
// gets its own error and does not fail the others; a failing transaction
// fails every request and changes nothing in memory.
func (s *Store) commit(batch []*request) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	st := s.begin()
	err := s.db.Update(func(tx *bolt.Tx) error {
		st.open(tx)
		for _, r := range batch {
			if err := st.do(r); err != nil {
				return err
			}
		}
		if len(st.changes) == 0 && !st.reservedDirty {
			// Only ignored records and refused conditions: roll back
			// rather than commit and fsync an empty transaction.
			return errNothingToCommit
		}
		return st.finish()
	})
	if err == errNothingToCommit {
		err = nil
	}
	s.commits.Add(1)
	s.requests.Add(uint64(len(batch)))
	if err != nil {
		err = s.commitError(err, len(batch))
		for _, r := range batch {
			r.res, r.err = ApplyResult{}, err
		}
	} else {
		if s.diskFull.CompareAndSwap(true, false) {
			s.log.Info("commits succeed again after the disk was full")
		}
		s.publish(st)
	}
	for _, r := range batch {
		close(r.done)
	}
}

// commitError classifies a failed commit. bbolt wraps some I/O errors with
// %s (losing the errno), so ENOSPC is also recognised by its text.
func (s *Store) commitError(err error, n int) error {
	switch {
	case errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), syscall.ENOSPC.Error()):
		if !s.diskFull.Swap(true) {
			s.log.Error("disk full: writes fail until space is freed", "path", s.path, "error", err)
		}
		return fmt.Errorf("store: commit: %w: %w", ErrDiskFull, err)
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return ErrClosed
	}
	s.log.Error("commit failed", "requests", n, "error", err)
	return fmt.Errorf("store: commit: %w", err)
}

// publish applies a committed batch to the in-memory state.
func (s *Store) publish(st *txState) {
	s.mu.Lock()
	s.reserved = st.reserved
	s.lastIndex, s.firstIndex = st.last, st.first
	for _, c := range st.changes {
		s.dig.update(c.keyHash, c.was, c.now)
		s.keys = uint64(int64(s.keys) + int64(c.live))
	}
	if len(st.changes) > 0 {
		s.dig.computeRoot()
		close(s.notify)
		s.notify = make(chan struct{})
	}
	s.mu.Unlock()
	s.raise(st.l)
}
