package cluster

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// Overlapped replication (docs/ARCHITECTURE.md, "Overlapped replication"):
// a local write made with a context from Overlap goes to the peers from
// the store's committer (store.SetEarly) as soon as its version is
// assigned, while this node writes and syncs its log, instead of after
// that commit. The writes of one group commit go out together, as few
// datagrams as max_datagram allows (UPDATE's More). An ACK still means
// the peer holds the write durably, and the client's answer still waits
// for this node's own commit and then for the ACKs it asked for.

// overlapKey is the context key of a write's overlap note.
type overlapKey struct{}

// overlap is what the early hook and the writer share about one write.
type overlap struct {
	want int         // ACKs the writer will wait for (0: none)
	sent atomic.Bool // the early hook sent the write
}

// Overlap returns ctx marked so that a local write submitted to the store
// with it is sent to the peers while this node commits it, asking want of
// them to ACK (want <= 0: none). The writer then calls ReplicateAfter
// (want <= 0) or ReplicateWait with this context or one derived from it,
// which send the write only if it was not sent early (it did not fit a
// datagram, its version was not yet covered by the persisted
// reservation, or the store has no hook from this node).
func Overlap(ctx context.Context, want int) context.Context {
	return context.WithValue(ctx, overlapKey{}, &overlap{want: want})
}

func overlapOf(ctx context.Context) *overlap {
	if ctx == nil {
		return nil
	}
	o, _ := ctx.Value(overlapKey{}).(*overlap)
	return o
}

// sentEarly reports whether the write made with ctx went out early.
func sentEarly(ctx context.Context) bool {
	o := overlapOf(ctx)
	return o != nil && o.sent.Load()
}

// earlyHooker is a store that hands its writes over before their commit.
type earlyHooker interface{ SetEarly(store.EarlyFunc) }

// hookEarly makes the store hand this node its writes before their commit.
func (n *Node) hookEarly() {
	if h, ok := n.st.(earlyHooker); ok {
		h.SetEarly(n.sendEarly)
	}
}

// ReplicateAfter replicates rec, a local write committed with ctx, unless
// it was sent while it committed: Replicate for writes made with Overlap.
func (n *Node) ReplicateAfter(ctx context.Context, rec store.Record) {
	if !sentEarly(ctx) {
		n.Replicate(rec)
	}
}

// sendEarly is the store's early hook: it sends a group commit's writes
// that carry an overlap note, before their commit, registering for the
// ACKs of those waited for. It runs on the committing goroutine.
func (n *Node) sendEarly(ws []store.Early) {
	alive := -1
	var ups []wire.Update
	for _, w := range ws {
		o := overlapOf(w.Ctx)
		if o == nil {
			continue
		}
		if alive < 0 {
			alive = n.AlivePeers()
		}
		if alive == 0 {
			return // nothing to send: Replicate would send nothing either
		}
		rec := w.Record
		size := wire.UpdateSize(&rec, n.sealer)
		if size > n.cfg.MaxDatagram {
			// An ANNOUNCE makes peers fetch the record from this node's
			// store, which shows it only once committed.
			continue
		}
		req := wire.AckRequest{NoAck: true}
		if o.want > 0 && alive >= o.want {
			k := ackKey{rec.Key, rec.Origin, rec.Lamport}
			aw := n.acks.registerEarly(k, o.want, time.Now(), n.writeWitnesses(rec.Key))
			req = n.askAcks(aw, aw.asked, o.want, 0)
		}
		if size+wire.AckRequestSize(req) > n.cfg.MaxDatagram {
			req = wire.AckRequest{} // as updateFor: everyone ACKs
		}
		o.sent.Store(true)
		ups = append(ups, wire.Update{Record: rec, Hash: w.Hash, Raw: w.Raw, AckRequest: req})
	}
	n.broadcastUpdates(ups)
}

// broadcastUpdates sends ups to every node, as many in one datagram as
// fit max_datagram (the first as the UPDATE, the rest in its More). Each
// fits a datagram on its own. When they take several datagrams, each says
// how many follow it (Update.Follow), so that a receiver commits them all
// at once (hold.go); its room is kept free in every datagram of such a
// batch.
func (n *Node) broadcastUpdates(ups []wire.Update) {
	room := n.cfg.MaxDatagram
	if len(ups) > 1 {
		room -= wire.FollowSize(wire.MaxFollow)
	}
	var msgs []wire.Update
	var sizes []int
	for len(ups) > 0 {
		size := wire.UpdateSize(&ups[0].Record, n.sealer) + wire.AckRequestSize(ups[0].AckRequest)
		k := 1
		for ; k < len(ups); k++ {
			add := wire.MoreSize(&ups[k].Record, ups[k].AckRequest)
			if size+add+wire.MoreHeadSize(k) > room {
				break
			}
			size += add
		}
		msg := ups[0]
		if k > 1 {
			msg.More = ups[1:k]
		}
		msgs, sizes = append(msgs, msg), append(sizes, size)
		ups = ups[k:]
	}
	for i := range msgs {
		f := uint8(min(len(msgs)-1-i, wire.MaxFollow))
		if sizes[i]+wire.FollowSize(f) <= n.cfg.MaxDatagram {
			// Else a write alone nearly fills its datagram: it goes
			// unmarked, and the receiver commits what it held before it.
			msgs[i].Follow = f
		}
		n.broadcast(&msgs[i])
	}
}

// earlyClaimWithin is how long an early write's ACK registration waits
// for its writer (ReplicateWait) to claim it. A writer that never comes
// (its commit failed, or its caller gave up) leaves it behind; it is
// swept once this old.
const earlyClaimWithin = time.Minute

// registerEarly registers for the ACKs of a write sent before its commit,
// whose writer will wait for want of them, one from one of witnesses if
// there are any (writeWitnesses), for it to claim (claim).
func (t *ackTable) registerEarly(k ackKey, want int, now time.Time, witnesses []store.NodeID) *ackWait {
	t.mu.Lock()
	defer t.mu.Unlock()
	if now.Sub(t.swept) > earlyClaimWithin {
		t.swept = now
		for k, w := range t.waiting {
			if !w.early.IsZero() && now.Sub(w.early) > earlyClaimWithin {
				delete(t.waiting, k)
			}
		}
	}
	w := newAckWait(want, witnesses)
	w.asked, w.early = map[store.NodeID]bool{}, now
	t.waiting[k] = w
	return w
}

// claim returns the registration registerEarly left for k, with the peers
// it asked and when, for a waiter of want ACKs; ok is false when there is
// none (the write was not sent early, or waited for too long).
func (t *ackTable) claim(k ackKey, want int) (w *ackWait, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w = t.waiting[k]
	if w == nil || w.early.IsZero() {
		return nil, false
	}
	w.sentAt, w.early = w.early, time.Time{}
	w.wake = min(w.wake, want)
	return w, true
}
