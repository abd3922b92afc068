package store

import (
	"context"
	"fmt"
	"math"
)

// The Lamport clock (DESIGN §3). L lives in memory; what makes it safe
// across crashes is the reservation, a meta value R persisted in the same
// transaction as any record whose lamport exceeds it (then R = lamport +
// lamportBlock). Every lamport stored is <= R, and Open starts L at
// max(R, every stored lamport), so after a crash L never goes back and no
// lamport handed out before the crash is handed out again.
const (
	lamportBlock = 1000
	// MaxLamport bounds the lamports the store accepts from others, so
	// that L+1 and L+lamportBlock cannot overflow however long a cluster runs.
	MaxLamport = math.MaxUint64 / 4
	// MaxClockJump bounds how far one received or imported record may move
	// the clock: a record whose lamport is more than this above L is
	// refused (ErrClockJump). Legitimate records never come close: a
	// peer's lamports are at most its own L, which its HELLOs announce
	// (Observe) every heartbeat, and L grows by one a local write. So a
	// hostile record (an import line, a buggy peer) moves the clock by at
	// most 2^32, and the 2^62 of headroom below MaxLamport needs 2^30 of
	// them, each refused beyond the bound and counted, to run out
	// (docs/ARCHITECTURE.md, "Hostile records").
	MaxClockJump = 1 << 32
	// MaxVVEntries bounds a version vector's size: one entry per node
	// that ever wrote the key (a rejoin makes a new node id).
	MaxVVEntries = 4096
)

// Lamport returns the node's current clock L: the last lamport written,
// resolved or observed.
func (s *Store) Lamport() uint64 { return s.lamport.Load() }

// Observe raises L to l if l is larger (a lamport heard from a peer in a
// HELLO, which is authenticated by the cluster key). It is not persisted by
// itself: the next write or apply that uses a larger value persists the
// reservation covering it. It never raises L past MaxLamport-MaxClockJump,
// so that a local write always has headroom.
func (s *Store) Observe(l uint64) {
	s.raise(min(l, MaxLamport-MaxClockJump))
}

// raise sets L = max(L, l).
func (s *Store) raise(l uint64) {
	for {
		cur := s.lamport.Load()
		if l <= cur || s.lamport.CompareAndSwap(cur, l) {
			return
		}
	}
}

// Reserved returns the persisted reservation R: after a crash L restarts at
// no less than it.
func (s *Store) Reserved() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.reserved
}

// Reserve makes the persisted reservation at least upTo (+lamportBlock when
// it has to move), through the committer, and returns once that is durable.
// It exists for the cluster code: a node that sends lamports before the
// commit that stores them (DESIGN §4 lets the origin send an UPDATE in
// parallel with its commit) calls Reserve(ctx, Lamport()+n) first, so a
// crash between the send and the commit cannot make it reuse them.
func (s *Store) Reserve(ctx context.Context, upTo uint64) error {
	if upTo > MaxLamport {
		return fmt.Errorf("%w: reservation %d above the maximum lamport", ErrBadRecord, upTo)
	}
	if upTo <= s.Reserved() {
		return nil
	}
	return s.submit(ctx, &request{kind: reqReserve, reserve: upTo})
}

// cover raises the batch's reservation so that it covers l.
func (st *txState) cover(l uint64) {
	if l > st.reserved {
		st.reserved = l + lamportBlock
		st.reservedDirty = true
	}
}

// tick advances the batch's L for a local write.
func (st *txState) tick() uint64 {
	st.l++
	st.cover(st.l)
	return st.l
}
