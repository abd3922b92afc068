package store

import (
	"bytes"
	"slices"
	"strings"
)

// Committed batches wait in memory until a flush writes them into the bbolt
// file: the records they stored (the latest per key), their change-log
// events and their reservation. Every read looks here first, then in the
// bbolt file, so a write is visible as soon as it is acknowledged.
//
// There are at most two sets: the active one, which commits add to, and
// the frozen one a flush is writing. A flush freezes the active set, writes
// it in one bbolt transaction, and only then drops it, all under s.mu; a
// reader that looks at both sets and opens its bbolt read transaction
// under s.mu.RLock therefore sees every committed record in one place or
// the other (and, between the commit and the drop, in both: the same
// bytes). The maps of the active set change only under s.mu's write lock
// (publish); the frozen set does not change.

// pending is a set of committed batches not yet in the bbolt file.
type pending struct {
	recs        map[string]*pendingRec
	leaves      map[uint16][]*pendingRec // the same records by digest leaf
	events      []pendingEvent           // in index order, consecutive
	reserved    uint64                   // the reservation after these batches
	last, first uint64                   // the change-log bounds after them
	lsn         uint64                   // the last batch's number
	batches     int
	pos         int64 // where the first batch starts in the log
	size        int64 // log bytes the batches take
}

// pendingRec is a stored record waiting for its flush.
type pendingRec struct {
	key     string
	raw     []byte // canonical encoding
	hash    Hash   // hashBytes(raw)
	keyHash Hash
}

// pendingEvent is a change-log entry waiting for its flush.
type pendingEvent struct {
	ev  Event
	raw []byte // as the log stores it
}

func newPending() *pending {
	return &pending{recs: map[string]*pendingRec{}, leaves: map[uint16][]*pendingRec{}}
}

func (p *pending) empty() bool { return p == nil || p.batches == 0 }

// recsOf returns p's record of key; p may be nil.
func (p *pending) recsOf(key string) *pendingRec {
	if p == nil {
		return nil
	}
	return p.recs[key]
}

// add records a batch written to the log at pos, size bytes long.
func (p *pending) add(lsn uint64, pos, size int64, st *txState) {
	if p.batches == 0 {
		p.pos = pos
	}
	p.batches++
	p.lsn, p.size = lsn, p.size+size
	p.reserved, p.last, p.first = st.reserved, st.last, st.first
	for i := range st.puts {
		p.put(&st.puts[i])
	}
}

// put adds one stored change.
func (p *pending) put(c *stagedPut) {
	if r, ok := p.recs[c.key]; ok {
		r.raw, r.hash = c.raw, c.hash
	} else {
		r := &pendingRec{key: c.key, raw: c.raw, hash: c.hash, keyHash: c.keyHash}
		p.recs[c.key] = r
		leaf := c.keyHash.Leaf()
		p.leaves[leaf] = append(p.leaves[leaf], r)
	}
	p.events = append(p.events, pendingEvent{ev: c.event, raw: c.ev})
}

// pendingRec returns the latest committed record of key not yet in the
// bbolt file, or nil. The caller holds s.mu.
func (s *Store) pendingRec(key string) *pendingRec {
	if r := s.active.recs[key]; r != nil {
		return r
	}
	return s.frozen.recsOf(key)
}

// pendingRange returns the pending records whose key has prefix and sorts
// after after, in key order. The caller holds s.mu.
func (s *Store) pendingRange(prefix, after string) []*pendingRec {
	var out []*pendingRec
	seen := map[string]bool{}
	for _, p := range []*pending{s.active, s.frozen} {
		if p == nil {
			continue
		}
		for k, r := range p.recs {
			if strings.HasPrefix(k, prefix) && k > after && !seen[k] {
				seen[k] = true
				cp := *r // put updates r in place once s.mu is released
				out = append(out, &cp)
			}
		}
	}
	slices.SortFunc(out, func(a, b *pendingRec) int { return strings.Compare(a.key, b.key) })
	return out
}

// pendingLeaf returns the pending records of a digest leaf by key, as
// copies: the committer updates a pending record in place (put) when its
// key is written again, after the caller has released s.mu. The caller
// holds s.mu.
func (s *Store) pendingLeaf(leaf uint16) map[string]LeafEntry {
	out := map[string]LeafEntry{}
	for _, p := range []*pending{s.frozen, s.active} { // active last: it is newer
		if p == nil {
			continue
		}
		for _, r := range p.leaves[leaf] {
			out[r.key] = LeafEntry{KeyHash: r.keyHash, Key: r.key, Hash: r.hash}
		}
	}
	return out
}

// pendingEvents returns the pending events with index in (after, upTo],
// at most max of them. The caller holds s.mu.
func (s *Store) pendingEvents(after, upTo uint64, max int) []Event {
	var out []Event
	for _, p := range []*pending{s.frozen, s.active} {
		if p == nil || len(p.events) == 0 {
			continue
		}
		first := p.events[0].ev.Index
		i := 0
		if after >= first {
			i = int(after - first + 1)
		}
		for ; i < len(p.events) && len(out) < max; i++ {
			ev := p.events[i].ev
			if ev.Index > upTo {
				break
			}
			out = append(out, ev)
		}
	}
	return out
}

// ringTail returns where the oldest batch not yet flushed starts in the
// log, and false when every batch is flushed. The caller holds s.mu.
func (s *Store) ringTail() (int64, bool) {
	if !s.frozen.empty() {
		return s.frozen.pos, true
	}
	if !s.active.empty() {
		return s.active.pos, true
	}
	return 0, false
}

// sortedKeys returns p's keys in byte order: a flush writes in key order,
// which keeps bbolt's cursor on neighbouring pages.
func (p *pending) sortedKeys() []string {
	keys := make([]string, 0, len(p.recs))
	for k := range p.recs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// byKeyHashKey orders leaf entries as the key-hash index does.
func byKeyHashKey(a, b LeafEntry) int {
	if c := bytes.Compare(a.KeyHash[:], b.KeyHash[:]); c != 0 {
		return c
	}
	return strings.Compare(a.Key, b.Key)
}
