package store

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/cloudknowledge/ck/store/internal/wal"
)

// Group commit. bbolt's Batch waits up to 10 ms for company, which is slow
// with few writers; here one committer goroutine takes the first queued
// request and whatever else is queued behind it (gather), computes the
// batch, writes it to the log with one fsync (internal/wal), and acknowledges
// it. Under load the batch grows by itself: requests queue while the
// previous fsync runs. A writer that finds nothing committing and nothing
// queued commits its request itself (submit).
const (
	maxBatch      = 1024    // requests per batch
	maxBatchBytes = 4 << 20 // value bytes per batch; a larger batch than the log takes goes to the file directly
)

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
	ifSame    *Hash        // set, delete: the record the key must still hold (SetOptions.IfSame)
	rec       Record       // apply: the received record,
	raw       []byte       // its canonical encoding (computed by the caller's goroutine; set, delete: the record written, once written),
	hash      Hash         // raw's hash (likewise),
	pre       *preResolved // and its resolution against the current record, if any
	reserve   uint64       // reserve: the lamport to cover
	ttl       int64        // set: the record's TTL, ms (ttl.go)
	ephemeral uint64       // set: the boot epoch of an ephemeral record (ephemeral.go)

	ctx  context.Context // the caller's, for the early hook (SetEarly)
	res  ApplyResult
	err  error
	done chan struct{} // nil when queued by an Applier, which hears instead

	applier *Applier // queued by Applier.Apply: told of the outcome with tag
	tag     any
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

	r.done, r.ctx = make(chan struct{}), ctx
	if len(s.reqs) == 0 && s.company.lone() && s.commitMu.TryLock() {
		// Nothing committing, nothing queued, no crowd of writers of
		// late (company.go): commit here, on the
		// caller's goroutine. A lone writer then pays no hand-over to the
		// committer and back (two wake-ups of parked threads, which cost
		// tens of microseconds on a virtual machine). Whoever queues
		// meanwhile is committed by the committer afterwards. (The
		// committer may be kept waiting for the mutex by a few such
		// commits; sync.Mutex turns fair after 1 ms. Keeping writers out
		// while the committer holds a batch measured 10 % slower.)
		if len(s.reqs) == 0 {
			s.commitLocked([]*request{r})
			s.commitMu.Unlock()
			return r.err
		}
		s.commitMu.Unlock()
	}
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
	for {
		select {
		case r := <-s.reqs:
			s.commitQueued(r)
			// The writers the batch woke sit in this P's run queue: let
			// them run (answer their clients) before the next batch.
			// Going on at once, the committer would enter the next log
			// write with them queued behind it, and the runtime would
			// hand its P to another thread during the write and find
			// the committer a P again after it: thread wake-ups, each a
			// VM exit here. Yielding, the next batch also gathers the
			// writers that come back meanwhile (docs/ARCHITECTURE.md,
			// "The store").
			runtime.Gosched()
		case <-s.stop:
			// No caller can submit any more; commit what callers that
			// gave up waiting (ctx) left in the queue.
			for {
				select {
				case r := <-s.reqs:
					s.commitQueued(r)
				default:
					return
				}
			}
		}
	}
}

// gather returns first and the requests queued behind it, within the
// batch limits. It does not wait for more: with the log's short commits,
// lingering for company (a fixed delay, or while arrivals keep coming)
// made batches larger but cost more in latency than it saved in fsyncs,
// in every setting measured (docs/BENCHMARKS.md).
func gather(reqs <-chan *request, first *request) []*request {
	batch := []*request{first}
	size := first.size()
	for len(batch) < maxBatch && size < maxBatchBytes {
		select {
		case r := <-reqs:
			batch = append(batch, r)
			size += r.size()
		default:
			return batch
		}
	}
	return batch
}

// commitQueued runs a batch of first and the requests queued behind it:
// it computes the records against the current ones, writes them to the
// log as one batch and syncs it (persist), then makes them visible
// (publish). A request whose condition fails gets its own error and does
// not fail the others; a failing write fails every request and changes
// nothing in memory.
//
// The batch is gathered once the commit lock is held, not before: while
// a writer commits on its own goroutine (submit), everything that arrives
// during its log write joins this batch, where gathering first held the
// committer to the few requests queued before it; and a batch smaller
// than the recent ones waits a little for the writers of the last batch
// (company.go), unless it holds only received records.
func (s *Store) commitQueued(first *request) {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	batch := gather(s.reqs, first)
	if want := s.company.expect(); len(batch) < want && !received(batch) {
		batch = s.company.await(s.reqs, batch, want)
	}
	s.commitLocked(batch)
}

// received reports whether every request of batch is a received record
// (Applier.Apply). Such a batch does not wait for company: its size is
// set by the writer's group commit, whose UPDATEs arrive together, not by
// writers coming back to this node, and the writer waits for its ACKs,
// which go out only after this commit. A wait there sat on a sub-ms timer
// that the 1 ms timer slack makes fire late (docs/ARCHITECTURE.md,
// "Waiting for company").
func received(batch []*request) bool {
	for _, r := range batch {
		if r.kind != reqApply {
			return false
		}
	}
	return true
}

// commitLocked is commit with commitMu held.
func (s *Store) commitLocked(batch []*request) {
	if len(batch) > 1 && s.space.limited.Load() {
		// A full disk admits some writes and not others (space.go): one
		// at a time, so that a refused write fails alone.
		for _, r := range batch {
			s.commitLocked([]*request{r})
		}
		return
	}
	start := time.Now()
	st, err := s.begin()
	var shrinks, direct bool
	if err == nil {
		err = st.build(batch)
		if err == nil {
			shrinks, direct, err = s.admit(st)
		}
		st.done()
	}
	var sent uint64 // the highest lamport handed to the early hook
	if err == nil && (len(st.changes) > 0 || st.reservedDirty) {
		// Only ignored records and refused conditions write nothing.
		if direct {
			err = s.commitDirect(st)
		} else {
			err = s.persist(st, shrinks, batch, &sent)
		}
	}
	s.commits.Add(1)
	s.requests.Add(uint64(len(batch)))
	s.company.committed(len(batch), time.Since(start))
	if err != nil {
		err = s.commitError(err, len(batch))
		if sent > 0 {
			// The writes may be on peers: their versions stay used.
			s.raise(sent)
			err = fmt.Errorf("%w (the write was handed to replication before the commit failed: it may exist on peers)", err)
		}
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
		if r.done != nil {
			close(r.done)
		}
	}
	s.tellAppliers(batch)
}

// tellAppliers hands the outcomes of the batch's queued records to their
// Appliers (Applier.Apply), one call per Applier, once the commit has
// returned: a receiver acknowledges them only now, durable.
func (s *Store) tellAppliers(batch []*request) {
	var a *Applier
	var out []ApplyDone
	n := 0
	for _, r := range batch {
		if r.applier == nil {
			continue
		}
		if a != nil && r.applier != a {
			a.fn(out)
			out = nil
		}
		a = r.applier
		if out == nil {
			out = make([]ApplyDone, 0, len(batch)) // at once: an ApplyDone is large, and doubling copied them
		}
		out = append(out, ApplyDone{Tag: r.tag, Result: r.res, Err: r.err})
		n++
	}
	if a != nil {
		a.fn(out)
	}
	s.inflight.Add(-n)
}

// build runs the batch's requests.
func (st *txState) build(batch []*request) error {
	// Room for the batch at once: a stagedPut is large, and growing by
	// doubling copied each several times per batch.
	st.puts = make([]stagedPut, 0, len(batch))
	st.changes = make([]change, 0, len(batch))
	st.staged = make(map[string]int, len(batch))
	st.curs = make([]stored, 0, len(batch))
	for _, r := range batch {
		if err := st.do(r); err != nil {
			return err
		}
	}
	st.finish()
	return nil
}

// persist makes the batch durable: in the log, or, when it is too large
// for the log, straight in the bbolt file. A batch that shrinks the store
// may use the ring's spare (walSpace).
func (s *Store) persist(st *txState, shrinks bool, batch []*request, sent *uint64) error {
	lsn := s.wal.LSN() + 1
	b := s.wal.Encode(lsn, st.reserved, st.walChanges())
	if int64(len(b)) > s.wal.MaxBatch() {
		return s.commitDirect(st)
	}
	n := int64(len(b))
	pos, err := s.walSpace(n, shrinks)
	if err != nil {
		return err
	}
	*sent = s.sendEarly(batch)
	if err := s.wal.Write(b, pos, lsn); err != nil {
		return err
	}
	st.lsn, st.pos, st.size = lsn, pos, n
	return nil
}

// Early is a local write handed to the early hook: its record, and the
// context it was submitted with (which the hook may read values from).
// Raw and Hash are the record's canonical encoding (Record.MarshalCBOR)
// and its hash (Record.Hash), as the commit computed them for the log: the hook sends them rather than encode and hash the record
// again. Raw is the log's: valid only while the hook runs, and not to be
// changed.
type Early struct {
	Record Record
	Ctx    context.Context
	Raw    []byte
	Hash   Hash
}

// EarlyFunc is the early hook (SetEarly).
type EarlyFunc func([]Early)

// SetEarly sets fn, which is handed each batch's local writes once their
// versions are assigned and the log has room for the batch, just before
// the batch is written and synced: the cluster sends them to its peers
// while this node syncs (docs/ARCHITECTURE.md, "Overlapped replication").
// Only writes whose lamport the persisted reservation already covers are
// handed over, so that a crash before the commit cannot hand the same
// version out again (clock.go); the few that would move the reservation
// are replicated after their commit as before. A commit that fails after
// the hook ran raises L past the writes it was handed, and its error says
// they may exist on peers. fn runs on the committing goroutine: it must be
// quick and must not write to the store.
func (s *Store) SetEarly(fn EarlyFunc) { s.early.Store(&fn) }

// sendEarly hands the batch's local writes to the early hook, with the
// encoding and hash write computed for each, and returns the highest
// lamport handed over (0: none).
func (s *Store) sendEarly(batch []*request) uint64 {
	fn := s.early.Load()
	if fn == nil || *fn == nil {
		return 0
	}
	covered := s.Reserved() // this batch's own reservation is not durable yet
	var ws []Early
	var top uint64
	for _, r := range batch {
		rec := &r.res.Record
		if (r.kind == reqSet || r.kind == reqDelete) && r.err == nil && rec.Lamport > 0 && rec.Lamport <= covered {
			ws = append(ws, Early{Record: *rec, Ctx: r.ctx, Raw: r.raw, Hash: r.hash})
			top = max(top, rec.Lamport)
		}
	}
	if len(ws) > 0 {
		(*fn)(ws)
	}
	return top
}

// walSpace returns where a batch of n bytes goes in the log, waiting for
// flushes to free the space. It fails with the flush's error when a flush
// it waited for failed (a full disk). Only a batch that shrinks the store
// may take the last 1/ringSpare of the ring: when flushes fail for lack of
// space, deletes still find room there (space.go).
func (s *Store) walSpace(n int64, shrinks bool) (int64, error) {
	need := n
	if !shrinks {
		need += s.wal.Size() / ringSpare // the spare stays clear after it
	}
	flushed := false
	for waited := false; ; waited = true {
		pos := s.wal.Place(need)
		s.mu.RLock()
		tail, busy := s.ringTail()
		sig, ferr := s.pend.LastFlush()
		s.mu.RUnlock()
		if !busy || wal.Fits(pos, need, s.wal.Head(), tail) {
			return pos, nil
		}
		if shrinks && !flushed && isNoSpace(ferr) {
			// A batch that frees space does not give up on a log that
			// failing flushes keep full before it tried one itself: a
			// flush writes the records that free space first
			// (freeing.go), the deletes before this one among them.
			flushed = true
			_ = s.pend.Flush()
			continue
		}
		if waited && ferr != nil || isNoSpace(ferr) {
			// Flushes failing for lack of space retry on their own
			// schedule (internal/wal/flush.go): no waiting for them.
			return 0, ferr
		}
		s.kickFlush()
		<-sig
	}
}

// commitDirect writes a batch too large for the log into the bbolt file,
// once everything pending is flushed, so that the file stays the state
// after its last logged batch plus this one. It takes no batch number:
// the log's numbers stay consecutive whether or not it succeeds.
func (s *Store) commitDirect(st *txState) error {
	for waited := false; ; waited = true {
		s.mu.RLock()
		busy := !s.pend.Idle()
		sig, ferr := s.pend.LastFlush()
		s.mu.RUnlock()
		if !busy {
			break
		}
		if waited && ferr != nil {
			return ferr
		}
		s.kickFlush()
		<-sig
	}
	p := wal.NewSet[Event]()
	addBatch(p, s.wal.LSN(), 0, 0, st)
	return s.db.Update(func(tx *bolt.Tx) error { return writePending(tx, p) })
}

// commitError classifies a failed commit and logs it (disk full once).
func (s *Store) commitError(err error, n int) error {
	e := s.classify(err)
	switch {
	case errors.Is(e, ErrDiskFull):
		// The reserve is for flushes (space.go): a write that fails here
		// fails alone.
		if !s.diskFull.Swap(true) {
			s.log.Error("disk full: a commit failed", "path", s.path, "error", err)
		}
	case e != ErrClosed:
		s.log.Error("commit failed", "requests", n, "error", err)
	}
	return e
}

// classify maps a failed write onto the store's errors. bbolt wraps some
// I/O errors with %s (losing the errno), so ENOSPC is also recognised by
// its text.
func (s *Store) classify(err error) error {
	switch {
	case errors.Is(err, ErrDiskFull), errors.Is(err, ErrClosed):
		return err
	case errors.Is(err, syscall.ENOSPC) || strings.Contains(err.Error(), syscall.ENOSPC.Error()):
		return fmt.Errorf("commit: %w: %w", ErrDiskFull, err)
	case errors.Is(err, berrors.ErrDatabaseNotOpen):
		return ErrClosed
	}
	if isOwn(err) {
		return err
	}
	return fmt.Errorf("commit: %w", err)
}

// isOwn reports whether err is one the store made (it wraps one of the
// store's errors), so classify does not wrap it a second time.
func isOwn(err error) bool {
	for _, own := range []error{ErrBadKey, ErrTooLarge, ErrBadRecord, ErrBadTTL, ErrVersionMismatch,
		ErrDiskFull, ErrClosed, ErrLocked, ErrFormat, ErrCompacted, ErrCorrupt} {
		if errors.Is(err, own) {
			return true
		}
	}
	return false
}

// publish applies a committed batch to the in-memory state.
func (s *Store) publish(st *txState) {
	s.mu.Lock()
	if st.size > 0 {
		addBatch(s.pend.Active(), st.lsn, st.pos, st.size, st)
	}
	kick := s.pend.Active().Size >= s.wal.Size()/wal.FlushShare
	s.reserved = st.reserved
	s.lastIndex, s.firstIndex = st.last, st.first
	for _, c := range st.changes {
		s.dig.update(c.keyHash, c.was, c.now)
		s.keys = uint64(int64(s.keys) + int64(c.live))
	}
	s.publishLives(st)
	if len(st.changes) > 0 {
		s.dig.computeRoot()
		close(s.notify)
		s.notify = make(chan struct{})
	}
	s.mu.Unlock()
	s.raise(st.l)
	if kick {
		s.kickFlush()
	}
}
