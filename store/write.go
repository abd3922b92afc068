package store

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cloudknowledge/ck/store/internal/wal"
	bolt "go.etcd.io/bbolt"
)

// Outcome is what Apply did with a record.
type Outcome int

// Outcomes.
const (
	Applied  Outcome = iota + 1 // the record was newer and is stored as it is
	Ignored                     // it was older than or the same as the stored one
	Resolved                    // it was concurrent: a resolution of the two is stored
	Dropped                     // not stored: an expired tombstone, or a deleted value coming back (purge.go)
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Ignored:
		return "ignored"
	case Resolved:
		return "resolved"
	case Dropped:
		return "dropped"
	}
	return "Outcome(?)"
}

// ApplyResult is the outcome of Apply and the record the store holds for
// the key afterwards.
type ApplyResult struct {
	Outcome Outcome
	Record  Record
}

// Set stores value under key as a new local write: L = L+1, vv = the
// current record's vv with vv[self] = L, lamport = L, origin = lww = self,
// At = now. With ifVersion, it writes only if the current record's lamport
// equals *ifVersion (0: absent or deleted), else it fails with a
// *VersionError. It returns once the write is durable. The returned
// record's Value is value itself: do not modify it.
func (s *Store) Set(ctx context.Context, key string, value []byte, ifVersion *uint64) (Record, error) {
	return s.SetTTL(ctx, key, value, ifVersion, 0)
}

// SetTTL is Set of a record that lives ttl (0: for ever; else MinTTL to
// MaxTTL, whole ms) from now: it is hidden from reads on each node once
// that node's deadline for it passes (ttl.go). An expired key is absent
// to ifVersion.
func (s *Store) SetTTL(ctx context.Context, key string, value []byte, ifVersion *uint64, ttl time.Duration) (Record, error) {
	return s.SetWith(ctx, key, value, SetOptions{IfVersion: ifVersion, TTL: ttl})
}

// set is a local write of a value with a TTL (ms) or an ephemeral epoch,
// under o's conditions.
func (s *Store) set(ctx context.Context, key string, value []byte, o SetOptions, ttl int64, ephemeral uint64) (Record, error) {
	if err := ValidateKey(key); err != nil {
		return Record{}, err
	}
	if len(value) > s.opts.MaxValueSize {
		return Record{}, fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(value), s.opts.MaxValueSize)
	}
	r := &request{kind: reqSet, key: key, value: value, ifVersion: o.IfVersion, ifSame: o.IfSame, ttl: ttl, ephemeral: ephemeral}
	if err := s.submit(ctx, r); err != nil {
		return Record{}, err
	}
	return r.res.Record, nil
}

// Delete writes a tombstone for key, like Set. Deleting a missing (or
// deleted) key succeeds and writes a tombstone.
func (s *Store) Delete(ctx context.Context, key string, ifVersion *uint64) (Record, error) {
	return s.del(ctx, key, SetOptions{IfVersion: ifVersion})
}

func (s *Store) del(ctx context.Context, key string, o SetOptions) (Record, error) {
	if err := ValidateKey(key); err != nil {
		return Record{}, err
	}
	r := &request{kind: reqDelete, key: key, ifVersion: o.IfVersion, ifSame: o.IfSame}
	if err := s.submit(ctx, r); err != nil {
		return Record{}, err
	}
	return r.res.Record, nil
}

// Apply stores a record received from a peer or imported: it raises L to
// the record's lamport, then compares it with the stored one and stores it
// if newer, stores a resolution (Options.Resolver) if concurrent, and
// ignores it if older or the same. It returns once that is durable. The
// store keeps rec's Value and VV: do not modify them.
//
// A record the purge log covers is dropped; an expired tombstone is not
// stored either, but removes the record it covers (purge.go). Both give
// Dropped, with the record the store holds afterwards (zero if none).
func (s *Store) Apply(ctx context.Context, rec Record) (ApplyResult, error) {
	raw, h, expired, err := s.ready(&rec, nil)
	if err != nil {
		return ApplyResult{}, err
	}
	if expired {
		return s.applyExpired(ctx, rec)
	}
	r := &request{kind: reqApply, key: rec.Key, rec: rec, raw: raw, hash: h}
	if s.opts.Resolver != nil {
		// A hook may take milliseconds; resolve here, against the record
		// stored now, rather than stall the committer and every writer.
		r.pre = s.preResolve(&rec)
	}
	if err := s.submit(ctx, r); err != nil {
		return ApplyResult{}, err
	}
	return r.res, nil
}

// ApplyDone is the outcome of a record queued with Applier.Apply: Tag as
// given with it, and what Apply would have returned for it.
type ApplyDone struct {
	Tag    any
	Result ApplyResult
	Err    error
}

// Applier queues received records for the committer without waiting for
// their commits, so that a receive loop hands a datagram's writes over
// without a goroutine per write and the committer still gathers them with
// whatever else is queued (docs/ARCHITECTURE.md, "Overlapped
// replication").
type Applier struct {
	s  *Store
	fn func([]ApplyDone)

	// A batch holding a record concurrent with the stored one is resolved
	// by a worker goroutine, not by Apply's caller: a conflict hook may run
	// for its whole timeout, which must not stall a receive loop (HELLOs
	// and ACKs wait behind it). Batches that come while the worker has
	// work queue behind it, so records still reach the committer in the
	// order Apply was given them.
	mu      sync.Mutex
	busy    bool       // a worker drains backlog
	backlog []applyJob // in arrival order
}

// applyJob is a batch waiting for the Applier's worker.
type applyJob struct {
	ctx  context.Context
	reqs []*request
	curs map[int]*Record // concurrent current records; nil: read them first
}

// NewApplier returns an Applier whose outcomes go to fn. fn is called once
// the commit that includes a record has returned (the record durable, or
// the commit failed), on the committing goroutine — the committer, or
// Apply's caller when Apply commits the records itself — with the
// outcomes of every record of this Applier in that commit; records refused before
// they are queued (validation, a closed store, ctx ended) are reported on
// the goroutine that queued them, before Apply returns, and an expired
// tombstone from its own goroutine: fn may run on several goroutines at
// once. fn must be quick and must not write to the store.
func (s *Store) NewApplier(fn func([]ApplyDone)) *Applier { return &Applier{s: s, fn: fn} }

// Apply validates each of recs as Store.Apply does, queues those that pass
// and returns: it waits only for room in the queue, or for ctx. When
// nothing is committing or queued and the recent batches were lone, it
// commits them itself instead, as a lone local writer does (commitHere):
// their outcomes are then reported before it returns. tags[i] is
// handed back with recs[i]'s outcome. An expired tombstone goes to the
// purger on a goroutine of its own, as Apply would send it. With a
// Resolver, a batch holding concurrent records is resolved and queued by
// the Applier's worker (see Applier), after every batch given before it.
func (a *Applier) Apply(ctx context.Context, recs []Record, tags []any) {
	a.apply(ctx, recs, nil, nil, tags)
}

// ApplyHashed is Apply of records received with their hashes (a peer's
// UPDATEs): recs[i] is refused with ErrHashMismatch, before any other
// check, unless its canonical encoding hashes to hashes[i]. The record is
// encoded and hashed once for the check and its commit, where checking
// Record.Hash first and then applying did both twice. raws[i], when raws
// and it are not nil, is recs[i]'s canonical encoding, whose hash the
// caller has already checked to be hashes[i] (Record.Encoded; wire.Decode
// keeps it): it is taken as it is, and nothing is encoded or hashed again
// on the way to the commit.
func (a *Applier) ApplyHashed(ctx context.Context, recs []Record, raws [][]byte, hashes []Hash, tags []any) {
	a.apply(ctx, recs, raws, hashes, tags)
}

// apply is Apply, the records checked against hashes unless nil, with
// their encodings where raws has them.
func (a *Applier) apply(ctx context.Context, recs []Record, raws [][]byte, hashes []Hash, tags []any) {
	s := a.s
	var refused []ApplyDone
	reqs := make([]*request, 0, len(recs))
	// One allocation for the batch's requests, not one each: they are
	// committed together, and a request is a few hundred bytes.
	block := make([]request, len(recs))
	for i := range recs {
		rec := recs[i]
		var want *Hash
		var known []byte
		if hashes != nil {
			want = &hashes[i]
		}
		if raws != nil {
			known = raws[i]
		}
		raw, h, expired, err := s.readyEncoded(&rec, want, known)
		if err != nil {
			refused = append(refused, ApplyDone{Tag: tags[i], Err: err})
			continue
		}
		if expired {
			go func(tag any) {
				res, err := s.applyExpired(ctx, rec)
				a.fn([]ApplyDone{{Tag: tag, Result: res, Err: err}})
			}(tags[i])
			continue
		}
		r := &block[i]
		*r = request{kind: reqApply, key: rec.Key, rec: rec, raw: raw, hash: h, ctx: ctx, applier: a, tag: tags[i]}
		reqs = append(reqs, r)
	}
	if len(refused) > 0 {
		a.fn(refused) // before Apply returns, as documented
	}
	if len(reqs) == 0 {
		return
	}
	a.mu.Lock()
	if a.busy { // behind the batches the worker holds: order kept
		a.backlog = append(a.backlog, applyJob{ctx: ctx, reqs: reqs})
		a.mu.Unlock()
		return
	}
	var curs map[int]*Record
	if s.opts.Resolver != nil {
		curs = s.concurrentCurrent(reqs)
	}
	if len(curs) == 0 {
		a.mu.Unlock()
		a.queue(ctx, reqs)
		return
	}
	a.busy = true
	a.backlog = append(a.backlog, applyJob{ctx: ctx, reqs: reqs, curs: curs})
	a.mu.Unlock()
	go a.drain()
}

// drain resolves and queues the backlog's batches in order, until it is
// empty.
func (a *Applier) drain() {
	s := a.s
	for {
		a.mu.Lock()
		if len(a.backlog) == 0 {
			a.busy = false
			a.mu.Unlock()
			return
		}
		j := a.backlog[0]
		a.backlog[0] = applyJob{}
		a.backlog = a.backlog[1:]
		a.mu.Unlock()
		if j.curs == nil && s.opts.Resolver != nil {
			j.curs = s.concurrentCurrent(j.reqs)
		}
		s.resolveAll(j.reqs, j.curs)
		a.queue(j.ctx, j.reqs)
	}
}

// queue hands reqs to the committer, in order, and reports those that
// could not be queued (a closed store, ctx ended).
func (a *Applier) queue(ctx context.Context, reqs []*request) {
	s := a.s
	var refused []ApplyDone
	s.mu.RLock()
	closed := s.closed
	if !closed {
		s.inflight.Add(len(reqs)) // as submit: before Close's Wait; done once committed
	}
	s.mu.RUnlock()
	if !closed && ctx.Err() == nil && s.commitHere(reqs) {
		return
	}
	// The committer takes the first request queued, then commitMu, then
	// every request queued by then: an idle one woken by reqs[0] could
	// take it alone and leave the rest to a second commit, splitting a
	// writer's batch the node held to commit it whole (daemon/cluster's
	// hold.go). Holding commitMu while they go in, it takes them all.
	// Only while the queue has room: a full queue waits for the
	// committer, which needs commitMu.
	locked := !closed && len(reqs) > 1 && s.commitMu.TryLock()
	unlock := func() {
		if locked {
			s.commitMu.Unlock()
			locked = false
		}
	}
	for i, r := range reqs {
		err := ErrClosed
		if !closed {
			err = ctx.Err()
			if err == nil && locked {
				select {
				case s.reqs <- r:
					continue
				default:
					unlock()
				}
			}
			if err == nil {
				select {
				case s.reqs <- r:
					continue
				case <-ctx.Done():
					err = ctx.Err()
				}
			}
			s.inflight.Add(-(len(reqs) - i))
		}
		for _, r := range reqs[i:] {
			refused = append(refused, ApplyDone{Tag: r.tag, Err: err})
		}
		break
	}
	unlock()
	if len(refused) > 0 {
		a.fn(refused)
	}
}

// commitHere commits reqs on the caller's goroutine when nothing is
// committing or queued and recent batches were lone, as submit does for
// a local writer: a lone received write then pays no hand-over to the
// committer and back, a thread wake-up on the path of a lone replicated
// put (docs/ARCHITECTURE.md, "Overlapped replication"). The caller (a
// receive loop) waits for that commit meanwhile, but never for a flush
// (logRoom); under load, when the batches are not lone, it only queues.
// It reports whether it committed them.
func (s *Store) commitHere(reqs []*request) bool {
	if len(reqs) > maxBatch || len(s.reqs) != 0 || !s.company.lone() || !s.logRoom() || !s.commitMu.TryLock() {
		return false
	}
	defer s.commitMu.Unlock()
	if len(s.reqs) != 0 {
		return false
	}
	s.commitLocked(reqs)
	return true
}

// logRoom reports whether a small batch finds room in the log without
// waiting for a flush (walSpace) and the disk is not short of space: no
// flush running, and the unflushed batches below what starts one. A
// receive loop commits only then, so that it waits for one log write at
// most, never for a flush.
func (s *Store) logRoom() bool {
	if s.space.limited.Load() {
		return false
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	active, frozen := s.pend.Sets()
	return frozen.Empty() && active.Size < s.wal.Size()/wal.FlushShare
}

// validate checks a record received from a peer or imported: it is hostile
// until checked (docs/ARCHITECTURE.md, "Hostile records"). Besides the
// key, size and tombstone rules, its lamport must be above zero and within
// MaxClockJump of L, and every version-vector entry at most its lamport
// (every record the protocol makes has that property: a write's lamport is
// its vv[self], a resolution's exceeds both sides' entries), so observing
// the lamport observes the whole vector, and a later local write's
// vv[self] = L+1 dominates it. A refused record is counted.
// ValidateRecord makes the checks Apply and ApplyBatch make of a received
// record before they store it, refusals counted as theirs are (Stats): a
// record it passes they accept too, as the clock only rises. An import
// validates a batch with it before it applies any of it.
func (s *Store) ValidateRecord(rec *Record) error { return s.validate(rec) }

// ready prepares a received record for the store, as every way in does
// (Apply, ApplyBatch, Applier.Apply, Loader.Load): checked against want
// first unless nil (ApplyHashed), validated, the clock moved past it, its
// Left clamped to its TTL (hostile too: never more), and encoded and
// hashed (h). expired: an expired tombstone, which is never stored
// (applyExpired takes it; purge.go); raw is nil then. Left is not in the
// encoding, so the bytes checked against want are the bytes stored.
func (s *Store) ready(rec *Record, want *Hash) (raw []byte, h Hash, expired bool, err error) {
	return s.readyEncoded(rec, want, nil)
}

// readyEncoded is ready, with known, when not nil, rec's canonical
// encoding, whose hash (want) its caller checked (Applier.ApplyHashed).
func (s *Store) readyEncoded(rec *Record, want *Hash, known []byte) (raw []byte, h Hash, expired bool, err error) {
	if known != nil && want != nil {
		raw, h = known, *want
	} else if want != nil {
		raw = encodeRecord(rec)
		if h = hashBytes(raw); h != *want {
			return nil, Hash{}, false, fmt.Errorf("%w: %q", ErrHashMismatch, rec.Key)
		}
	}
	if err := s.validate(rec); err != nil {
		return nil, Hash{}, false, err
	}
	s.Observe(rec.Lamport)
	if s.Expired(rec) {
		return nil, Hash{}, true, nil
	}
	rec.Left = min(max(rec.Left, 0), rec.TTL)
	if raw == nil {
		raw = encodeRecord(rec)
		h = hashBytes(raw)
	}
	return raw, h, false, nil
}

func (s *Store) validate(rec *Record) error {
	err := s.checkRecord(rec)
	if errors.Is(err, ErrClockJump) {
		s.refusedClock.Add(1)
	} else if errors.Is(err, errBadVV) {
		s.refusedVV.Add(1)
	}
	return err
}

// errBadVV marks version-vector errors for the refusal counters.
var errBadVV = fmt.Errorf("%w: bad version vector", ErrBadRecord)

func (s *Store) checkRecord(rec *Record) error {
	if err := ValidateKey(rec.Key); err != nil {
		return err
	}
	switch {
	case len(rec.Value) > s.opts.MaxValueSize:
		return fmt.Errorf("%w: %d bytes, the limit is %d", ErrTooLarge, len(rec.Value), s.opts.MaxValueSize)
	case rec.Lamport == 0 || rec.Lamport > MaxLamport:
		return fmt.Errorf("%w: %q has lamport %d", ErrBadRecord, rec.Key, rec.Lamport)
	case rec.Lamport > s.Lamport()+MaxClockJump:
		return fmt.Errorf("%w: %q has lamport %d, this node's clock is %d (at most %d ahead is accepted)",
			ErrClockJump, rec.Key, rec.Lamport, s.Lamport(), uint64(MaxClockJump))
	case rec.LWW.Lamport > rec.Lamport:
		return fmt.Errorf("%w: %q ranks by lamport %d, above its own %d", ErrBadRecord, rec.Key, rec.LWW.Lamport, rec.Lamport)
	case rec.Deleted && len(rec.Value) > 0:
		return fmt.Errorf("%w: %q is a tombstone with a value", ErrBadRecord, rec.Key)
	case rec.TTL < 0 || time.Duration(rec.TTL)*time.Millisecond > s.MaxTTL():
		return fmt.Errorf("%w: %q has ttl %d ms, at most %d", ErrBadRecord, rec.Key, rec.TTL, s.MaxTTL().Milliseconds())
	case rec.TTL != 0 && rec.Ephemeral != 0:
		return fmt.Errorf("%w: %q is ephemeral and has a ttl", ErrBadRecord, rec.Key)
	}
	return checkVV(rec)
}

func checkVV(rec *Record) error {
	if len(rec.VV) > MaxVVEntries {
		return fmt.Errorf("%w: %q has %d entries, at most %d", errBadVV, rec.Key, len(rec.VV), MaxVVEntries)
	}
	n := 0
	for id, l := range rec.VV {
		if l > rec.Lamport {
			return fmt.Errorf("%w: %q has entry %d for %s, above its lamport %d", errBadVV, rec.Key, l, id, rec.Lamport)
		}
		if l > 0 {
			n++
		}
	}
	if n == 0 {
		return fmt.Errorf("%w: %q has an empty version vector", ErrBadRecord, rec.Key)
	}
	return nil
}

func (s *Store) preResolve(rec *Record) *preResolved {
	cur, found, err := s.Get(rec.Key)
	if err != nil || !found || Compare(rec, &cur) != Concurrent {
		return nil
	}
	return &preResolved{cur: cur.Hash(), rec: Resolve(rec.Key, &cur, rec, s.opts.Resolver)}
}

// txState is a batch in progress: the records it stores and the values
// that change in memory only if its commit succeeds. It reads the current
// records through the batch's own earlier writes, then the pending sets,
// then a bbolt read transaction, which it closes (done) before the batch
// is written: a read transaction held while the committer waits for a
// flush could block that flush's growing of bbolt's memory map.
type txState struct {
	s             *Store
	tx            *bolt.Tx
	kv            *bolt.Bucket
	cursor        *bolt.Cursor // kv's, made by the first lookup in the file (fileGet)
	active        *pendingSet
	frozen        *pendingSet
	staged        map[string]int // the batch's writes by key: index in puts
	l             uint64         // L as the batch advances it
	reserved      uint64
	reservedDirty bool
	last, first   uint64 // change-log indexes
	now           int64
	changes       []change
	puts          []stagedPut
	curs          []stored     // the records current returned (keep)
	purgeLog      bool         // the purge log has entries: applies check it
	lives         []lifeUpdate // deadlines the batch sets (ttl.go)
	anyTTLGone    bool         // a record with a TTL was replaced by one without

	lsn       uint64 // the batch's number, its place and size in the log
	pos, size int64  // (size 0: not in the log)
}

// stagedPut is one record the batch stores.
type stagedPut struct {
	index   uint64 // its change-log index
	key     string
	raw     []byte
	hash    Hash
	keyHash Hash
	meta    Record // raw decoded, without the value
	event   Event
	ev      []byte // event as the log stores it
}

// change is a stored record's effect on the digest tree and key count.
type change struct {
	keyHash  Hash
	was, now Hash // old and new record hash; zero when absent
	live     int  // -1, 0 or +1 live keys
}

// begin starts a batch: it takes the in-memory values, the pending sets
// and a bbolt read transaction, consistently (see internal/wal/overlay.go).
func (s *Store) begin() (*txState, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	tx, err := s.db.Begin(false)
	if err != nil {
		return nil, err
	}
	active, frozen := s.pend.Sets()
	return &txState{
		s: s, tx: tx, kv: tx.Bucket(bucketKV), active: active, frozen: frozen,
		l: s.Lamport(), reserved: s.reserved,
		last: s.lastIndex, first: s.firstIndex,
		now:      s.opts.Now().UnixMilli(),
		purgeLog: s.purgeLogN > 0,
	}, nil
}

// done closes the batch's read transaction.
func (st *txState) done() {
	if st.tx != nil {
		st.tx.Rollback()
		st.tx, st.cursor = nil, nil
	}
}

// fileGet is the key's record in the bbolt file (nil: none), as
// kv.Get([]byte(key)) has it, through one cursor for the whole batch:
// bbolt's Get makes a cursor per lookup and grows its stack, several
// allocations for every write not in the pending sets.
func (st *txState) fileGet(key string) []byte {
	if st.cursor == nil {
		st.cursor = st.kv.Cursor()
	}
	k, v := st.cursor.Seek([]byte(key))
	if v == nil || string(k) != key { // a nested bucket's value is nil
		return nil
	}
	return v
}

// stored is the record a write replaces.
type stored struct {
	meta Record // without Value
	raw  []byte // valid until done
	hash Hash
	own  bool // meta.VV was decoded for this lookup: the batch may change it
}

// keep returns a pointer to a copy of cur, from a block allocated for the
// batch rather than one allocation per lookup.
func (st *txState) keep(cur stored) *stored {
	if len(st.curs) == cap(st.curs) {
		st.curs = make([]stored, 0, max(8, 2*cap(st.curs))) // earlier pointers keep the old block alive
	}
	st.curs = append(st.curs, cur)
	return &st.curs[len(st.curs)-1]
}

// current reads the key's record as the batch sees it. nil: none.
func (st *txState) current(key string) (*stored, error) {
	if i, ok := st.staged[key]; ok {
		p := &st.puts[i]
		return st.keep(stored{meta: p.meta, raw: p.raw, hash: p.hash}), nil
	}
	var v []byte
	var h Hash
	if r := st.active.Rec(key); r != nil {
		v, h = r.Raw, r.Hash
	} else if r := st.frozen.Rec(key); r != nil {
		v, h = r.Raw, r.Hash
	} else if v = st.fileGet(key); v == nil {
		return nil, nil
	} else {
		h = hashBytes(v)
	}
	m, err := decodeMetaOf(key, v)
	if err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrCorrupt, key, err)
	}
	return st.keep(stored{meta: m, raw: v, hash: h, own: true}), nil
}

// do runs one request. Its own failures go to r.err; the error returned
// (a failure that is not the request's) aborts the whole batch.
func (st *txState) do(r *request) error {
	switch r.kind {
	case reqReserve:
		st.cover(r.reserve)
		return nil
	case reqApply:
		return st.apply(r)
	}
	return st.write(r)
}

func (st *txState) write(r *request) error {
	cur, err := st.current(r.key)
	if err != nil {
		r.err = err
		return nil
	}
	if r.ifVersion != nil {
		var v uint64
		if cur != nil && !cur.meta.Deleted && !st.s.expiredStored(cur) && !st.s.ephemeralGone(&cur.meta) {
			v = cur.meta.Lamport
		}
		if v != *r.ifVersion {
			r.err = &VersionError{Key: r.key, Want: *r.ifVersion, Current: v}
			return nil
		}
	}
	if r.ifSame != nil && (cur == nil || cur.hash != *r.ifSame) {
		r.err = fmt.Errorf("%w: %q no longer holds the record read", ErrChanged, r.key)
		return nil
	}
	self := st.s.nodeID
	vv := VV{}
	if cur != nil {
		vv = cur.meta.VV.normalized()
		if !cur.own && len(vv) == len(cur.meta.VV) { // else it is a copy already (normalized drops zeros into one)
			vv = vv.Clone()
		}
		// L is above every lamport stored, and validate keeps vv entries
		// at most their record's lamport, so vv[self] < L+1 already; a
		// file written before that check may break it, and a write must
		// dominate what it replaces whatever the file holds.
		st.l = max(st.l, vv[self])
	}
	l := st.tick()
	vv[self] = l
	rec := Record{
		Key: r.key, Value: r.value, Deleted: r.kind == reqDelete, VV: vv,
		Lamport: l, Origin: self, LWW: Stamp{Lamport: l, Origin: self}, At: st.now,
	}
	if rec.Deleted {
		rec.Value = nil
	} else {
		rec.TTL, rec.Left, rec.Ephemeral = r.ttl, r.ttl, r.ephemeral
	}
	r.res = ApplyResult{Outcome: Applied, Record: rec}
	r.raw = encodeRecord(&rec)
	r.hash = hashBytes(r.raw)
	return st.put(&rec, r.raw, r.hash, cur)
}

func (st *txState) apply(r *request) error {
	if st.purgeLog {
		covered, err := st.coveredByPurge(&r.rec)
		if err != nil {
			r.err = err
			return nil
		}
		if covered {
			r.res = ApplyResult{Outcome: Dropped}
			st.s.dropped.Add(1)
			if cur, err := st.current(r.key); err != nil {
				r.err = err
			} else if cur != nil {
				r.err = decodeStored(r.key, cur.raw, &r.res.Record)
			}
			return nil
		}
	}
	cur, err := st.current(r.key)
	if err != nil {
		r.err = err
		return nil
	}
	if cur == nil {
		r.res = ApplyResult{Outcome: Applied, Record: r.rec}
		return st.put(&r.rec, r.raw, r.hash, nil)
	}
	o := r.rec.VV.Compare(cur.meta.VV)
	if o == Same {
		o = tieBreak(&r.rec, r.hash, &cur.meta, cur.hash)
	}
	switch o {
	case Newer:
		r.res = ApplyResult{Outcome: Applied, Record: r.rec}
		return st.put(&r.rec, r.raw, r.hash, cur)
	case Older, Same:
		if o == Same {
			st.stageSame(&r.rec, cur.hash)
		}
		r.res.Outcome = Ignored
		r.err = decodeStored(r.key, cur.raw, &r.res.Record)
		return nil
	}
	var res Record
	if r.pre != nil && r.pre.cur == cur.hash {
		res = r.pre.rec
	} else {
		var full Record
		if r.err = decodeStored(r.key, cur.raw, &full); r.err != nil {
			return nil
		}
		st.s.fillLeft(&full, cur.hash)
		res = Resolve(r.key, &full, &r.rec, st.s.opts.Resolver)
	}
	r.res = ApplyResult{Outcome: Resolved, Record: res}
	raw := encodeRecord(&res)
	return st.put(&res, raw, hashBytes(raw), cur)
}

// put stages rec (encoded as raw, whose hash is h) over cur, and logs the
// change.
func (st *txState) put(rec *Record, raw []byte, h Hash, cur *stored) error {
	kh := KeyHash(rec.Key)
	c := change{keyHash: kh, now: h}
	if !rec.Deleted {
		c.live++
	}
	if cur != nil {
		c.was = cur.hash
		if !cur.meta.Deleted {
			c.live--
		}
	}
	st.cover(rec.Lamport)
	st.l = max(st.l, rec.Lamport)
	st.last++
	event := Event{Index: st.last, Op: opOf(rec), Key: rec.Key, Version: rec.Lamport, Origin: rec.Origin}
	// Sized for the event at once: op, key, version and origin with their heads.
	ev := appendEvent(make([]byte, 0, 40+len(rec.Key)), event.Op, event.Key, event.Version, event.Origin)
	meta := *rec
	meta.Value = nil
	st.puts = append(st.puts, stagedPut{
		index: st.last, key: rec.Key, raw: raw, hash: h, keyHash: kh,
		meta: meta, event: event, ev: ev,
	})
	st.staged[rec.Key] = len(st.puts) - 1
	st.changes = append(st.changes, c)
	st.stageLife(rec, h, cur)
	return nil
}

// finish advances the start of the change log past what it no longer
// keeps; the flush deletes those entries.
func (st *txState) finish() {
	if hist := uint64(st.s.opts.WatchHistory); st.last >= hist && st.first+hist <= st.last {
		st.first = st.last - hist + 1
	}
}

// walChanges returns the batch's changes as the log stores them.
func (st *txState) walChanges() []wal.Change {
	out := make([]wal.Change, len(st.puts))
	for i, p := range st.puts {
		out[i] = wal.Change{Index: p.index, Key: p.key, Raw: p.raw, Ev: p.ev}
	}
	return out
}
