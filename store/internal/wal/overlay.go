package wal

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
)

// Committed batches wait in memory until a flush writes them into the
// store's data file: the records they stored (the latest per key), their
// change-log events and their reservation. Every read looks here first,
// then in the data file, so a write is visible as soon as it is
// acknowledged.
//
// There are at most two sets: the active one, which commits add to, and
// the frozen one a flush is writing. A flush freezes the active set, writes
// it in one transaction, and only then drops it, all under the store's
// lock; a reader that looks at both sets and opens its read transaction
// under that lock's read side therefore sees every committed record in one
// place or the other (and, between the commit and the drop, in both: the
// same bytes). The maps of the active set change only under the lock's
// write side (the store's publish); the frozen set does not change.
//
// The sets are guarded by the store's lock, not one of their own, because
// a read and a commit must see them and the store's in-memory state (its
// digest tree, its change-log bounds) change at once. Methods that do not
// take the lock say that the caller holds it.

// Overlay is the pending sets over the data file, and their flush
// (flush.go). E is the store's decoded change-log event, kept beside its
// bytes so that a watcher reading the pending events decodes nothing.
type Overlay[E any] struct {
	mu      *sync.RWMutex // the store's: guards active, frozen, err and sig
	flusher *Flusher      // runs flushes; Check and Close hold it off
	sink    Sink[E]

	active  *Set[E]       // committed batches not yet flushed
	frozen  *Set[E]       // the batches a flush is writing, or nil
	err     error         // the last flush's error
	sig     chan struct{} // closed and replaced after every flush
	flushes atomic.Uint64 // flushes run (or failed)

	hintRecs, hintEvents int // the last frozen set's records and events (the flusher's)
}

// NewOverlay returns an empty overlay guarded by mu, flushing into sink.
func NewOverlay[E any](mu *sync.RWMutex, sink Sink[E]) *Overlay[E] {
	return &Overlay[E]{mu: mu, flusher: NewFlusher(), sink: sink, active: NewSet[E](), sig: make(chan struct{})}
}

// Set is a set of committed batches not yet in the data file.
type Set[E any] struct {
	Recs        map[string]*Rec
	leaves      map[uint16][]*Rec // the same records by digest leaf
	Events      []Event[E]        // in index order, consecutive
	Reserved    uint64            // the reservation after these batches
	Last, First uint64            // the change-log bounds after them
	LSN         uint64            // the last batch's number
	Batches     int
	Pos         int64 // where the first batch starts in the log
	Size        int64 // log bytes the batches take
}

// Rec is a stored record waiting for its flush: opaque bytes under a key,
// with the hashes the store computed.
type Rec struct {
	Key     string
	Raw     []byte   // canonical encoding
	Hash    [16]byte // of Raw
	KeyHash [16]byte
}

// Event is a change-log entry waiting for its flush.
type Event[E any] struct {
	Index uint64
	Value E      // decoded
	Raw   []byte // as the file stores it
}

// NewSet returns an empty set.
func NewSet[E any]() *Set[E] { return newSetSized[E](0, 0) }

// newSetSized returns an empty set with room for recs records and events
// events.
func newSetSized[E any](recs, events int) *Set[E] {
	return &Set[E]{Recs: make(map[string]*Rec, recs), leaves: make(map[uint16][]*Rec, min(recs, 1<<16)),
		Events: make([]Event[E], 0, events)}
}

// Empty reports whether p holds no batch; p may be nil.
func (p *Set[E]) Empty() bool { return p == nil || p.Batches == 0 }

// Rec returns p's record of key; p may be nil.
func (p *Set[E]) Rec(key string) *Rec {
	if p == nil {
		return nil
	}
	return p.Recs[key]
}

// Add records a batch written to the log at pos, size bytes long, and the
// store's values after it; Put adds its records.
func (p *Set[E]) Add(lsn uint64, pos, size int64, reserved, last, first uint64) {
	if p.Batches == 0 {
		p.Pos = pos
	}
	p.Batches++
	p.LSN, p.Size = lsn, p.Size+size
	p.Reserved, p.Last, p.First = reserved, last, first
}

// Put adds one stored change: r, in digest leaf leaf, and its event.
func (p *Set[E]) Put(r Rec, leaf uint16, ev Event[E]) {
	if old, ok := p.Recs[r.Key]; ok {
		old.Raw, old.Hash = r.Raw, r.Hash
	} else {
		rec := &r
		p.Recs[r.Key] = rec
		p.leaves[leaf] = append(p.leaves[leaf], rec)
	}
	p.Events = append(p.Events, ev)
}

// SortedKeys returns p's keys in byte order: a flush writes in key order,
// which keeps the file's cursor on neighbouring pages.
func (p *Set[E]) SortedKeys() []string {
	keys := make([]string, 0, len(p.Recs))
	for k := range p.Recs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Replayed makes the batches replayed from the log at open the active set.
// It is called before anything else uses o.
func (o *Overlay[E]) Replayed(p *Set[E]) { o.active = p }

// Sets returns the active and the frozen (possibly nil) set, for a batch
// to read through. The caller holds the lock.
func (o *Overlay[E]) Sets() (active, frozen *Set[E]) { return o.active, o.frozen }

// Active returns the set commits add to. The caller holds the lock's write
// side to change it.
func (o *Overlay[E]) Active() *Set[E] { return o.active }

// Idle reports whether nothing is pending. The caller holds the lock.
func (o *Overlay[E]) Idle() bool { return o.active.Empty() && o.frozen.Empty() }

// LastFlush returns a channel the next flush closes, and the last flush's
// error. The caller holds the lock.
func (o *Overlay[E]) LastFlush() (<-chan struct{}, error) { return o.sig, o.err }

// Flushes returns how many flushes ran (or failed).
func (o *Overlay[E]) Flushes() uint64 { return o.flushes.Load() }

// Rec returns the latest committed record of key not yet in the data file,
// or nil. The caller holds the lock.
func (o *Overlay[E]) Rec(key string) *Rec {
	if r := o.active.Recs[key]; r != nil {
		return r
	}
	return o.frozen.Rec(key)
}

// Range returns the pending records whose key has prefix and sorts after
// after, in key order. The caller holds the lock.
func (o *Overlay[E]) Range(prefix, after string) []*Rec {
	var out []*Rec
	seen := map[string]bool{}
	for _, p := range []*Set[E]{o.active, o.frozen} {
		if p == nil {
			continue
		}
		for k, r := range p.Recs {
			if strings.HasPrefix(k, prefix) && k > after && !seen[k] {
				seen[k] = true
				cp := *r // Put updates r in place once the lock is released
				out = append(out, &cp)
			}
		}
	}
	slices.SortFunc(out, func(a, b *Rec) int { return strings.Compare(a.Key, b.Key) })
	return out
}

// Leaf calls fn with the pending records of a digest leaf, the frozen
// set's first: a key met twice is newer the second time. fn must copy
// what it keeps: the committer updates a pending record in place (Put)
// when its key is written again, after the caller has released the lock.
// The caller holds the lock.
func (o *Overlay[E]) Leaf(leaf uint16, fn func(*Rec)) {
	for _, p := range []*Set[E]{o.frozen, o.active} { // active last: it is newer
		if p == nil {
			continue
		}
		for _, r := range p.leaves[leaf] {
			fn(r)
		}
	}
}

// Events returns the pending events with index in (after, upTo], at most
// max of them. The caller holds the lock.
func (o *Overlay[E]) Events(after, upTo uint64, max int) []E {
	var out []E
	for _, p := range []*Set[E]{o.frozen, o.active} {
		if p == nil || len(p.Events) == 0 {
			continue
		}
		first := p.Events[0].Index
		i := 0
		if after >= first {
			i = int(after - first + 1)
		}
		for ; i < len(p.Events) && len(out) < max; i++ {
			ev := p.Events[i]
			if ev.Index > upTo {
				break
			}
			out = append(out, ev.Value)
		}
	}
	return out
}

// Tail returns where the oldest batch not yet flushed starts in the log,
// and false when every batch is flushed. The caller holds the lock.
func (o *Overlay[E]) Tail() (int64, bool) {
	if !o.frozen.Empty() {
		return o.frozen.Pos, true
	}
	if !o.active.Empty() {
		return o.active.Pos, true
	}
	return 0, false
}

// View is everything pending, for a consistency check.
type View[E any] struct {
	Recs     map[string]*Rec
	Events   []Event[E]
	Reserved uint64
	Any      bool
}

// All collects the pending sets. The caller holds the lock.
func (o *Overlay[E]) All() View[E] {
	v := View[E]{Recs: map[string]*Rec{}}
	for _, p := range []*Set[E]{o.frozen, o.active} {
		if p.Empty() {
			continue
		}
		v.Any = true
		v.Reserved = max(v.Reserved, p.Reserved)
		maps.Copy(v.Recs, p.Recs)
		v.Events = append(v.Events, p.Events...)
	}
	return v
}

// Latest returns copies of the latest pending record of every key (Put
// updates a pending record in place under the lock), in key order. It
// takes the lock.
func (o *Overlay[E]) Latest() []*Rec {
	o.mu.RLock()
	defer o.mu.RUnlock()
	seen := map[string]bool{}
	var out []*Rec
	for _, p := range []*Set[E]{o.active, o.frozen} { // active first: it is newer
		if p == nil {
			continue
		}
		for k, r := range p.Recs {
			if !seen[k] {
				seen[k] = true
				cp := *r
				out = append(out, &cp)
			}
		}
	}
	// In key order: neighbours share leaves, so halves split few of them
	// (the store's freeing).
	slices.SortFunc(out, func(a, b *Rec) int { return strings.Compare(a.Key, b.Key) })
	return out
}
