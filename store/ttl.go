package store

import (
	"container/heap"
	"encoding/binary"
	"fmt"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Expiring keys (docs/ARCHITECTURE.md, "Expiring and ephemeral keys").
//
// A record's TTL is part of its bytes; its expiry is not. Each node keeps,
// per record with a TTL, a local deadline on its own monotonic clock: at
// the origin now + TTL, at a receiver now + the lifetime the sender said
// was left (Record.Left), and never later than a deadline it already holds
// for the same record. A record past its deadline is hidden from every
// read at once; nothing about it changes — no bytes, no hash, no digest —
// so an expiry makes no conflict and no anti-entropy traffic, and every
// node holds the same record whether or not it has expired there yet.
//
// The expirer (runExpirer) logs an OpExpire event when a deadline passes
// and persists the deadlines, in bucket ttl, so that a restart keeps them
// (the time the node was down counts, by its wall clock). The record
// itself leaves the file like a tombstone, at At + TTL + TombstoneTTL
// (purge.go), into the purge log.

var bucketTTL = []byte("ttl") // key → record hash (16) ‖ deadline, unix ms (8) ‖ expire logged (1)

const (
	// MinTTL is the shortest TTL a local write may have.
	MinTTL = time.Second
	// noPurgeMaxTTL bounds a TTL when tombstones are never purged.
	noPurgeMaxTTL = 100 * 365 * 24 * time.Hour
	// expireEvery spaces the expirer's passes: reads hide an expired
	// record at once, the event may follow by this much.
	expireEvery = 100 * time.Millisecond
	// persistEvery is how often changed deadlines are written to the file.
	persistEvery = time.Second
)

// MaxTTL returns the longest TTL this store accepts: the tombstone TTL, so
// that an expired record is purged with the same guarantees as a delete.
func (s *Store) MaxTTL() time.Duration {
	if s.opts.TombstoneTTL > 0 {
		return s.opts.TombstoneTTL
	}
	return noPurgeMaxTTL
}

// checkTTL checks a local write's TTL.
func (s *Store) checkTTL(ttl time.Duration) error {
	if ttl == 0 {
		return nil
	}
	if ttl < MinTTL || ttl > s.MaxTTL() {
		return fmt.Errorf("%w: ttl %s is not within %s..%s", ErrBadTTL, ttl, MinTTL, s.MaxTTL())
	}
	return nil
}

// life is the local deadline of a key's current record with a TTL.
type life struct {
	hash     Hash
	deadline int64 // ns on the store's clock (lifetimes.since)
	logged   bool  // its expire event is in the change log
}

// dueItem is a deadline in the expirer's heap; stale items (the key's
// life changed since) are skipped when they come up.
type dueItem struct {
	deadline int64
	key      string
	hash     Hash
}

type dueHeap []dueItem

func (h dueHeap) Len() int           { return len(h) }
func (h dueHeap) Less(i, j int) bool { return h[i].deadline < h[j].deadline }
func (h dueHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *dueHeap) Push(x any)        { *h = append(*h, x.(dueItem)) }
func (h *dueHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

// lifetimes holds the deadlines of the records with a TTL.
type lifetimes struct {
	base   time.Time // the store's Now at Open: deadlines are offsets from it (monotonic when Now is)
	baseMs int64     // base as unix ms, to persist deadlines as wall-clock times
	// persist is held over a write of bucket ttl and the in-memory change
	// it records (expirePass, persistLives): a snapshot of the deadlines
	// taken by one is never written over the other's newer one.
	persist sync.Mutex
	mu      sync.Mutex
	m       map[string]life
	due     dueHeap
	dirty   map[string]bool // keys whose entry in bucket ttl is out of date
	kick    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

func newLifetimes(now time.Time) *lifetimes {
	return &lifetimes{
		base: now, baseMs: now.UnixMilli(), m: map[string]life{}, dirty: map[string]bool{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{}),
	}
}

// clock returns the store's time as ns since Open.
func (s *Store) clock() int64 { return int64(s.opts.Now().Sub(s.lifes.base)) }

func (l *lifetimes) wake() {
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// set records deadline for key's record hash h; for the record it already
// holds a deadline for, it keeps the earlier one. The caller holds l.mu.
func (l *lifetimes) set(key string, h Hash, deadline int64) {
	cur, ok := l.m[key]
	if ok && cur.hash == h {
		if cur.deadline <= deadline {
			return
		}
		cur.deadline = deadline
	} else {
		cur = life{hash: h, deadline: deadline}
	}
	l.m[key] = cur
	l.dirty[key] = true
	heap.Push(&l.due, dueItem{deadline: deadline, key: key, hash: h})
}

// drop forgets key's deadline (its record has no TTL any more, or is
// purged); h zero drops whatever is there. The caller holds l.mu.
func (l *lifetimes) drop(key string, h Hash) {
	if cur, ok := l.m[key]; ok && (h == Hash{} || cur.hash == h) {
		delete(l.m, key)
		l.dirty[key] = true
	}
}

// left returns the ms of life key's record hash h has left at now (0:
// expired), and false when no deadline is known for it: a read racing a
// write, which treats it as not expired.
func (l *lifetimes) left(key string, h Hash, now int64) (int64, bool) {
	l.mu.Lock()
	cur, ok := l.m[key]
	l.mu.Unlock()
	if !ok || cur.hash != h {
		return 0, false
	}
	return max(0, (cur.deadline-now+int64(time.Millisecond)-1)/int64(time.Millisecond)), true
}

// lifeUpdate is a deadline a commit sets: a stored record's, or a lower
// one for the record already held (the same record received again).
type lifeUpdate struct {
	key  string
	hash Hash
	ttl  int64 // the record's TTL, ms (0: none: the key's deadline goes)
	left int64 // ms
}

// publishLives applies a committed batch's deadlines. The caller holds s.mu,
// so a read sees the record and its deadline together.
func (s *Store) publishLives(st *txState) {
	if len(st.lives) == 0 && !st.anyTTLGone {
		return
	}
	now := s.clock()
	l := s.lifes
	l.mu.Lock()
	for _, u := range st.lives {
		if u.ttl == 0 {
			l.drop(u.key, Hash{})
			continue
		}
		left := min(max(u.left, 0), u.ttl)
		l.set(u.key, u.hash, now+left*int64(time.Millisecond))
	}
	l.mu.Unlock()
	l.wake()
}

// dropLives forgets the deadlines of us, published for records whose
// commit then failed.
func (s *Store) dropLives(us []lifeUpdate) {
	l := s.lifes
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, u := range us {
		l.drop(u.key, u.hash)
	}
}

// stageLife notes the deadline change of a record a batch stores over
// cur (nil: none).
func (st *txState) stageLife(rec *Record, h Hash, cur *stored) {
	switch {
	case rec.TTL > 0 && !rec.Deleted:
		st.lives = append(st.lives, lifeUpdate{key: rec.Key, hash: h, ttl: rec.TTL, left: rec.Left})
	case cur != nil && cur.meta.TTL > 0:
		st.lives = append(st.lives, lifeUpdate{key: rec.Key})
		st.anyTTLGone = true
	}
}

// stageSame notes that a batch received again the record it holds (hash
// h): the sender's remaining lifetime may lower the deadline.
func (st *txState) stageSame(rec *Record, h Hash) {
	if rec.TTL > 0 && !rec.Deleted {
		st.lives = append(st.lives, lifeUpdate{key: rec.Key, hash: h, ttl: rec.TTL, left: rec.Left})
	}
}

// fillLeft sets rec.Left from key's deadline; hash is the record's. It
// reports false when the record has expired here. A record without a
// TTL is always live.
func (s *Store) fillLeft(rec *Record, hash Hash) bool {
	if rec.TTL <= 0 || rec.Deleted {
		return true
	}
	left, ok := s.lifes.left(rec.Key, hash, s.clock())
	if !ok {
		left = rec.TTL // no deadline known yet: see lifetimes.left
	}
	rec.Left = left
	return left > 0
}

// expiredStored reports whether a stored record (a write's current one)
// has expired here.
func (s *Store) expiredStored(cur *stored) bool {
	if cur == nil || cur.meta.TTL <= 0 || cur.meta.Deleted {
		return false
	}
	left, ok := s.lifes.left(cur.meta.Key, cur.hash, s.clock())
	return ok && left == 0
}

// restoreLives loads the deadlines at Open: recs are the current records
// with a TTL (key → head and hash). A persisted deadline is a wall-clock
// time, so the time the node was down counts; it is never more than the
// TTL from now (a clock set back). A record whose deadline was not yet
// persisted when the node stopped — written or received in the second
// before a crash — gets At + TTL by this node's wall clock, within 0..TTL
// from now: exact for its own writes (At is this node's clock), the
// origin's clock for others' — the one place an origin's clock is used,
// and only after a crash.
func (s *Store) restoreLives(tx *bolt.Tx, recs map[string]ttlHead) error {
	now := s.opts.Now()
	nowMs := now.UnixMilli()
	l := s.lifes
	l.mu.Lock()
	defer l.mu.Unlock()
	b := tx.Bucket(bucketTTL)
	err := b.ForEach(func(k, v []byte) error {
		key := string(k)
		r, ok := recs[key]
		if len(v) != 25 || !ok || Hash(v[:16]) != r.hash {
			l.dirty[key] = true // stale: removed at the next persist
			return nil
		}
		delete(recs, key)
		wall := min(int64(binary.BigEndian.Uint64(v[16:24])), nowMs+r.ttl)
		l.m[key] = life{hash: r.hash, deadline: (wall - l.baseMs) * int64(time.Millisecond), logged: v[24] == 1}
		heap.Push(&l.due, dueItem{deadline: l.m[key].deadline, key: key, hash: r.hash})
		return nil
	})
	if err != nil {
		return err
	}
	for key, r := range recs {
		l.restore(key, r, nowMs)
	}
	return nil
}

// restore gives key's record r, whose deadline was not persisted, At +
// TTL by this node's wall clock (nowMs), within 0..TTL from now
// (restoreLives). The caller holds l.mu.
func (l *lifetimes) restore(key string, r ttlHead, nowMs int64) {
	left := min(max(r.at+r.ttl-nowMs, 0), r.ttl)
	l.m[key] = life{hash: r.hash, deadline: (nowMs + left - l.baseMs) * int64(time.Millisecond)}
	heap.Push(&l.due, dueItem{deadline: l.m[key].deadline, key: key, hash: r.hash})
	l.dirty[key] = true
}

// ttlHead is what restoreLives needs of a stored record with a TTL.
type ttlHead struct {
	hash    Hash
	at, ttl int64
}

// runExpirer is the expirer goroutine; it returns when Close stops it.
func (s *Store) runExpirer() {
	l := s.lifes
	defer close(l.done)
	var lastPersist time.Time
	for {
		wait := persistEvery
		l.mu.Lock()
		if n, ok := l.nextDue(); ok {
			wait = min(wait, max(time.Duration(n-s.clock()), expireEvery))
		}
		l.mu.Unlock()
		t := time.NewTimer(wait)
		select {
		case <-l.kick:
		case <-t.C:
		case <-l.stop:
			t.Stop()
			return
		}
		t.Stop()
		err := s.expirePass()
		if err == nil && time.Since(lastPersist) >= persistEvery {
			lastPersist = time.Now()
			err = s.persistLives()
		}
		if err != nil && err != ErrClosed {
			s.log.Warn("expiring keys failed; trying again later", "error", err)
		}
	}
}

// nextDue returns the earliest deadline whose expire event is not logged,
// dropping stale heap items. The caller holds l.mu.
func (l *lifetimes) nextDue() (int64, bool) {
	for len(l.due) > 0 {
		it := l.due[0]
		if cur, ok := l.m[it.key]; ok && cur.hash == it.hash && cur.deadline == it.deadline && !cur.logged {
			return it.deadline, true
		}
		heap.Pop(&l.due)
	}
	return 0, false
}

// takeDue pops the deadlines passed at now whose event is not logged.
func (l *lifetimes) takeDue(now int64) []dueItem {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []dueItem
	for {
		d, ok := l.nextDue()
		if !ok || d > now {
			return out
		}
		out = append(out, heap.Pop(&l.due).(dueItem))
	}
}

// expirePass logs an OpExpire event for every record whose deadline has
// passed. Like a purge it bypasses the write-ahead log (expiries come in
// bursts and are batched): it holds the commit lock, flushes what is
// pending, and writes the events and the deadlines in one transaction.
func (s *Store) expirePass() error {
	// Held from before the due deadlines are taken, so that a pass (the
	// expirer's, or Expire's) that finds nothing due returns only once a
	// pass that took them has logged them.
	s.lifes.persist.Lock()
	defer s.lifes.persist.Unlock()
	due := s.lifes.takeDue(s.clock())
	if len(due) == 0 {
		return nil
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	requeue := func(err error) error {
		s.lifes.mu.Lock()
		for _, it := range due {
			heap.Push(&s.lifes.due, it)
		}
		s.lifes.mu.Unlock()
		return err
	}
	if err := s.flushAll(); err != nil {
		return requeue(err)
	}
	s.mu.RLock()
	start := s.lastIndex
	s.mu.RUnlock()
	last := start
	var logged []dueItem
	err := s.db.Update(func(tx *bolt.Tx) error {
		kv, log, ttls := tx.Bucket(bucketKV), tx.Bucket(bucketChanges), tx.Bucket(bucketTTL)
		logged, last = logged[:0], start
		for _, it := range due {
			raw := kv.Get([]byte(it.key))
			if raw == nil || hashBytes(raw) != it.hash {
				continue // replaced meanwhile
			}
			m, err := decodeMeta(raw)
			if err != nil {
				return fmt.Errorf("%w: %q: %v", ErrCorrupt, it.key, err)
			}
			last++
			if err := log.Put(u64(last), appendEvent(nil, OpExpire, it.key, m.Lamport, m.Origin)); err != nil {
				return err
			}
			wall := s.lifes.baseMs + it.deadline/int64(time.Millisecond)
			if err := ttls.Put([]byte(it.key), ttlEntry(it.hash, wall, true)); err != nil {
				return err
			}
			logged = append(logged, it)
		}
		if len(logged) == 0 {
			return nil
		}
		return tx.Bucket(bucketMeta).Put(metaLast, u64(last))
	})
	if err != nil {
		return requeue(s.commitError(err, len(due)))
	}
	if len(logged) == 0 {
		return nil
	}
	s.lifes.mu.Lock()
	for _, it := range logged {
		if cur, ok := s.lifes.m[it.key]; ok && cur.hash == it.hash {
			cur.logged = true
			s.lifes.m[it.key] = cur
		}
	}
	s.lifes.mu.Unlock()
	s.expired.Add(uint64(len(logged)))
	s.mu.Lock()
	s.lastIndex = last
	close(s.notify)
	s.notify = make(chan struct{})
	s.mu.Unlock()
	return nil
}

func ttlEntry(h Hash, wallMs int64, logged bool) []byte {
	b := append(h[:len(h):len(h)], u64(uint64(wallMs))...)
	if logged {
		return append(b, 1)
	}
	return append(b, 0)
}

// persistLives writes the deadlines changed since the last time into
// bucket ttl, in a transaction of their own (none when nothing changed).
func (s *Store) persistLives() error {
	l := s.lifes
	l.persist.Lock()
	defer l.persist.Unlock()
	l.mu.Lock()
	if len(l.dirty) == 0 {
		l.mu.Unlock()
		return nil
	}
	type put struct {
		key string
		val []byte // nil: delete
	}
	puts := make([]put, 0, len(l.dirty))
	for key := range l.dirty {
		p := put{key: key}
		if cur, ok := l.m[key]; ok {
			p.val = ttlEntry(cur.hash, l.baseMs+cur.deadline/int64(time.Millisecond), cur.logged)
		}
		puts = append(puts, p)
	}
	l.dirty = map[string]bool{}
	l.mu.Unlock()
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTTL)
		for _, p := range puts {
			var err error
			if p.val == nil {
				err = b.Delete([]byte(p.key))
			} else {
				err = b.Put([]byte(p.key), p.val)
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		l.mu.Lock()
		for _, p := range puts {
			l.dirty[p.key] = true
		}
		l.mu.Unlock()
		return s.classify(err)
	}
	return nil
}

// haltExpirer stops the expirer and persists the deadlines (Close).
func (s *Store) haltExpirer() error {
	close(s.lifes.stop)
	<-s.lifes.done
	return s.persistLives()
}

// TTLKeys returns how many keys have a deadline (records with a TTL,
// expired or not, not yet purged).
func (s *Store) TTLKeys() int {
	s.lifes.mu.Lock()
	defer s.lifes.mu.Unlock()
	return len(s.lifes.m)
}

// Expire runs an expirer pass now — after the expirer's own, if one is
// running — and returns how many expire events were logged meanwhile. The expirer does this by itself; Expire is for tests and tools.
func (s *Store) Expire() (int, error) {
	before := s.expired.Load()
	err := s.expirePass()
	return int(s.expired.Load() - before), err
}
