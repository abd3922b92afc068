package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Check verifies the whole store and returns an error wrapping ErrCorrupt
// listing what is wrong (at most a few dozen problems): every record
// decodes, has a valid key equal to its bucket key and is stored in its
// canonical encoding (so its hash is its bytes' hash); the key-hash index
// matches the records; the in-memory digest tree and key count equal a
// rebuild; the change log is contiguous, ends at LastIndex and decodes;
// every lamport is within the reservation and L. It holds off commits while
// it runs: for tests and operators, not for a busy path.
func (s *Store) Check() error {
	s.commitMu.Lock()
	defer s.commitMu.Unlock()
	c := &checker{}
	err := s.view(func(tx *bolt.Tx) error {
		if err := s.checkFormat(tx); err != nil {
			c.add("%v", err)
			return nil
		}
		s.mu.RLock()
		defer s.mu.RUnlock()
		s.checkRecords(tx, c)
		s.checkIndex(tx, c)
		s.checkLog(tx, c)
		return nil
	})
	if err != nil {
		return err
	}
	return c.err()
}

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
	return fmt.Errorf("store: %w: %w", ErrCorrupt, errors.Join(c.problems...))
}

func (s *Store) checkRecords(tx *bolt.Tx, c *checker) {
	var maxL, keys uint64
	d := new(digest)
	_ = tx.Bucket(bucketKV).ForEach(func(k, v []byte) error {
		var rec Record
		if err := rec.UnmarshalCBOR(v); err != nil {
			c.add("record %q: %v", k, err)
			return nil
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
		return nil
	})
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

// checkIndex verifies the key-hash index has exactly one entry per record,
// with the record's hash.
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
	if recs := kv.Stats().KeyN; n != recs {
		c.add("key-hash index has %d entries for %d records", n, recs)
	}
}

func (s *Store) checkLog(tx *bolt.Tx, c *checker) {
	meta := tx.Bucket(bucketMeta)
	if v := meta.Get(metaReserved); len(v) != 8 || binary.BigEndian.Uint64(v) != s.reserved {
		c.add("stored reservation %x differs from %d in memory", v, s.reserved)
	}
	if v := meta.Get(metaLast); len(v) != 8 || binary.BigEndian.Uint64(v) != s.lastIndex {
		c.add("stored last index %x differs from %d in memory", v, s.lastIndex)
	}
	next := s.firstIndex
	_ = tx.Bucket(bucketChanges).ForEach(func(k, v []byte) error {
		ev, err := decodeEvent(k, v)
		if err != nil {
			c.add("%v", err)
			return nil
		}
		if ev.Index != next {
			c.add("change log: index %d where %d was expected", ev.Index, next)
		}
		next = ev.Index + 1
		return nil
	})
	if next != s.lastIndex+1 {
		c.add("change log ends at %d, last index is %d", next-1, s.lastIndex)
	}
}
