package store

import (
	"context"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Outcome is what Apply did with a record.
type Outcome int

// Outcomes.
const (
	Applied  Outcome = iota + 1 // the record was newer and is stored as it is
	Ignored                     // it was older than or the same as the stored one
	Resolved                    // it was concurrent: a resolution of the two is stored
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case Ignored:
		return "ignored"
	case Resolved:
		return "resolved"
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
	if err := ValidateKey(key); err != nil {
		return Record{}, err
	}
	if len(value) > s.opts.MaxValueSize {
		return Record{}, fmt.Errorf("store: %w: %d bytes, the limit is %d", ErrTooLarge, len(value), s.opts.MaxValueSize)
	}
	r := &request{kind: reqSet, key: key, value: value, ifVersion: ifVersion}
	if err := s.submit(ctx, r); err != nil {
		return Record{}, err
	}
	return r.res.Record, nil
}

// Delete writes a tombstone for key, like Set. Deleting a missing (or
// deleted) key succeeds and writes a tombstone.
func (s *Store) Delete(ctx context.Context, key string, ifVersion *uint64) (Record, error) {
	if err := ValidateKey(key); err != nil {
		return Record{}, err
	}
	r := &request{kind: reqDelete, key: key, ifVersion: ifVersion}
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
func (s *Store) Apply(ctx context.Context, rec Record) (ApplyResult, error) {
	if err := s.validate(&rec); err != nil {
		return ApplyResult{}, err
	}
	s.Observe(rec.Lamport)
	r := &request{kind: reqApply, key: rec.Key, rec: rec, raw: encodeRecord(&rec)}
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

func (s *Store) validate(rec *Record) error {
	if err := ValidateKey(rec.Key); err != nil {
		return err
	}
	switch {
	case len(rec.Value) > s.opts.MaxValueSize:
		return fmt.Errorf("store: %w: %d bytes, the limit is %d", ErrTooLarge, len(rec.Value), s.opts.MaxValueSize)
	case rec.Lamport == 0 || rec.Lamport > MaxLamport:
		return fmt.Errorf("store: %w: %q has lamport %d", ErrBadRecord, rec.Key, rec.Lamport)
	case len(rec.VV.normalized()) == 0:
		return fmt.Errorf("store: %w: %q has an empty version vector", ErrBadRecord, rec.Key)
	case rec.Deleted && len(rec.Value) > 0:
		return fmt.Errorf("store: %w: %q is a tombstone with a value", ErrBadRecord, rec.Key)
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

// txState is a batch in progress: the values that change in memory only
// if the transaction commits.
type txState struct {
	s             *Store
	kv, kh, log   *bolt.Bucket
	meta          *bolt.Bucket
	l             uint64 // L as the batch advances it
	reserved      uint64
	reservedDirty bool
	last, first   uint64 // change-log indexes
	now           int64
	changes       []change
}

// change is a stored record's effect on the digest tree and key count.
type change struct {
	keyHash  Hash
	was, now Hash // old and new record hash; zero when absent
	live     int  // -1, 0 or +1 live keys
}

func (s *Store) begin() *txState {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &txState{
		s: s, l: s.Lamport(), reserved: s.reserved,
		last: s.lastIndex, first: s.firstIndex,
		now: s.opts.Now().UnixMilli(),
	}
}

func (st *txState) open(tx *bolt.Tx) {
	st.kv = tx.Bucket(bucketKV)
	st.kh = tx.Bucket(bucketKeyHash)
	st.log = tx.Bucket(bucketChanges)
	st.meta = tx.Bucket(bucketMeta)
}

// stored is the record a write replaces.
type stored struct {
	meta Record // without Value
	raw  []byte // valid during the transaction only
	hash Hash
}

// current reads the key's record in the transaction, which sees the
// batch's earlier writes. nil: none.
func (st *txState) current(key string) (*stored, error) {
	v := st.kv.Get([]byte(key))
	if v == nil {
		return nil, nil
	}
	m, err := decodeMeta(v)
	if err != nil {
		return nil, fmt.Errorf("store: %w: %q: %v", ErrCorrupt, key, err)
	}
	return &stored{meta: m, raw: v, hash: hashBytes(v)}, nil
}

// do runs one request. Its own failures go to r.err; the error returned
// (a failing bucket operation) aborts the whole transaction.
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
		if cur != nil && !cur.meta.Deleted {
			v = cur.meta.Lamport
		}
		if v != *r.ifVersion {
			r.err = &VersionError{Key: r.key, Want: *r.ifVersion, Current: v}
			return nil
		}
	}
	l, self := st.tick(), st.s.nodeID
	vv := VV{}
	if cur != nil {
		vv = cur.meta.VV.normalized().Clone()
	}
	vv[self] = l
	rec := Record{
		Key: r.key, Value: r.value, Deleted: r.kind == reqDelete, VV: vv,
		Lamport: l, Origin: self, LWW: Stamp{Lamport: l, Origin: self}, At: st.now,
	}
	if rec.Deleted {
		rec.Value = nil
	}
	r.res = ApplyResult{Outcome: Applied, Record: rec}
	return st.put(&rec, encodeRecord(&rec), cur)
}

func (st *txState) apply(r *request) error {
	cur, err := st.current(r.key)
	if err != nil {
		r.err = err
		return nil
	}
	if cur == nil {
		r.res = ApplyResult{Outcome: Applied, Record: r.rec}
		return st.put(&r.rec, r.raw, nil)
	}
	o := r.rec.VV.Compare(cur.meta.VV)
	if o == Same {
		o = tieBreak(&r.rec, hashBytes(r.raw), &cur.meta, cur.hash)
	}
	switch o {
	case Newer:
		r.res = ApplyResult{Outcome: Applied, Record: r.rec}
		return st.put(&r.rec, r.raw, cur)
	case Older, Same:
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
		res = Resolve(r.key, &full, &r.rec, st.s.opts.Resolver)
	}
	r.res = ApplyResult{Outcome: Resolved, Record: res}
	return st.put(&res, encodeRecord(&res), cur)
}

// put stores rec (encoded as raw) over cur, and logs the change.
func (st *txState) put(rec *Record, raw []byte, cur *stored) error {
	kh, h := KeyHash(rec.Key), hashBytes(raw)
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
	ev, err := encMode.Marshal(eventWire{Op: opOf(rec), Key: rec.Key, Version: rec.Lamport, Origin: rec.Origin})
	if err != nil {
		return err
	}
	if err := st.kv.Put([]byte(rec.Key), raw); err != nil {
		return err
	}
	if err := st.kh.Put(keyHashKey(kh, rec.Key), h[:]); err != nil {
		return err
	}
	if err := st.log.Put(u64(st.last), ev); err != nil {
		return err
	}
	st.changes = append(st.changes, c)
	return nil
}

// finish persists the batch's meta values and trims the change log.
func (st *txState) finish() error {
	if st.reservedDirty {
		if err := st.meta.Put(metaReserved, u64(st.reserved)); err != nil {
			return err
		}
	}
	if len(st.changes) == 0 {
		return nil
	}
	if err := st.meta.Put(metaLast, u64(st.last)); err != nil {
		return err
	}
	for hist := uint64(st.s.opts.WatchHistory); st.first+hist <= st.last; st.first++ {
		if err := st.log.Delete(binary.BigEndian.AppendUint64(nil, st.first)); err != nil {
			return err
		}
	}
	return nil
}
