package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/cloudknowledge/ck/store/internal/wal"
)

// Check verifies the whole store and returns an error wrapping ErrCorrupt
// listing what is wrong (at most a few dozen problems): every record
// decodes, has a valid key equal to its bucket key and is stored in its
// canonical encoding (so its hash is its bytes' hash); the key-hash index
// matches the records; the in-memory digest tree and key count equal a
// rebuild, and so does the file's digest snapshot when it is current (the
// one the next Open would load); the change log is contiguous, ends at LastIndex and decodes;
// every lamport is within the reservation and L. It holds off commits while
// it runs: for tests and operators, not for a busy path. While the store
// is counting its records after a crash (counting.go) it waits for the
// count first, and returns its error if the count failed.
func (s *Store) Check() error {
	if err := s.countErr(); err != nil {
		return err
	}
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	// Flush what is pending first, so the file is checked as it will be;
	// if that fails (a full disk), the file and the pending sets are
	// checked together.
	_ = s.flushAll()
	s.pend.Lock()
	defer s.pend.Unlock()
	c := &checker{}
	var pend pendingView
	err := s.read(func() bool { pend = s.pend.All(); return true }, func(tx *bolt.Tx) error {
		if _, err := s.checkFormat(tx); err != nil {
			c.add("%v", err)
			return nil
		}
		s.mu.RLock()
		defer s.mu.RUnlock()
		s.checkRecords(tx, pend, c)
		s.checkSnapshot(tx, c)
		s.checkIndex(tx, c)
		s.checkLog(tx, pend, c)
		return nil
	})
	if err != nil {
		return err
	}
	return c.err()
}

// pendingView is everything pending, for Check.
type pendingView = wal.View[Event]

// checker collects problems.
type checker struct{ problems []error }

const maxProblems = 50

func (c *checker) add(format string, args ...any) {
	if len(c.problems) < maxProblems {
		c.problems = append(c.problems, fmt.Errorf(format, args...))
	}
}

func (c *checker) err() error {
	if len(c.problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrCorrupt, errors.Join(c.problems...))
}

// checkRecords checks every record, the file's with the pending ones
// over them.
func (s *Store) checkRecords(tx *bolt.Tx, pend pendingView, c *checker) {
	var maxL, keys uint64
	d := new(digest)
	one := func(k, v []byte) {
		var rec Record
		if err := rec.UnmarshalCBOR(v); err != nil {
			c.add("record %q: %v", k, err)
			return
		}
		if rec.Key != string(k) {
			c.add("record under %q has key %q", k, rec.Key)
		}
		if err := ValidateKey(rec.Key); err != nil {
			c.add("record %q: %v", k, err)
		}
		if !bytes.Equal(encodeRecord(&rec), v) {
			c.add("record %q is not in canonical form", k)
		}
		if rec.Deleted && len(rec.Value) > 0 {
			c.add("tombstone %q has a value", k)
		}
		if rec.Lamport > s.reserved {
			c.add("record %q has lamport %d above the reservation %d", k, rec.Lamport, s.reserved)
		}
		if !rec.Deleted {
			keys++
		}
		maxL = max(maxL, rec.Lamport)
		d.update(KeyHash(rec.Key), Hash{}, hashBytes(v))
	}
	_ = tx.Bucket(bucketKV).ForEach(func(k, v []byte) error {
		if p := pend.Recs[string(k)]; p != nil {
			v = p.Raw
		}
		one(k, v)
		return nil
	})
	kv := tx.Bucket(bucketKV)
	for k, p := range pend.Recs {
		if p.Key != k {
			c.add("pending record under %q has key %q", k, p.Key)
		}
		if p.Hash != hashBytes(p.Raw) {
			c.add("pending record %q has the wrong hash", k)
		}
		if kv.Get([]byte(k)) == nil {
			one([]byte(k), p.Raw)
		}
	}
	d.computeRoot()
	if keys != s.keys {
		c.add("key count %d in memory, %d stored", s.keys, keys)
	}
	if d.leaves != s.dig.leaves || d.tops != s.dig.tops || d.root != s.dig.root {
		c.add("in-memory digest tree differs from a rebuild")
	}
	if l := s.Lamport(); l < maxL {
		c.add("lamport %d below the stored maximum %d", l, maxL)
	}
}

// checkIndex verifies the key-hash index has exactly one entry per record
// of the file, with the record's hash: flushes write both together.
func (s *Store) checkIndex(tx *bolt.Tx, c *checker) {
	kv := tx.Bucket(bucketKV)
	n := 0
	_ = tx.Bucket(bucketKeyHash).ForEach(func(k, v []byte) error {
		n++
		if len(k) <= len(Hash{}) {
			c.add("key-hash entry %x too short", k)
			return nil
		}
		key := string(k[len(Hash{}):])
		if kh := KeyHash(key); !bytes.Equal(k[:len(kh)], kh[:]) {
			c.add("key-hash entry for %q has the wrong hash", key)
		}
		rec := kv.Get([]byte(key))
		if rec == nil {
			c.add("key-hash entry for %q without a record", key)
		} else if h := hashBytes(rec); !bytes.Equal(v, h[:]) {
			c.add("key-hash entry for %q has hash %x, the record %s", key, v, h)
		}
		return nil
	})
	n += checkStaged(tx, c) // a bulk load's entries (bulk.go)
	if recs := kv.Stats().KeyN; n != recs {
		c.add("key-hash index has %d entries for %d records", n, recs)
	}
	s.checkTombs(tx, c)
}

// checkTombs checks the tombstone index (one entry per tombstone, at its
// At) and the purge log (decodable entries, counted right).
func (s *Store) checkTombs(tx *bolt.Tx, c *checker) {
	kv, tombs := tx.Bucket(bucketKV), tx.Bucket(bucketTombs)
	want := 0
	_ = kv.ForEach(func(k, v []byte) error {
		h, err := decodeHeadAt(v)
		if err != nil || !h.indexed() {
			return nil // checkRecords reports undecodable records
		}
		want++
		if tombs.Get(tombKey(h.At+max(h.TTL, 0), string(k))) == nil {
			c.add("tombstone %q is not in the tombstone index", k)
		}
		return nil
	})
	if n := tombs.Stats().KeyN; n != want {
		c.add("tombstone index has %d entries for %d tombstones", n, want)
	}
	n := 0
	_ = tx.Bucket(bucketPurged).ForEach(func(k, v []byte) error {
		n++
		rec, err := decodeMeta(v)
		switch {
		case err != nil:
			c.add("purge log entry %x: %v", k, err)
		case len(k) <= len(Hash{}) || string(k[len(Hash{}):]) != rec.Key:
			c.add("purge log entry %x is not under its key %q", k, rec.Key)
		case !rec.Deleted:
			c.add("purge log entry %q is not a tombstone", rec.Key)
		}
		return nil
	})
	if int64(n) != s.purgeLogN {
		c.add("purge log has %d entries, %d in memory", n, s.purgeLogN)
	}
}

// checkLog checks the reservation and the change log: the file's part,
// then the pending one, consecutive, ending at LastIndex.
func (s *Store) checkLog(tx *bolt.Tx, pend pendingView, c *checker) {
	meta := tx.Bucket(bucketMeta)
	stored := metaU64(meta, metaReserved)
	if v := meta.Get(metaReserved); len(v) != 8 || max(stored, pend.Reserved) != s.reserved {
		c.add("stored reservation %x (pending %d) differs from %d in memory", v, pend.Reserved, s.reserved)
	}
	var fileFirst, fileLast uint64
	next := uint64(0)
	_ = tx.Bucket(bucketChanges).ForEach(func(k, v []byte) error {
		ev, err := decodeEvent(k, v)
		if err != nil {
			c.add("%v", err)
			return nil
		}
		if next == 0 {
			fileFirst, next = ev.Index, ev.Index
		}
		if ev.Index != next {
			c.add("change log: index %d where %d was expected", ev.Index, next)
		}
		next, fileLast = ev.Index+1, ev.Index
		return nil
	})
	if v := meta.Get(metaLast); fileLast > 0 && (len(v) != 8 || binary.BigEndian.Uint64(v) != fileLast) {
		c.add("stored last index %x differs from the log's last entry %d", v, fileLast)
	}
	if fileLast == 0 {
		next = metaU64(meta, metaLast) + 1
	}
	for _, e := range pend.Events {
		if e.Value.Index != next {
			c.add("pending change log: index %d where %d was expected", e.Value.Index, next)
		}
		next = e.Value.Index + 1
	}
	if next != s.lastIndex+1 {
		c.add("change log ends at %d, last index is %d", next-1, s.lastIndex)
	}
	if fileLast > 0 && (s.firstIndex < fileFirst || !pend.Any && s.firstIndex != fileFirst) {
		c.add("change log starts at %d, the first index is %d", fileFirst, s.firstIndex)
	}
}

// checkSnapshot compares a current digest snapshot (digest.go) with a
// rebuild from the file's records: Open would trust it.
func (s *Store) checkSnapshot(tx *bolt.Tx, c *checker) {
	snap := new(digest)
	m, ok, damaged := readSnapshot(tx, snap)
	if damaged {
		c.add("the digest snapshot does not decode (bad length, version or checksum)")
	}
	if !ok {
		return
	}
	d := new(digest)
	var keys uint64
	maxL, err := s.rebuild(tx, d, &keys, nil)
	if err != nil {
		return // checkRecords reports undecodable records
	}
	if snap.leaves != d.leaves || snap.root != d.root {
		c.add("the digest snapshot differs from a rebuild of the file's records")
	}
	if m.keys != keys {
		c.add("the digest snapshot counts %d keys, the file holds %d", m.keys, keys)
	}
	if m.maxL < maxL {
		c.add("the digest snapshot's lamport %d is below the file's largest %d", m.maxL, maxL)
	}
}
