package store

import (
	"context"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cloudknowledge/ck/internal/limits"
)

// Tombstones and the purge log (docs/PROTOCOL.md). A tombstone is purged at
// At + TombstoneTTL; At is the deleting node's clock at the delete, so
// every node purges the same tombstone at about the same time. Until the
// purger gets to it an expired tombstone stays in the file and the digest
// tree, but reads (Get, Scan) no longer return it, so it is never sent to
// a peer, and Apply never stores one.
//
// Purging leaves the tombstone itself in the purge log (key hash ‖ key →
// the tombstone's record) until At + TombstoneTTL + PurgeLogTTL. A record
// received later whose version vector the entry's covers (equal or
// dominated) is the deleted value coming back from a node that was away:
// Apply drops it (Dropped). The entry also answers such a node: the
// cluster sends it the entry (PurgedRecords) as an expired tombstone, and
// Apply of an expired tombstone removes the record it covers and logs it
// in the purge log, so that node converges too instead of offering its
// old value on every sync.
//
// Purges are rare and batched, so they bypass the write-ahead log: the
// purger holds the commit lock, flushes what is pending, and purges in one
// bbolt transaction (as commitDirect does), then updates the digest tree.
// Tombstones are found by age through an index, bucketTombs, that every
// flush keeps (writePending).

var (
	bucketTombs  = []byte("tombs")  // At (ms, big endian) ‖ key → nothing: tombstones by age
	bucketPurged = []byte("purged") // KeyHash(key) ‖ key → the purged tombstone (canonical CBOR)
)

const (
	// DefaultPurgeLogTTL is Options.PurgeLogTTL when TombstoneTTL is set
	// and PurgeLogTTL is not.
	DefaultPurgeLogTTL = limits.DefaultPurgeLogTTL
	// purgeMaxEvery bounds how long an expired tombstone waits for the
	// purger (shorter with a short TombstoneTTL).
	purgeMaxEvery = time.Minute
	// purgeBatch bounds the tombstones one purge transaction removes.
	purgeBatch = 10000
)

// purgeEvery is how often the purger looks for expired tombstones.
func (o Options) purgeEvery() time.Duration {
	return max(min(o.TombstoneTTL/8, purgeMaxEvery), time.Millisecond)
}

// tombKey is a tombstone's entry in bucketTombs.
func tombKey(at int64, key string) []byte {
	b := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(key)), uint64(max(at, 0)))
	return append(b, key...)
}

// Expired reports whether rec is a tombstone past its TombstoneTTL, or a
// record with a TTL past its At + TTL + TombstoneTTL: one to purge, by
// every node alike (never, when the store purges nothing).
func (s *Store) Expired(rec *Record) bool {
	return s.expiredAt(rec, s.opts.Now().UnixMilli())
}

func (s *Store) expiredAt(rec *Record, nowMs int64) bool {
	ttl := s.opts.TombstoneTTL.Milliseconds()
	return ttl > 0 && (rec.Deleted || rec.TTL > 0) && nowMs-ttl >= rec.At+max(rec.TTL, 0)
}

// hide reports whether a read should leave rec out: an expired tombstone,
// which it also asks the purger to purge, or a record past its deadline
// here (ttl.go). It sets a live record's Left.
func (s *Store) hide(rec *Record) bool {
	if s.Expired(rec) {
		s.kickPurge()
		return true
	}
	if s.ephemeralGone(rec) {
		return true
	}
	if rec.TTL > 0 {
		return !s.fillLeft(rec, rec.Hash())
	}
	return false
}

// purger is the purging goroutine's own state: its queue of expired
// tombstones Apply hands it, its wake-ups and its pass lock.
type purger struct {
	pass      sync.Mutex    // held over a purge pass
	lastPrune time.Time     // when the purge log was last pruned; under pass
	mu        sync.Mutex    // guards q
	q         []*purgeReq   // expired tombstones Apply hands to the purger
	kick      chan struct{} // asks for a pass now
	stop      chan struct{} // closed by Close: the purger exits
	done      chan struct{} // closed when the purger has exited
}

func newPurger() *purger {
	return &purger{kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// enqueue hands r to the purger and wakes it.
func (p *purger) enqueue(r *purgeReq) {
	p.mu.Lock()
	p.q = append(p.q, r)
	p.mu.Unlock()
	p.wake()
}

// take empties the queue.
func (p *purger) take() []*purgeReq {
	p.mu.Lock()
	defer p.mu.Unlock()
	q := p.q
	p.q = nil
	return q
}

func (p *purger) wake() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// halt makes the purger exit and waits for it.
func (p *purger) halt() {
	close(p.stop)
	<-p.done
}

func (s *Store) kickPurge() { s.purger.wake() }

// purgeReq is an expired tombstone Apply hands to the purger.
type purgeReq struct {
	rec  Record
	err  error
	done chan struct{}
}

// applyExpired is Apply of an expired tombstone: the purger removes the
// record it covers, if any, and logs it in the purge log. It is never
// stored.
func (s *Store) applyExpired(ctx context.Context, rec Record) (ApplyResult, error) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ApplyResult{}, ErrClosed
	}
	s.inflight.Add(1)
	s.mu.RUnlock()
	defer s.inflight.Done()
	rec.Value = nil
	r := &purgeReq{rec: rec, done: make(chan struct{})}
	s.purger.enqueue(r)
	select {
	case <-r.done:
	case <-ctx.Done():
		return ApplyResult{}, ctx.Err()
	}
	if r.err != nil {
		return ApplyResult{}, r.err
	}
	s.dropped.Add(1)
	cur, _, err := s.Get(rec.Key)
	return ApplyResult{Outcome: Dropped, Record: cur}, err
}

// runPurger is the purger goroutine; it returns when Close halts it.
func (s *Store) runPurger() {
	defer close(s.purger.done)
	if s.opts.TombstoneTTL <= 0 {
		<-s.purger.stop // nothing expires, so nothing is ever queued
		return
	}
	t := time.NewTicker(s.opts.purgeEvery())
	defer t.Stop()
	for {
		select {
		case <-s.purger.kick:
		case <-t.C:
		case <-s.purger.stop:
			return
		}
		if err := s.purgePass(); err != nil && err != ErrClosed {
			s.log.Warn("purging tombstones failed; trying again later", "error", err)
		}
	}
}

// Purge runs a purge pass now: expired tombstones go to the purge log,
// and entries past PurgeLogTTL leave it. The purger does this by itself;
// Purge is for tests and tools. It returns how many tombstones it purged.
func (s *Store) Purge() (int, error) {
	// Tombstones committed but not flushed are not in the index yet; the
	// purger gets to them after the next flush.
	if err := s.flushAll(); err != nil {
		return 0, err
	}
	before := s.purged.Load()
	err := s.purgePass()
	return int(s.purged.Load() - before), err
}

// purgePass is one pass of the purger. Passes run one at a time.
func (s *Store) purgePass() error {
	s.purger.pass.Lock()
	defer s.purger.pass.Unlock()
	q := s.purger.take()
	fail := func(err error) error {
		for _, r := range q {
			r.err = err
			close(r.done)
		}
		return err
	}
	now := s.opts.Now()
	nowMs := now.UnixMilli()
	cutoff := nowMs - s.opts.TombstoneTTL.Milliseconds()
	expiring, err := s.anyExpired(cutoff)
	if err != nil {
		return fail(err)
	}
	s.mu.RLock()
	prune := s.purgeLogN > 0 && now.Sub(s.purger.lastPrune) >= min(time.Hour, max(s.opts.PurgeLogTTL/8, time.Millisecond))
	s.mu.RUnlock()
	if !expiring && !prune && len(q) == 0 {
		return nil
	}

	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	// Everything pending into the file first: the purge reads and
	// changes the file alone, and no commit runs meanwhile.
	if err := s.flushAll(); err != nil {
		return fail(err)
	}
	s.mu.RLock()
	p := &purgeTx{s: s, last: s.lastIndex, logN: s.purgeLogN}
	s.mu.RUnlock()
	for more := true; more; {
		p.changes, p.events, p.removed, p.ttlGone = nil, 0, 0, nil
		err = s.db.Update(func(tx *bolt.Tx) error {
			p.bind(tx)
			for _, r := range q {
				if err := p.applyExpired(&r.rec); err != nil {
					return err
				}
			}
			if expiring {
				var err error
				if more, err = p.expire(cutoff); err != nil {
					return err
				}
			} else {
				more = false
			}
			if prune {
				if err := p.prune(nowMs); err != nil {
					return err
				}
			}
			if p.events > 0 {
				return tx.Bucket(bucketMeta).Put(metaLast, u64(p.last))
			}
			return nil
		})
		if err != nil {
			err = s.commitError(err, len(q))
			return fail(err)
		}
		s.publishPurge(p, prune, now)
		for _, r := range q { // served by the first transaction
			close(r.done)
		}
		q, prune = nil, false
	}
	return nil
}

// anyExpired reports whether the index holds a tombstone at or before
// cutoff (or any at all whose record it must check).
func (s *Store) anyExpired(cutoff int64) (found bool, err error) {
	if s.opts.TombstoneTTL <= 0 {
		return false, nil
	}
	err = s.read(nil, func(tx *bolt.Tx) error {
		k, _ := tx.Bucket(bucketTombs).Cursor().First()
		found = len(k) >= 8 && int64(binary.BigEndian.Uint64(k)) <= cutoff
		return nil
	})
	return found, err
}

// publishPurge applies a purge transaction to the in-memory state.
func (s *Store) publishPurge(p *purgeTx, pruned bool, now time.Time) {
	s.mu.Lock()
	for _, c := range p.changes {
		s.dig.update(c.keyHash, c.was, c.now)
		s.keys = uint64(int64(s.keys) + int64(c.live))
	}
	s.purgeLogN = p.logN
	if len(p.ttlGone) > 0 {
		s.lifes.mu.Lock()
		for _, g := range p.ttlGone {
			s.lifes.drop(g.key, g.hash)
		}
		s.lifes.mu.Unlock()
	}
	if pruned {
		s.purger.lastPrune = now
	}
	if len(p.changes) > 0 {
		s.dig.computeRoot()
	}
	if p.events > 0 {
		s.lastIndex = p.last
		close(s.notify)
		s.notify = make(chan struct{})
	}
	s.mu.Unlock()
	s.purged.Add(uint64(p.removed))
}

// purgeTx is a purge in progress, in one bbolt write transaction.
type purgeTx struct {
	s                        *Store
	tx                       *bolt.Tx
	kv, kh, tombs, log, purg *bolt.Bucket
	ttls                     *bolt.Bucket // the deadlines (ttl.go)
	ttlGone                  []lifeUpdate // records with a TTL purged
	last                     uint64       // the change log's last index
	logN                     int64        // purge-log entries
	changes                  []change
	events                   int // change-log entries written
	removed                  int // expired tombstones purged
}

func (p *purgeTx) bind(tx *bolt.Tx) {
	p.tx = tx
	p.kv, p.kh, p.tombs = tx.Bucket(bucketKV), tx.Bucket(bucketKeyHash), tx.Bucket(bucketTombs)
	p.log, p.purg, p.ttls = tx.Bucket(bucketChanges), tx.Bucket(bucketPurged), tx.Bucket(bucketTTL)
}

// expire purges up to purgeBatch tombstones at or before cutoff; more
// reports that there may be others.
func (p *purgeTx) expire(cutoff int64) (more bool, err error) {
	var keys [][]byte
	c := p.tombs.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) < 8 || int64(binary.BigEndian.Uint64(k)) > cutoff {
			break
		}
		if len(keys) == purgeBatch {
			more = true
			break
		}
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, tk := range keys {
		at, key := int64(binary.BigEndian.Uint64(tk)), string(tk[8:])
		raw := p.kv.Get([]byte(key))
		var cur Record
		if raw != nil {
			if cur, err = decodeMeta(raw); err != nil {
				return false, fmt.Errorf("%w: %q: %v", ErrCorrupt, key, err)
			}
		}
		if raw == nil || !(tombHead{Deleted: cur.Deleted, TTL: cur.TTL}).indexed() || max(cur.At+max(cur.TTL, 0), 0) != at {
			// Not the tombstone it indexes (the index is kept exact by
			// every flush; this is repair, not routine).
			if err := p.tombs.Delete(tk); err != nil {
				return false, err
			}
			continue
		}
		cur.Key = key
		if err := p.remove(key, raw, &cur); err != nil {
			return false, err
		}
		if err := p.logPurged(&cur); err != nil {
			return false, err
		}
		p.removed++
	}
	return more, nil
}

// applyExpired removes the record an expired tombstone covers, if any,
// and logs the tombstone.
func (p *purgeTx) applyExpired(rec *Record) error {
	if raw := p.kv.Get([]byte(rec.Key)); raw != nil {
		cur, err := decodeMeta(raw)
		if err != nil {
			return fmt.Errorf("%w: %q: %v", ErrCorrupt, rec.Key, err)
		}
		if o := rec.VV.Compare(cur.VV); o == Newer || o == Same {
			cur.Key = rec.Key
			if err := p.remove(rec.Key, raw, &cur); err != nil {
				return err
			}
		}
	}
	return p.logPurged(rec)
}

// remove deletes key's record cur (encoded as raw) from the file; a value
// removed is a delete watchers see.
func (p *purgeTx) remove(key string, raw []byte, cur *Record) error {
	kh := KeyHash(key)
	c := change{keyHash: kh, was: hashBytes(raw)}
	if err := p.kv.Delete([]byte(key)); err != nil {
		return err
	}
	if err := p.kh.Delete(keyHashKey(kh, key)); err != nil {
		return err
	}
	if err := unstage(p.tx, kh, key); err != nil { // a bulk load's entry (bulk.go)
		return err
	}
	if cur.Deleted || cur.TTL > 0 {
		if err := p.tombs.Delete(tombKey(cur.At+max(cur.TTL, 0), key)); err != nil {
			return err
		}
	}
	if cur.TTL > 0 && !cur.Deleted {
		// Expired for a tombstone TTL already: its expire event is long
		// logged, and readers have not seen it since (ttl.go).
		c.live = -1
		if err := p.ttls.Delete([]byte(key)); err != nil {
			return err
		}
		p.ttlGone = append(p.ttlGone, lifeUpdate{key: key, hash: c.was})
	} else if !cur.Deleted {
		c.live = -1
		p.last++
		p.events++
		ev := appendEvent(nil, OpDel, key, cur.Lamport, cur.Origin)
		if err := p.log.Put(u64(p.last), ev); err != nil {
			return err
		}
	}
	p.changes = append(p.changes, c)
	return nil
}

// logPurged puts a purged tombstone in the purge log, merged with the
// entry already there: the log keeps, per key, a tombstone whose version
// vector covers every purged one's.
func (p *purgeTx) logPurged(rec *Record) error {
	k := keyHashKey(KeyHash(rec.Key), rec.Key)
	ent := *rec
	// A purged record with a TTL is logged as a tombstone with its At and
	// TTL: it expires, and leaves the log, at At + TTL + the TTLs.
	ent.Value, ent.Deleted, ent.Left = nil, true, 0
	if old := p.purg.Get(k); old != nil {
		prev, err := decodeMeta(old)
		if err != nil {
			return fmt.Errorf("%w: purge log %q: %v", ErrCorrupt, rec.Key, err)
		}
		switch rec.VV.Compare(prev.VV) {
		case Older, Same:
			return nil
		case Concurrent:
			ent.VV = prev.VV.Merge(rec.VV)
			ent.At = max(prev.At+prev.TTL, rec.At+rec.TTL)
			ent.TTL = 0
			ent.Lamport = max(prev.Lamport, rec.Lamport)
		}
	} else {
		p.logN++
	}
	ent.Key = rec.Key
	return p.purg.Put(k, encodeRecord(&ent))
}

// prune drops purge-log entries past At + TombstoneTTL + PurgeLogTTL.
func (p *purgeTx) prune(nowMs int64) error {
	keep := (p.s.opts.TombstoneTTL + p.s.opts.PurgeLogTTL).Milliseconds()
	var old [][]byte
	err := p.purg.ForEach(func(k, v []byte) error {
		rec, err := decodeMeta(v)
		if err != nil {
			return fmt.Errorf("%w: purge log %x: %v", ErrCorrupt, k, err)
		}
		if nowMs-keep >= rec.At+max(rec.TTL, 0) {
			old = append(old, append([]byte(nil), k...))
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, k := range old {
		if err := p.purg.Delete(k); err != nil {
			return err
		}
		p.logN--
	}
	return nil
}

// coveredByPurge reports whether a received record is a deleted value
// coming back: a purge-log entry of its key covers its version vector.
func (st *txState) coveredByPurge(rec *Record) (bool, error) {
	b := st.tx.Bucket(bucketPurged)
	raw := b.Get(keyHashKey(KeyHash(rec.Key), rec.Key))
	if raw == nil {
		return false, nil
	}
	ent, err := decodeMeta(raw)
	if err != nil {
		return false, fmt.Errorf("%w: purge log %q: %v", ErrCorrupt, rec.Key, err)
	}
	o := rec.VV.Compare(ent.VV)
	return o == Older || o == Same, nil
}

// PurgedRecords returns the purge log's entries for a key hash: purged
// tombstones, each with a version vector covering everything the key had
// when it was purged. The cluster offers them to a peer that holds a
// record this node lacks under that key hash (see Apply).
func (s *Store) PurgedRecords(kh Hash) ([]Record, error) {
	s.mu.RLock()
	n := s.purgeLogN
	s.mu.RUnlock()
	if n == 0 {
		return nil, nil
	}
	var out []Record
	err := s.read(nil, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketPurged).Cursor()
		for k, v := c.Seek(kh[:]); k != nil && len(k) > len(kh) && Hash(k[:len(kh)]) == kh; k, v = c.Next() {
			var rec Record
			if err := decodeStored(string(k[len(kh):]), v, &rec); err != nil {
				return err
			}
			out = append(out, rec)
		}
		return nil
	})
	return out, err
}

// ScanPurged calls fn with every entry of the purge log (a purged
// tombstone), in key-hash order. It reads the log in one read transaction
// and calls fn after it ends.
func (s *Store) ScanPurged(fn func(Record) error) error {
	var recs []Record
	err := s.read(nil, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPurged).ForEach(func(k, v []byte) error {
			var rec Record
			if len(k) <= len(Hash{}) {
				return fmt.Errorf("%w: purge log entry %x", ErrCorrupt, k)
			}
			if err := decodeStored(string(k[len(Hash{}):]), v, &rec); err != nil {
				return err
			}
			recs = append(recs, rec)
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, rec := range recs {
		if err := fn(rec); err != nil {
			return err
		}
	}
	return nil
}

// PurgeLogLen returns the number of entries in the purge log.
func (s *Store) PurgeLogLen() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return int(s.purgeLogN)
}

// countPurgeLog counts the purge log's entries (Open).
func countPurgeLog(tx *bolt.Tx) int64 {
	return int64(tx.Bucket(bucketPurged).Stats().KeyN)
}

// indexTombstones fills bucketTombs from the records (upgrading a file of
// format 1 or 2, which had no such index).
func indexTombstones(tx *bolt.Tx) error {
	tombs := tx.Bucket(bucketTombs)
	return tx.Bucket(bucketKV).ForEach(func(k, v []byte) error {
		rec, err := decodeMeta(v)
		if err != nil {
			return fmt.Errorf("%w: record %q: %v", ErrCorrupt, k, err)
		}
		if !rec.Deleted && rec.TTL <= 0 {
			return nil
		}
		return tombs.Put(tombKey(rec.At+max(rec.TTL, 0), string(k)), nil)
	})
}
