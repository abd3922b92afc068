package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Flushing writes the pending batches into the bbolt file, in one
// transaction with bbolt's own two fsyncs, and records the last batch's
// number (wal_lsn) in the same transaction; only then may the log's space
// be reused (pending.go, internal/wal). The flusher (wal.Flusher) runs
// it on its own goroutine, every flushEvery or sooner when the pending
// batches take 1/flushShare of the log or the committer needs their
// space, so commits go on while it writes. Many writes of the same key or
// of neighbouring keys then cost one page write, where a commit per write
// rewrote a dozen pages. While flushes fail for lack of space it waits
// flushRetry after each failure, doubling up to flushEvery.
const (
	flushEvery = time.Second
	flushShare = 4
	flushRetry = 50 * time.Millisecond
)

// kickFlush asks the flusher for a flush now.
func (s *Store) kickFlush() { s.flusher.Kick() }

// runFlusher runs the flusher until Close stops it; Close then flushes
// what is left itself.
func (s *Store) runFlusher() {
	s.flusher.Run(s.flushTimed, flushEvery, flushRetry, isNoSpace)
}

// flushTimed is the flusher's flush: flushOnce keeps its error for the
// committer, and a limited store that flushed looks for space again.
func (s *Store) flushTimed() error {
	err := s.flushOnce()
	if err == nil && s.space.limited.Load() {
		s.refreshSpace()
	}
	return err
}

// refreshSpace allocates the reserve of a limited store again when there
// is space (space.go).
func (s *Store) refreshSpace() { s.space.refresh(s.wal) }

// flushAll flushes until nothing is pending, or a flush fails.
func (s *Store) flushAll() error {
	for {
		s.mu.RLock()
		idle := s.active.empty() && s.frozen.empty()
		s.mu.RUnlock()
		if idle {
			return nil
		}
		if err := s.flushOnce(); err != nil {
			return err
		}
	}
}

// flushOnce writes the frozen set, freezing the active one first if
// nothing is frozen. A failed flush keeps the frozen set for the next try.
func (s *Store) flushOnce() error {
	s.flusher.Lock()
	defer s.flusher.Unlock()
	s.mu.Lock()
	if s.frozen == nil {
		if s.active.empty() {
			s.mu.Unlock()
			return nil
		}
		s.frozen, s.active = s.active, newPending()
	}
	fr := s.frozen
	s.mu.Unlock()

	write := func() error { return s.db.Update(func(tx *bolt.Tx) error { return writePending(tx, fr) }) }
	err := write()
	if isNoSpace(err) && s.space.release() {
		// What the reserve is for (space.go).
		err = write()
	}
	if isNoSpace(err) && s.flushFreeing() {
		// Deletes and smaller overwrites went ahead and freed pages
		// (freeing.go).
		err = write()
	}
	if fr.batches > 0 {
		s.space.flushed(isNoSpace(err))
	}
	if err != nil {
		err = s.flushError(err)
	}
	s.mu.Lock()
	if err == nil {
		s.frozen = nil
	}
	s.flushErr = err
	close(s.flushSig) // wakes a committer waiting for space
	s.flushSig = make(chan struct{})
	s.mu.Unlock()
	s.flushes.Add(1)
	return err
}

// flushError classifies a failed flush, logging the first of a run (a
// full disk is logged by space.flushed).
func (s *Store) flushError(err error) error {
	s.mu.RLock()
	again := s.flushErr != nil
	s.mu.RUnlock()
	e := s.classify(err)
	if !again && !errors.Is(e, ErrDiskFull) && e != ErrClosed {
		s.log.Error("flush failed", "error", err)
	}
	return e
}

// writePending writes a set of batches into the file: records, key-hash
// and tombstone index entries, change-log entries, the reservation (never lowered), the
// last index, the trimmed start of the log, and the last batch's number.
func writePending(tx *bolt.Tx, p *pending) error {
	kv, kh := tx.Bucket(bucketKV), tx.Bucket(bucketKeyHash)
	log, meta := tx.Bucket(bucketChanges), tx.Bucket(bucketMeta)
	tombs := tx.Bucket(bucketTombs)
	var skip map[string]bool // written ahead by flushFreeing: no page to copy
	for _, k := range p.sortedKeys() {
		r := p.recs[k]
		old := kv.Get([]byte(k))
		if old != nil && bytes.Equal(old, r.raw) {
			if skip == nil {
				skip = map[string]bool{}
			}
			skip[k] = true
			continue
		}
		if err := reindexTomb(tombs, k, old, false); err != nil {
			return err
		}
		if err := reindexTomb(tombs, k, r.raw, true); err != nil {
			return err
		}
		if err := kv.Put([]byte(k), r.raw); err != nil {
			return err
		}
	}
	if err := putKeyHashes(kh, p, skip); err != nil {
		return err
	}
	for _, e := range p.events {
		if err := log.Put(u64(e.ev.Index), e.raw); err != nil {
			return err
		}
	}
	if len(p.events) > 0 {
		if err := meta.Put(metaLast, u64(p.last)); err != nil {
			return err
		}
	}
	if p.reserved > metaU64(meta, metaReserved) {
		if err := meta.Put(metaReserved, u64(p.reserved)); err != nil {
			return err
		}
	}
	if k, _ := log.Cursor().First(); k != nil {
		for i := binary.BigEndian.Uint64(k); i < p.first; i++ {
			if err := log.Delete(u64(i)); err != nil {
				return err
			}
		}
	}
	return meta.Put(metaWALLSN, u64(p.lsn))
}

// reindexTomb adds (put) or removes the tombstone index entry of key's
// record raw, if it is a tombstone; raw may be nil.
func reindexTomb(tombs *bolt.Bucket, key string, raw []byte, put bool) error {
	if raw == nil {
		return nil
	}
	h, err := decodeHeadAt(raw)
	if err != nil {
		return fmt.Errorf("%w: %q: %v", ErrCorrupt, key, err)
	}
	if !h.indexed() {
		return nil
	}
	at := h.At + max(h.TTL, 0)
	if put {
		return tombs.Put(tombKey(at, key), nil)
	}
	return tombs.Delete(tombKey(at, key))
}

// replay reads the batches the log holds beyond the file's wal_lsn (Open,
// before anything else reads the file) and returns them as a pending set,
// or nil when there are none. They are not written into the file here:
// that would need space, and a store must open and serve reads on a full
// disk; the flusher writes them like any other batches. Only after a
// double fault (below) are they written at once, as that needs the file
// to drop change-log entries.
func (s *Store) replay() (*pending, error) {
	var lsn, last, first uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		lsn, last = metaU64(meta, metaWALLSN), metaU64(meta, metaLast)
		first = last + 1
		if k, _ := tx.Bucket(bucketChanges).Cursor().First(); k != nil {
			first = binary.BigEndian.Uint64(k)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	batches, err := s.wal.Recover(lsn)
	if err != nil || len(batches) == 0 {
		return nil, err
	}
	p := newPending()
	p.last, p.first, p.pos = last, first, batches[0].Pos
	doubleFault := false
	for _, b := range batches {
		p.batches++
		p.lsn, p.reserved = b.LSN, max(p.reserved, b.Reserved)
		p.size += b.End - b.Pos
		for _, c := range b.Changes {
			// Indexes run on from the file's. One below is possible only
			// after a double fault: a batch written directly (commitDirect)
			// that reported an error yet reached the disk, which the logged
			// batches after it do not know; they win.
			if c.Index > p.last+1 || c.Index == 0 {
				return nil, fmt.Errorf("%w: write-ahead log batch %d has change %d after %d", ErrCorrupt, b.LSN, c.Index, p.last)
			}
			doubleFault = doubleFault || c.Index <= p.last
			p.last = c.Index
			ev, err := decodeEvent(u64(c.Index), c.Ev)
			if err != nil {
				return nil, fmt.Errorf("write-ahead log batch %d: %w", b.LSN, err)
			}
			p.put(&stagedPut{key: c.Key, raw: c.Raw, hash: hashBytes(c.Raw), keyHash: KeyHash(c.Key), event: ev, ev: c.Ev})
		}
	}
	if hist := uint64(s.opts.WatchHistory); p.last >= hist && p.first+hist <= p.last {
		p.first = p.last - hist + 1
	}
	s.log.Info("replaying the write-ahead log", "batches", len(batches), "from", batches[0].LSN, "to", p.lsn)
	if !doubleFault {
		return p, nil
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := writePending(tx, p); err != nil {
			return err
		}
		// Events above the log's last index (the double fault above) go.
		c := tx.Bucket(bucketChanges).Cursor()
		for k, _ := c.Last(); k != nil && binary.BigEndian.Uint64(k) > p.last; k, _ = c.Last() {
			if err := c.Delete(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("replaying the write-ahead log: %w", err)
	}
	return nil, nil
}
