package cluster

import (
	"context"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/cloudknowledge/ck/store"
)

// A writer's group commit reaches a peer as several datagrams when its
// writes do not fit one (broadcastUpdates), each saying how many more of
// the batch follow it (wire.Update.Follow). Queued as they came, the
// first datagram's writes committed alone and the rest, arrived during
// that fsync, in a second commit: two fsyncs and two ACK datagrams per
// writer batch, and the batch's last writes waited for the second. So a
// receiver holds a batch's writes, per sender, until its last datagram
// arrives, then queues them together: one commit, one ACK datagram
// (docs/ARCHITECTURE.md, "Overlapped replication").
//
// A lost or reordered datagram costs little and loses nothing: a datagram
// from the sender that does not continue the held batch (a new batch, a
// resend, a datagram of the batch out of order) releases it first, and a
// timer releases it holdFor after it began. What stays lost is resent by
// the writer or carried by anti-entropy, as before. Everything here runs
// under recvMu, the timer's release included: the held writes and those
// received after them reach the store in the order received.

// holdFor bounds how long a batch is held for its missing datagrams. A
// batch's datagrams leave back to back (tens of µs apart on loopback);
// the timer fires up to 1 ms late under ckd's timer slack
// (docs/ARCHITECTURE.md, "Timer slack"), so a loss costs 2–3 ms.
const holdFor = 2 * time.Millisecond

// Memory bounds: writes held for one sender (the size of a group commit,
// store's maxBatch), and senders holding at once. Beyond either, writes
// are queued as they come.
const (
	maxHeldWrites  = 1024
	maxHeldSenders = 64
)

// updateBatch is received writes on their way to the store: each record,
// its encoding as wire.Decode checked it (nil: none, the store checks),
// the hash it came with, and its tag (a *queuedUpdate).
type updateBatch struct {
	recs   []store.Record
	raws   [][]byte
	hashes []store.Hash
	tags   []any
}

func (b *updateBatch) add(o updateBatch) {
	b.recs, b.raws, b.hashes, b.tags = append(b.recs, o.recs...), append(b.raws, o.raws...),
		append(b.hashes, o.hashes...), append(b.tags, o.tags...)
}

// heldBatch is the part of one sender's batch received so far.
type heldBatch struct {
	ctx  context.Context
	left uint8 // datagrams still to come
	updateBatch
	timer *time.Timer
}

// heldBatches are the batches held, by sender.
type heldBatches struct {
	by map[netip.AddrPort]*heldBatch
	// Counts, for tests: batches held whole until their last datagram,
	// and those released early (not continued, or timed out).
	whole, broken atomic.Uint64
}

// takeUpdates queues the writes of one UPDATE datagram from from that
// says follow more of its batch come after it, or holds them for those.
// Called with recvMu held.
func (n *Node) takeUpdates(ctx context.Context, from netip.AddrPort, follow uint8, ups updateBatch) {
	if h := n.held.by[from]; h != nil {
		if follow+1 == h.left && len(h.recs)+len(ups.recs) <= maxHeldWrites {
			h.add(ups)
			h.left = follow
			if follow == 0 {
				n.held.whole.Add(1)
				n.release(from, h)
			}
			return
		}
		n.held.broken.Add(1)
		n.release(from, h)
	}
	if follow == 0 || len(n.held.by) >= maxHeldSenders {
		n.queueUpdates(ctx, ups)
		return
	}
	if n.held.by == nil {
		n.held.by = map[netip.AddrPort]*heldBatch{}
	}
	h := &heldBatch{ctx: ctx, left: follow, updateBatch: ups}
	h.timer = time.AfterFunc(holdFor, func() {
		n.recvMu.Lock()
		defer n.recvMu.Unlock()
		if n.held.by[from] == h { // not released meanwhile
			n.held.broken.Add(1)
			n.release(from, h)
		}
	})
	n.held.by[from] = h
}

// release queues a held batch and forgets it. Called with recvMu held.
func (n *Node) release(from netip.AddrPort, h *heldBatch) {
	h.timer.Stop()
	delete(n.held.by, from)
	n.queueUpdates(h.ctx, h.updateBatch)
}

// queueUpdates hands received writes to the store's committer.
func (n *Node) queueUpdates(ctx context.Context, ups updateBatch) {
	if len(ups.recs) > 0 {
		n.updates.ApplyHashed(ctx, ups.recs, ups.raws, ups.hashes, ups.tags)
	}
}
