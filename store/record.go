package store

import (
	"bytes"
	"cmp"
	"fmt"
)

// Stamp is a (lamport, origin) pair: the total order last-writer-wins ranks
// writes by. Origins break lamport ties, so two distinct writes never tie.
type Stamp struct {
	Lamport uint64
	Origin  NodeID
}

// Compare orders stamps by lamport, then origin: -1, 0 or +1.
func (s Stamp) Compare(o Stamp) int {
	if c := cmp.Compare(s.Lamport, o.Lamport); c != 0 {
		return c
	}
	return s.Origin.Compare(o.Origin)
}

// Less reports whether s ranks below o.
func (s Stamp) Less(o Stamp) bool { return s.Compare(o) < 0 }

func (s Stamp) String() string { return fmt.Sprintf("%d@%s", s.Lamport, s.Origin) }

// Record is one version of a key: a value or a tombstone, with the version
// information replicas compare (docs/PROTOCOL.md, Versions). A Record's VV and Value are not
// modified once it is handed out; copy before changing them.
type Record struct {
	Key      string
	Value    []byte // nil or empty for a tombstone
	Deleted  bool   // a tombstone
	VV       VV
	Lamport  uint64 // the version users see; the compare-and-set token
	Origin   NodeID // the node that wrote it (a resolution: the winner's)
	LWW      Stamp  // the original write last-writer-wins ranks it by
	At       int64  // the origin's wall clock at the write, unix ms
	Fallback bool   // a conflict hook failed and last-writer-wins decided
	// TTL is how long the record lives after its write, in ms, set by the
	// origin (0: for ever). It is hashed and replicated like the rest; the
	// expiry itself is local (ttl.go, docs/ARCHITECTURE.md, "Expiring
	// and ephemeral keys").
	TTL int64
	// Ephemeral, when not 0, binds the record to its origin's life: it is
	// the origin's boot epoch at the write, and the record is visible only
	// while that boot of the origin runs and is reachable (ephemeral.go).
	// Hashed and replicated like the rest.
	Ephemeral uint64

	// Left is not part of the record's bytes or hash: for a record with a
	// TTL, the ms of life it had left where it was read (a read fills it;
	// 0: expired), and what a message carrying the record says to its
	// receiver, which Apply takes as the record's remaining lifetime.
	Left int64
}

// Hash is SHA-256 over the record's canonical CBOR (every field), truncated
// to 128 bits: equal on every node for equal records.
func (r *Record) Hash() Hash { return hashBytes(encodeRecord(r)) }

// Compare says how a relates to b (docs/PROTOCOL.md, Compare): by version vector; when the
// vectors are equal but the contents differ (nodes that resolved the same
// conflict differently), a record without Fallback beats one with it, then
// the larger hash wins, so every replica converges on the same one.
func Compare(a, b *Record) Order {
	if o := a.VV.Compare(b.VV); o != Same {
		return o
	}
	return tieBreak(a, a.Hash(), b, b.Hash())
}

// tieBreak orders two records with equal vectors given their hashes.
func tieBreak(a *Record, ha Hash, b *Record, hb Hash) Order {
	switch {
	case ha == hb:
		return Same
	case a.Fallback != b.Fallback:
		if b.Fallback {
			return Newer
		}
		return Older
	case bytes.Compare(ha[:], hb[:]) > 0:
		return Newer
	}
	return Older
}

// Resolver decides the content of a conflict (the daemon's Lua on_conflict
// hook). It may block briefly: it runs on the path of received writes. It
// must not modify winner or loser, and it must be deterministic — every node
// resolving the same pair has to reach the same result.
type Resolver interface {
	// Resolve decides the content replacing two concurrent versions.
	// winner/loser are ranked by (LWW, hash) descending. It returns the
	// value and deleted flag. An error means "fall back to
	// last-writer-wins" (winner's content, Fallback=true).
	Resolve(key string, winner, loser *Record) (value []byte, deleted bool, err error)
}

// Resolve merges two concurrent versions of key (docs/PROTOCOL.md, Resolve). It is pure:
// the result depends only on a, b (in either order) and r, so every node
// resolving the pair stores the same bytes. vv = max, lamport = max + 1,
// origin, lww, ttl = the winner's, at = max; the content is r's decision, or the
// winner's when r is nil, fails or panics (then Fallback is set).
func Resolve(key string, a, b *Record, r Resolver) Record {
	w, l := rank(a, b)
	value, deleted, fallback := w.Value, w.Deleted, false
	if r != nil {
		if v, d, err := callResolver(r, key, w, l); err != nil {
			fallback = true
		} else {
			value, deleted = v, d
		}
	}
	// The resolution lives as long as the write that won, whose lifetime
	// (a local deadline) each node knows; a deleted result lives for ever.
	ttl, left, eph := w.TTL, w.Left, w.Ephemeral
	if deleted {
		value, ttl, left, eph = nil, 0, 0, 0
	}
	return Record{
		Key:       key,
		Value:     value,
		Deleted:   deleted,
		VV:        a.VV.Merge(b.VV),
		Lamport:   max(a.Lamport, b.Lamport) + 1,
		Origin:    w.Origin,
		LWW:       w.LWW,
		At:        max(a.At, b.At),
		Fallback:  fallback,
		TTL:       ttl,
		Left:      left,
		Ephemeral: eph,
	}
}

// rank returns (winner, loser) by (LWW, hash) descending.
func rank(a, b *Record) (w, l *Record) {
	c := a.LWW.Compare(b.LWW)
	if c == 0 {
		ha, hb := a.Hash(), b.Hash()
		c = bytes.Compare(ha[:], hb[:])
	}
	if c >= 0 {
		return a, b
	}
	return b, a
}

// callResolver turns a panicking hook into a failed one: a bad script must
// not take down the node (and a panic is as deterministic as an error).
func callResolver(r Resolver, key string, w, l *Record) (v []byte, d bool, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("resolver panicked: %v", p)
		}
	}()
	return r.Resolve(key, w, l)
}
