package store

import (
	"context"
	"fmt"
	"time"
)

// Ephemeral keys (docs/ARCHITECTURE.md, "Expiring and ephemeral keys"). A
// record with Ephemeral set belongs to its origin's boot: Ephemeral is the
// origin's boot epoch at the write. Like an expiry, whether it shows is a
// local decision over unchanged bytes: on the origin, while that boot runs
// (Ephemeral equals this store's epoch); elsewhere, while the Liveness the
// cluster gives says that boot of the origin is alive or suspect. The
// origin deletes its ephemeral records of earlier boots when it starts
// (StaleEphemeral), with real tombstones, so a restart removes them for
// good; a write from another node makes the key an ordinary one.

// Liveness reports whether owner's boot epoch is alive (or suspect) as
// this node sees it. It is called on reads, so it must be fast and not
// call back into the store.
type Liveness func(owner NodeID, epoch uint64) bool

// SetLiveness sets how the store tells whether another node's boot runs
// (the cluster's member table). Until it is set, other nodes' ephemeral
// records show.
func (s *Store) SetLiveness(f Liveness) { s.liveness.Store(&f) }

// Epoch returns this boot's epoch (NextEpoch), 0 before it is taken.
func (s *Store) Epoch() uint64 { return s.epoch.Load() }

// SetOptions are the options of a local write (SetWith).
type SetOptions struct {
	// IfVersion makes the write conditional, as Set's ifVersion.
	IfVersion *uint64
	// IfSame makes the write conditional on the key still holding the
	// very record whose Hash this is (a record Get returned), else it fails
	// with ErrChanged. A version does not name one record: two
	// resolutions whose newest side is the same write both take its
	// lamport + 1, and the later can replace the earlier. A write derived
	// from the record it read (an on_set hook's read-modify-write) needs
	// this, or it drops what the replacing record brought.
	IfSame *Hash
	// TTL: the record lives this long (ttl.go); 0: for ever.
	TTL time.Duration
	// Ephemeral binds the record to this boot of this node. It takes the
	// epoch NextEpoch gave; it cannot be combined with a TTL.
	Ephemeral bool
}

// SetWith is Set with options: a TTL, or an ephemeral record.
func (s *Store) SetWith(ctx context.Context, key string, value []byte, o SetOptions) (Record, error) {
	if !o.Ephemeral {
		if err := ValidateKey(key); err != nil {
			return Record{}, err
		}
		if err := s.checkTTL(o.TTL); err != nil {
			return Record{}, err
		}
		return s.set(ctx, key, value, o, o.TTL.Milliseconds(), 0)
	}
	if o.TTL != 0 {
		return Record{}, fmt.Errorf("%w: a record is either ephemeral or has a ttl", ErrBadTTL)
	}
	epoch := s.epoch.Load()
	if epoch == 0 {
		return Record{}, fmt.Errorf("%w: no boot epoch taken (NextEpoch)", ErrBadTTL)
	}
	return s.set(ctx, key, value, o, 0, epoch)
}

// DeleteWith is Delete with SetOptions' conditions; a tombstone takes no
// TTL and is not ephemeral.
func (s *Store) DeleteWith(ctx context.Context, key string, o SetOptions) (Record, error) {
	if o.TTL != 0 || o.Ephemeral {
		return Record{}, fmt.Errorf("%w: a delete takes no ttl and is not ephemeral", ErrBadTTL)
	}
	return s.del(ctx, key, o)
}

// ownerLive reports whether an ephemeral record of owner, written in boot
// epoch, shows on this node.
func (s *Store) ownerLive(owner NodeID, epoch uint64) bool {
	if owner == s.nodeID {
		return epoch == s.epoch.Load()
	}
	if f := s.liveness.Load(); f != nil && *f != nil {
		return (*f)(owner, epoch)
	}
	return true
}

// ephemeralGone reports whether rec is an ephemeral record whose owner's
// boot is not alive here.
func (s *Store) ephemeralGone(rec *Record) bool {
	return rec.Ephemeral != 0 && !rec.Deleted && !s.ownerLive(rec.Origin, rec.Ephemeral)
}

// StaleEphemeral calls fn with every ephemeral record this node wrote in
// an earlier boot that is still its key's record: what the node deletes
// when it starts. It reads in chunks (Scan).
func (s *Store) StaleEphemeral(fn func(Record) error) error {
	epoch := s.epoch.Load()
	return s.scan("", false, func(r Record) error {
		if r.Ephemeral != 0 && !r.Deleted && r.Origin == s.nodeID && r.Ephemeral != epoch {
			return fn(r)
		}
		return nil
	})
}
