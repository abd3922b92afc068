package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/cloudknowledge/ck/store/internal/wal"
)

// What a flush writes (internal/wal decides when: the overlay freezes the
// active pending set, hands it to the sink below, and drops it once it is
// in the file).

// newOverlay returns the pending sets over the file, flushing into it.
func (s *Store) newOverlay() *wal.Overlay[Event] {
	return wal.NewOverlay(&s.mu, wal.Sink[Event]{
		Write: func(p *pendingSet) error {
			return s.db.Update(func(tx *bolt.Tx) error { return writePending(tx, p) })
		},
		Retries: []func(error) bool{
			// What the reserve is for (space.go).
			func(err error) bool { return isNoSpace(err) && s.space.release() },
			// Deletes and smaller overwrites went ahead and freed pages
			// (freeing.go).
			func(err error) bool { return isNoSpace(err) && s.flushFreeing() },
		},
		Flushed: s.flushed,
	})
}

// pendingSet is a set of committed batches not yet in the bbolt file
// (internal/wal).
type pendingSet = wal.Set[Event]

// pendingRec is a stored record waiting for its flush.
type pendingRec = wal.Rec

// kickFlush asks the flusher for a flush now.
func (s *Store) kickFlush() { s.pend.Kick() }

// runFlusher runs the flusher until Close stops it; Close then flushes
// what is left itself.
func (s *Store) runFlusher() {
	s.pend.Run(s.flushTimed, isNoSpace)
}

// flushTimed is the flusher's flush: Flush keeps its error for the
// committer, and a limited store that flushed looks for space again.
func (s *Store) flushTimed() error {
	err := s.pend.Flush()
	if err == nil && s.space.limited.Load() {
		s.refreshSpace()
	}
	return err
}

// flushAll flushes until nothing is pending, or a flush fails.
func (s *Store) flushAll() error { return s.pend.FlushAll() }

// refreshSpace allocates the reserve of a limited store again when there
// is space (space.go).
func (s *Store) refreshSpace() { s.space.refresh(s.wal) }

// flushed records a flush's outcome on the disk's state, and classifies a
// failed flush, logging the first of a run (a full disk is logged by
// space.flushed).
func (s *Store) flushed(batches int, err error, again bool) error {
	if batches > 0 {
		s.space.flushed(isNoSpace(err))
	}
	if err == nil {
		return nil
	}
	e := s.classify(err)
	if !again && !errors.Is(e, ErrDiskFull) && e != ErrClosed {
		s.log.Error("flush failed", "error", err)
	}
	return e
}

// writePending writes a set of batches into the file: records, key-hash
// and tombstone index entries, change-log entries, the reservation (never lowered), the
// last index, the trimmed start of the log, and the last batch's number.
func writePending(tx *bolt.Tx, p *pendingSet) error {
	kv, kh := tx.Bucket(bucketKV), tx.Bucket(bucketKeyHash)
	log, meta := tx.Bucket(bucketChanges), tx.Bucket(bucketMeta)
	tombs := tx.Bucket(bucketTombs)
	var skip map[string]bool // written ahead by flushFreeing: no page to copy
	for _, k := range p.SortedKeys() {
		r := p.Recs[k]
		old := kv.Get([]byte(k))
		if old != nil && bytes.Equal(old, r.Raw) {
			if skip == nil {
				skip = map[string]bool{}
			}
			skip[k] = true
			continue
		}
		if err := reindexTomb(tombs, k, old, false); err != nil {
			return err
		}
		if err := reindexTomb(tombs, k, r.Raw, true); err != nil {
			return err
		}
		if err := kv.Put([]byte(k), r.Raw); err != nil {
			return err
		}
	}
	if err := putKeyHashes(kh, p, skip); err != nil {
		return err
	}
	for _, e := range p.Events {
		if err := log.Put(u64(e.Index), e.Raw); err != nil {
			return err
		}
	}
	if len(p.Events) > 0 {
		if err := meta.Put(metaLast, u64(p.Last)); err != nil {
			return err
		}
	}
	if p.Reserved > metaU64(meta, metaReserved) {
		if err := meta.Put(metaReserved, u64(p.Reserved)); err != nil {
			return err
		}
	}
	if k, _ := log.Cursor().First(); k != nil {
		for i := binary.BigEndian.Uint64(k); i < p.First; i++ {
			if err := log.Delete(u64(i)); err != nil {
				return err
			}
		}
	}
	return meta.Put(metaWALLSN, u64(p.LSN))
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
func (s *Store) replay() (*pendingSet, error) {
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
	p := wal.NewSet[Event]()
	p.Last, p.First, p.Pos = last, first, batches[0].Pos
	doubleFault := false
	for _, b := range batches {
		p.Batches++
		p.LSN, p.Reserved = b.LSN, max(p.Reserved, b.Reserved)
		p.Size += b.End - b.Pos
		for _, c := range b.Changes {
			// Indexes run on from the file's. One below is possible only
			// after a double fault: a batch written directly (commitDirect)
			// that reported an error yet reached the disk, which the logged
			// batches after it do not know; they win.
			if c.Index > p.Last+1 || c.Index == 0 {
				return nil, fmt.Errorf("%w: write-ahead log batch %d has change %d after %d", ErrCorrupt, b.LSN, c.Index, p.Last)
			}
			doubleFault = doubleFault || c.Index <= p.Last
			p.Last = c.Index
			ev, err := decodeEvent(u64(c.Index), c.Ev)
			if err != nil {
				return nil, fmt.Errorf("write-ahead log batch %d: %w", b.LSN, err)
			}
			putStaged(p, &stagedPut{key: c.Key, raw: c.Raw, hash: hashBytes(c.Raw), keyHash: KeyHash(c.Key), event: ev, ev: c.Ev})
		}
	}
	if hist := uint64(s.opts.WatchHistory); p.Last >= hist && p.First+hist <= p.Last {
		p.First = p.Last - hist + 1
	}
	s.log.Info("replaying the write-ahead log", "batches", len(batches), "from", batches[0].LSN, "to", p.LSN)
	if !doubleFault {
		return p, nil
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		if err := writePending(tx, p); err != nil {
			return err
		}
		// Events above the log's last index (the double fault above) go.
		c := tx.Bucket(bucketChanges).Cursor()
		for k, _ := c.Last(); k != nil && binary.BigEndian.Uint64(k) > p.Last; k, _ = c.Last() {
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

// addBatch adds a batch written to the log at pos, size bytes long, to p.
func addBatch(p *pendingSet, lsn uint64, pos, size int64, st *txState) {
	p.Add(lsn, pos, size, st.reserved, st.last, st.first)
	for i := range st.puts {
		putStaged(p, &st.puts[i])
	}
}

// putStaged adds one stored change to p.
func putStaged(p *pendingSet, c *stagedPut) {
	p.Put(pendingRec{Key: c.key, Raw: c.raw, Hash: c.hash, KeyHash: c.keyHash}, c.keyHash.Leaf(),
		wal.Event[Event]{Index: c.event.Index, Value: c.event, Raw: c.ev})
}
