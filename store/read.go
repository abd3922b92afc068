package store

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Reads run in short bbolt read transactions and never call back into the
// caller while one is open: a read transaction held open blocks a commit
// that has to grow the file's memory map, so a slow consumer (an export
// over the network, a watcher) would stall every writer.
//
// Records committed but not yet flushed into the file are in the pending
// sets (internal/wal/overlay.go); a read takes what it needs of them and opens its
// read transaction under one s.mu.RLock, so it sees each committed record
// in one or the other.

// read runs pick, which may look at the pending sets, under s.mu.RLock,
// opens a read transaction under the same lock, and runs fn in it; unless
// pick returns false: then nothing is read from the file.
func (s *Store) read(pick func() bool, fn func(tx *bolt.Tx) error) error {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return ErrClosed
	}
	if pick != nil && !pick() {
		s.mu.RUnlock()
		return nil
	}
	tx, err := s.db.Begin(false)
	s.mu.RUnlock()
	if err != nil {
		if errors.Is(err, berrors.ErrDatabaseNotOpen) {
			return ErrClosed
		}
		return err
	}
	defer tx.Rollback()
	return fn(tx)
}

// Get returns the key's record. A tombstone is returned with found=true and
// Deleted=true; a missing key, a tombstone past its TTL (purge.go), or a
// record past its deadline here (ttl.go) with found=false. A record with a
// TTL has Left set.
func (s *Store) Get(key string) (rec Record, found bool, err error) {
	return s.get(key, true)
}

// Peek is Get for peers: a record past its deadline here is returned too,
// with Left 0, and an ephemeral record whose owner is away, so that a node that lacks it (a bootstrap, a sync session)
// stores the same bytes and hides it at once: digests stay equal, and an
// expiry causes no anti-entropy traffic (docs/ARCHITECTURE.md, "Expiring
// and ephemeral keys").
func (s *Store) Peek(key string) (rec Record, found bool, err error) {
	return s.get(key, false)
}

func (s *Store) get(key string, hideExpired bool) (rec Record, found bool, err error) {
	if err := ValidateKey(key); err != nil {
		return Record{}, false, err
	}
	var raw []byte
	err = s.read(func() bool {
		if p := s.pendingRec(key); p != nil {
			raw = p.Raw
			return false // no need for the file
		}
		return true
	}, func(tx *bolt.Tx) error {
		raw = tx.Bucket(bucketKV).Get([]byte(key))
		if raw == nil {
			return nil
		}
		found = true
		return decodeStored(key, raw, &rec)
	})
	if err == nil && raw != nil && !found {
		found = true
		err = decodeStored(key, raw, &rec)
	}
	if found && err == nil && s.hide(&rec) && (hideExpired || s.Expired(&rec)) {
		return Record{}, false, nil
	}
	return rec, found, err
}

func decodeStored(key string, v []byte, rec *Record) error {
	if err := rec.UnmarshalCBOR(v); err != nil {
		return fmt.Errorf("%w: %q: %v", ErrCorrupt, key, err)
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
	var pend []*pendingRec
	err = s.read(func() bool { pend = s.pendingRange(prefix, after); return true }, func(tx *bolt.Tx) error {
		m := merger{c: tx.Bucket(bucketKV).Cursor(), prefix: []byte(prefix), pend: pend}
		m.k, m.v = seekAfter(m.c, prefix, after)
		for key, v, ok := m.next(); ok; key, v, ok = m.next() {
			if len(recs) == limit {
				next = recs[len(recs)-1].Key
				return nil
			}
			var rec Record
			if values {
				if err := decodeStored(key, v, &rec); err != nil {
					return err
				}
			} else {
				var err error
				if rec, err = decodeMeta(v); err != nil {
					return fmt.Errorf("%w: %q: %v", ErrCorrupt, key, err)
				}
			}
			if !rec.Deleted && !s.ephemeralGone(&rec) && (rec.TTL <= 0 || s.fillLeft(&rec, hashBytes(v))) {
				recs = append(recs, rec)
			}
		}
		return nil
	})
	return recs, next, err
}

// merger walks the file's records with a prefix and the pending ones
// (sorted, with the same prefix) in key order; a pending record hides the
// file's of the same key.
type merger struct {
	c      *bolt.Cursor
	k, v   []byte // the cursor's position
	prefix []byte
	pend   []*pendingRec
}

func (m *merger) next() (key string, v []byte, ok bool) {
	inFile := m.k != nil && bytes.HasPrefix(m.k, m.prefix)
	switch {
	case len(m.pend) > 0 && (!inFile || m.pend[0].Key <= string(m.k)):
		p := m.pend[0]
		m.pend = m.pend[1:]
		if inFile && p.Key == string(m.k) {
			m.k, m.v = m.c.Next()
		}
		return p.Key, p.Raw, true
	case inFile:
		key, v = string(m.k), m.v
		m.k, m.v = m.c.Next()
		return key, v, true
	}
	return "", nil, false
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
// included (but not expired ones), in key order (export). It reads in chunks, so it is not a
// snapshot: a record written during the scan may or may not be seen. An
// error from fn stops the scan and is returned.
func (s *Store) Scan(prefix string, fn func(Record) error) error {
	return s.scan(prefix, true, fn)
}

// ScanAll is Scan with expired tombstones too (not yet purged ones; the
// purged are in the purge log, ScanPurged): what a rejoin saves of the
// node's own writes, deletes included.
func (s *Store) ScanAll(prefix string, fn func(Record) error) error {
	return s.scan(prefix, false, fn)
}

func (s *Store) scan(prefix string, hideExpired bool, fn func(Record) error) error {
	const chunkRecords, chunkBytes = 256, 8 << 20
	after := ""
	for started := false; ; started = true {
		var chunk []Record
		var pend []*pendingRec
		var last string
		more := false
		err := s.read(func() bool { pend = s.pendingRange(prefix, after); return true }, func(tx *bolt.Tx) error {
			m := merger{c: tx.Bucket(bucketKV).Cursor(), prefix: []byte(prefix), pend: pend}
			m.k, m.v = m.c.Seek([]byte(prefix))
			if started {
				m.k, m.v = seekAfter(m.c, prefix, after)
			}
			size := 0
			for key, v, ok := m.next(); ok; key, v, ok = m.next() {
				if len(chunk) == chunkRecords || size >= chunkBytes {
					more = true
					return nil
				}
				var rec Record
				if err := decodeStored(key, v, &rec); err != nil {
					return err
				}
				if !hideExpired || !s.hide(&rec) {
					chunk = append(chunk, rec)
				}
				last = key
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
		after = last
	}
}

// LeafEntry names a record in a digest leaf: what an anti-entropy session
// exchanges for a leaf whose digests differ (docs/PROTOCOL.md, Anti-entropy).
type LeafEntry struct {
	KeyHash Hash
	Key     string
	Hash    Hash // the record's hash
}

// LeafEntries returns the records of digest leaf leaf (tombstones
// included), in key-hash order. It reads an index, not the records.
func (s *Store) LeafEntries(leaf uint16) ([]LeafEntry, error) {
	var out []LeafEntry
	var pend map[string]LeafEntry
	prefix := []byte{byte(leaf >> 8), byte(leaf)}
	err := s.read(func() bool { pend = s.pendingLeaf(leaf); return true }, func(tx *bolt.Tx) error {
		c := tx.Bucket(bucketKeyHash).Cursor()
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			if len(k) <= len(Hash{}) || len(v) != len(Hash{}) {
				return fmt.Errorf("%w: key-hash entry %x", ErrCorrupt, k)
			}
			var e LeafEntry
			copy(e.KeyHash[:], k)
			e.Key = string(k[len(e.KeyHash):])
			copy(e.Hash[:], v)
			if p, ok := pend[e.Key]; ok {
				e.Hash = p.Hash
				delete(pend, e.Key)
			}
			out = append(out, e)
		}
		return s.stagedLeaf(tx, prefix, &out, pend)
	})
	if len(pend) > 0 {
		for _, p := range pend {
			out = append(out, p)
		}
		slices.SortFunc(out, byKeyHashKey)
	}
	return out, err
}

// keyHashKey is the index entry's key: KeyHash(key) ‖ key (the key
// appended keeps two keys with the same 128-bit hash apart).
func keyHashKey(kh Hash, key string) []byte {
	return append(kh[:len(kh):len(kh)], key...)
}
