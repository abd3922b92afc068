package store

import (
	"bytes"
	"strings"
)

// The store's reads through the pending sets: committed batches not yet in
// the bbolt file, which every read looks at first (internal/wal/overlay.go
// has them, their locking and their flush). They are guarded by s.mu.

// pendingRec returns the latest committed record of key not yet in the
// bbolt file, or nil. The caller holds s.mu.
func (s *Store) pendingRec(key string) *pendingRec { return s.pend.Rec(key) }

// pendingRange returns the pending records whose key has prefix and sorts
// after after, in key order. The caller holds s.mu.
func (s *Store) pendingRange(prefix, after string) []*pendingRec {
	return s.pend.Range(prefix, after)
}

// pendingLeaf returns the pending records of a digest leaf by key, as
// copies (the committer updates a pending record in place). The caller
// holds s.mu.
func (s *Store) pendingLeaf(leaf uint16) map[string]LeafEntry {
	out := map[string]LeafEntry{}
	s.pend.Leaf(leaf, func(r *pendingRec) {
		out[r.Key] = LeafEntry{KeyHash: r.KeyHash, Key: r.Key, Hash: r.Hash}
	})
	return out
}

// pendingEvents returns the pending events with index in (after, upTo],
// at most max of them. The caller holds s.mu.
func (s *Store) pendingEvents(after, upTo uint64, max int) []Event {
	return s.pend.Events(after, upTo, max)
}

// ringTail returns where the oldest batch not yet flushed starts in the
// log, and false when every batch is flushed. The caller holds s.mu.
func (s *Store) ringTail() (int64, bool) { return s.pend.Tail() }

// byKeyHashKey orders leaf entries as the key-hash index does.
func byKeyHashKey(a, b LeafEntry) int {
	if c := bytes.Compare(a.KeyHash[:], b.KeyHash[:]); c != 0 {
		return c
	}
	return strings.Compare(a.Key, b.Key)
}
