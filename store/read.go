package store

import (
	"bytes"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Reads run in short bbolt read transactions and never call back into the
// caller while one is open: a read transaction held open blocks a commit
// that has to grow the file's memory map, so a slow consumer (an export
// over the network, a watcher) would stall every writer.

// view runs fn in a read transaction.
func (s *Store) view(fn func(tx *bolt.Tx) error) error {
	err := s.db.View(fn)
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}

// Get returns the key's record. A tombstone is returned with found=true and
// Deleted=true; a missing key with found=false.
func (s *Store) Get(key string) (rec Record, found bool, err error) {
	if err := ValidateKey(key); err != nil {
		return Record{}, false, err
	}
	err = s.view(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketKV).Get([]byte(key))
		if v == nil {
			return nil
		}
		found = true
		return decodeStored(key, v, &rec)
	})
	return rec, found, err
}

func decodeStored(key string, v []byte, rec *Record) error {
	if err := rec.UnmarshalCBOR(v); err != nil {
		return fmt.Errorf("store: %w: %q: %v", ErrCorrupt, key, err)
	}
	return nil
}

// List returns live records (tombstones excluded) whose key has prefix and
// sorts after after, in byte order, at most limit of them (<= 0:
// DefaultListLimit). next is the last key returned when more keys with the
// prefix follow (pass it as after for the next page), else "". values=false
// leaves Value nil and skips reading values.
func (s *Store) List(prefix, after string, limit int, values bool) (recs []Record, next string, err error) {
	if limit <= 0 {
		limit = DefaultListLimit
	}
	err = s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketKV).Cursor()
		for k, v := seekAfter(c, prefix, after); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, v = c.Next() {
			if len(recs) == limit {
				next = recs[len(recs)-1].Key
				return nil
			}
			var rec Record
			if values {
				if err := decodeStored(string(k), v, &rec); err != nil {
					return err
				}
			} else {
				var err error
				if rec, err = decodeMeta(v); err != nil {
					return fmt.Errorf("store: %w: %q: %v", ErrCorrupt, k, err)
				}
			}
			if !rec.Deleted {
				recs = append(recs, rec)
			}
		}
		return nil
	})
	return recs, next, err
}

// seekAfter positions c on the first key >= prefix and > after.
func seekAfter(c *bolt.Cursor, prefix, after string) (k, v []byte) {
	if after < prefix {
		return c.Seek([]byte(prefix))
	}
	k, v = c.Seek([]byte(after))
	if k != nil && string(k) == after {
		k, v = c.Next()
	}
	return k, v
}

// Scan calls fn with every record whose key has prefix, tombstones
// included, in key order (export). It reads in chunks, so it is not a
// snapshot: a record written during the scan may or may not be seen. An
// error from fn stops the scan and is returned.
func (s *Store) Scan(prefix string, fn func(Record) error) error {
	const chunkRecords, chunkBytes = 256, 8 << 20
	after := ""
	for started := false; ; started = true {
		var chunk []Record
		more := false
		err := s.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketKV).Cursor()
			k, v := c.Seek([]byte(prefix))
			if started {
				k, v = seekAfter(c, prefix, after)
			}
			for size := 0; k != nil && bytes.HasPrefix(k, []byte(prefix)); k, v = c.Next() {
				if len(chunk) == chunkRecords || size >= chunkBytes {
					more = true
					return nil
				}
				var rec Record
				if err := decodeStored(string(k), v, &rec); err != nil {
					return err
				}
				chunk = append(chunk, rec)
				size += len(v)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, rec := range chunk {
			if err := fn(rec); err != nil {
				return err
			}
		}
		if !more {
			return nil
		}
		after = chunk[len(chunk)-1].Key
	}
}

// LeafEntry names a record in a digest leaf: what an anti-entropy session
// exchanges for a leaf whose digests differ (DESIGN §4).
type LeafEntry struct {
	KeyHash Hash
	Key     string
	Hash    Hash // the record's hash
}

// LeafEntries returns the records of digest leaf leaf (tombstones
// included), in key-hash order. It reads an index, not the records.
func (s *Store) LeafEntries(leaf uint16) ([]LeafEntry, error) {
	var out []LeafEntry
	prefix := []byte{byte(leaf >> 8), byte(leaf)}
	err := s.view(func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketKeyHash).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(k) <= len(Hash{}) || len(v) != len(Hash{}) {
				return fmt.Errorf("store: %w: key-hash entry %x", ErrCorrupt, k)
			}
			var e LeafEntry
			copy(e.KeyHash[:], k)
			e.Key = string(k[len(e.KeyHash):])
			copy(e.Hash[:], v)
			out = append(out, e)
		}
		return nil
	})
	return out, err
}

// keyHashKey is the index entry's key: KeyHash(key) ‖ key (the key
// appended keeps two keys with the same 128-bit hash apart).
func keyHashKey(kh Hash, key string) []byte {
	return append(kh[:len(kh):len(kh)], key...)
}
