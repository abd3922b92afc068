package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// resendEvery is how often a write that waits for acknowledgements is sent
// again (docs/PROTOCOL.md, Replication).
const resendEvery = 200 * time.Millisecond

// fetchTimeout bounds one fetch of an announced record.
const fetchTimeout = 5 * time.Second

var errClosed = net.ErrClosed

// ackKey names one write: the key and its origin's (origin, lamport).
type ackKey struct {
	key     string
	origin  store.NodeID
	lamport uint64
}

// ackTable collects ACKs for writes someone waits on.
type ackTable struct {
	mu      sync.Mutex
	waiting map[ackKey]*ackWait
	swept   time.Time // when unclaimed early registrations were last swept (early.go)
}

type ackWait struct {
	from    map[store.NodeID]bool
	changed chan struct{} // closed and replaced on every new ack from the wake-th on
	// wake is the fewest ACKs any waiter waits for: an ACK before that
	// wakes nobody, so a write waiting for 2 is woken once, not per ACK.
	wake int
	// A write sent before its commit (early.go): the peers asked and
	// when, and until its writer claims it, early is when it was sent.
	asked         map[store.NodeID]bool
	early, sentAt time.Time
	// witnesses are the key's witnesses, best first, when the writer is
	// not one of them (writeWitnesses); set at registration, then read
	// only. While needWitness, the wait is not done whatever the count:
	// a fresh read that asks the witnesses alone must find a holder of
	// the write among them (docs/PROTOCOL.md, Fresh reads).
	witnesses   []store.NodeID
	needWitness bool
}

// newAckWait is a registration for want ACKs of a write whose key's
// witnesses (nil: none to wait for) are witnesses.
func newAckWait(want int, witnesses []store.NodeID) *ackWait {
	return &ackWait{from: map[store.NodeID]bool{}, changed: make(chan struct{}), wake: want,
		witnesses: witnesses, needWitness: len(witnesses) > 0}
}

// wakeLocked wakes w's waiters when it has the ACKs it waits for: the
// fewest any waiter wants, one of them from a witness if it needs one.
// Called with the table's lock held.
func (w *ackWait) wakeLocked() {
	if len(w.from) >= w.wake && !w.needWitness {
		close(w.changed)
		w.changed = make(chan struct{})
	}
}

func newAckTable() *ackTable { return &ackTable{waiting: map[ackKey]*ackWait{}} }

// register registers a waiter for want ACKs of k, one of them from one
// of witnesses when there are any (writeWitnesses).
func (t *ackTable) register(k ackKey, want int, witnesses []store.NodeID) *ackWait {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.waiting[k]
	if w == nil {
		w = newAckWait(want, witnesses)
		t.waiting[k] = w
	}
	w.wake = min(w.wake, want)
	return w
}

func (t *ackTable) forget(k ackKey) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.waiting, k)
}

// ack records an ACK from a node; ACKs nobody waits for are ignored.
func (t *ackTable) ack(k ackKey, from store.NodeID) {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := t.waiting[k]
	if w == nil || w.from[from] {
		return
	}
	w.from[from] = true
	if w.needWitness && slices.Contains(w.witnesses, from) {
		w.needWitness = false
	}
	w.wakeLocked()
}

// dropWitness stops w waiting for a witness's ACK: none of its witnesses
// is alive any more, and the wait falls back to its count.
func (t *ackTable) dropWitness(w *ackWait) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if w.needWitness {
		w.needWitness = false
		w.wakeLocked()
	}
}

// from returns a copy of the nodes that acknowledged w so far.
func (t *ackTable) from(w *ackWait) map[store.NodeID]bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return maps.Clone(w.from)
}

// count returns how many acknowledged w, whether one of them is a witness
// it waits for (true when it waits for none), and a channel closed at the
// next ACK that may complete it.
func (t *ackTable) count(w *ackWait) (int, bool, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(w.from), !w.needWitness, w.changed
}

// Replicate sends a local write to every node: whole when it fits a
// datagram, else announced so that receivers fetch it over a stream.
// Nobody waits for it, so it asks for no ACK.
//
// With no peer alive it sends nothing: a peer that is suspect, starting or
// away catches up through anti-entropy, and a lone node saves the datagram
// on every write.
func (n *Node) Replicate(rec store.Record) {
	if n.AlivePeers() == 0 {
		return
	}
	n.broadcast(n.updateFor(rec, wire.AckRequest{NoAck: true}))
}

// updateFor is the UPDATE (or ANNOUNCE) of rec asking req for ACKs. When
// req's fields would push an UPDATE that fits max_datagram over it, they
// are left out (every receiver then ACKs, as before they existed) rather
// than turn the UPDATE into an ANNOUNCE and a fetch.
func (n *Node) updateFor(rec store.Record, req wire.AckRequest) wire.Message {
	if size := wire.UpdateSize(&rec, n.sealer); size <= n.cfg.MaxDatagram {
		up := wire.NewUpdate(rec)
		if size+wire.AckRequestSize(req) <= n.cfg.MaxDatagram {
			up.AckRequest = req
		}
		return up
	}
	return &wire.Announce{
		KeyHash: store.KeyHash(rec.Key), Key: rec.Key, Origin: rec.Origin, Lamport: rec.Lamport,
		Hash: rec.Hash(), Holder: n.tr.Addr().String(), NoAck: req.NoAck, AckFrom: req.AckFrom,
	}
}

// WaitAcks waits until want distinct peers acknowledge holding rec (or a
// descendant) durably, resending it every 200 ms, until timeout or ctx
// ends. It returns how many acknowledged. With fewer alive peers than
// want it returns at once with ErrTooFewPeers. rec was replicated before,
// asking nobody to ACK: it sends it again at once, asking a few peers
// (askAcks). ReplicateWait does both without that second send.
func (n *Node) WaitAcks(ctx context.Context, rec store.Record, want int, timeout time.Duration) (int, error) {
	if want <= 0 {
		return 0, nil
	}
	return n.waitAcks(ctx, rec, want, timeout)
}

// ReplicateWait is Replicate and WaitAcks: it registers for the ACKs
// before the first send, so each peer receives (and applies) the write
// once unless a datagram is lost. With want <= 0 it is Replicate; with
// fewer alive peers than want it replicates and returns ErrTooFewPeers.
// A write made with a context from Overlap (ctx, or one it derives from)
// that went out before its commit is not sent again: the wait goes on
// from that send, counting the ACKs that came meanwhile.
func (n *Node) ReplicateWait(ctx context.Context, rec store.Record, want int, timeout time.Duration) (int, error) {
	if want <= 0 || n.AlivePeers() < want {
		n.ReplicateAfter(ctx, rec)
	}
	if want <= 0 {
		return 0, nil
	}
	return n.waitAcks(ctx, rec, want, timeout)
}

// waitAcks registers for rec's ACKs, sends rec, and waits (WaitAcks).
func (n *Node) waitAcks(ctx context.Context, rec store.Record, want int, timeout time.Duration) (int, error) {
	k := ackKey{rec.Key, rec.Origin, rec.Lamport}
	w, early := n.acks.claim(k, want)
	defer n.acks.forget(k)
	if alive := n.AlivePeers(); alive < want {
		return 0, fmt.Errorf("%w: %d alive, %d asked", ErrTooFewPeers, alive, want)
	}
	// One timer for the resends and the deadline, whichever is next.
	deadline := time.Now().Add(timeout)
	timer := time.NewTimer(min(resendEvery, timeout))
	defer timer.Stop()
	var asked map[store.NodeID]bool
	var sent time.Time
	if early {
		asked, sent = w.asked, w.sentAt
	} else {
		w, asked = n.acks.register(k, want, n.writeWitnesses(rec.Key)), map[store.NodeID]bool{}
		n.broadcast(n.updateFor(rec, n.askAcks(w, asked, want, 0)))
		sent = time.Now()
	}
	for round := 1; ; {
		got, witnessed, changed := n.acks.count(w)
		if got >= want && witnessed {
			return got, nil
		}
		select {
		case <-changed:
		case now := <-timer.C:
			if left := deadline.Sub(now); left > 0 {
				// A resend carries its age: a receiver that missed the
				// first UPDATE gives the record no longer life.
				n.broadcast(n.updateFor(aged(rec, time.Since(sent)), n.askAcks(w, asked, want, round)))
				round++
				timer.Reset(min(resendEvery, left))
				continue
			}
			// Some peer alive by our table does not hold the write:
			// evidence of a fault for anti-entropy (sync.go).
			n.sync.fault("wait missed", time.Now())
			return got, context.DeadlineExceeded
		case <-ctx.Done():
			return got, ctx.Err()
		}
	}
}

// ackSpare is how many peers beyond those it waits for a write asks to
// ACK: one slow or lost answer then costs no resend.
const ackSpare = 1

// askAcks chooses which peers a write waiting for want ACKs asks
// (docs/ARCHITECTURE.md, Fan-in): want-acked+ackSpare peers at first, twice
// as many each resend, those asked before that have not answered first,
// then the key's witnesses it waits for (best first), then others at
// random. When that would be every alive peer that has not answered, or
// more than wire.MaxAckFrom, it asks everyone (the zero AckRequest). asked
// keeps the peers asked so far. At a resend (round > 0) with none of the
// witnesses alive any more, the write stops waiting for one of them.
func (n *Node) askAcks(w *ackWait, asked map[store.NodeID]bool, want, round int) wire.AckRequest {
	acked := n.acks.from(w)
	var buf [8]store.NodeID
	var pending, fresh []store.NodeID
	witnessAlive := false
	for _, id := range n.members.aliveIDs(time.Now(), buf[:0]) {
		witnessAlive = witnessAlive || slices.Contains(w.witnesses, id)
		switch {
		case acked[id]:
		case asked[id]:
			pending = append(pending, id)
		default:
			fresh = append(fresh, id)
		}
	}
	if round > 0 && len(w.witnesses) > 0 && !witnessAlive {
		n.acks.dropWitness(w)
	}
	target := (want - len(acked) + ackSpare) << min(round, 8)
	if target >= len(pending)+len(fresh) || target > wire.MaxAckFrom {
		return wire.AckRequest{}
	}
	rand.Shuffle(len(fresh), func(i, j int) { fresh[i], fresh[j] = fresh[j], fresh[i] })
	witnessesFirst(fresh, w.witnesses)
	list := append(pending, fresh[:max(target-len(pending), 0)]...)
	for _, id := range list {
		asked[id] = true
	}
	return wire.AckRequest{AckFrom: list}
}

// witnessesFirst moves the ids of ids that are among witnesses to its
// front, in the order of witnesses; the others keep their order after them.
func witnessesFirst(ids, witnesses []store.NodeID) {
	front := 0
	for _, wid := range witnesses {
		if i := slices.Index(ids[front:], wid); i >= 0 {
			i += front
			// Shift ids[front:i] right by one: the others keep their order.
			copy(ids[front+1:i+1], ids[front:i])
			ids[front] = wid
			front++
		}
	}
}

// handleUpdates queues the writes of an UPDATE (coalesced or not) for the
// store's committer and returns: no goroutine per write, and the committer
// gathers them with whatever else is queued, other datagrams' writes
// included (one ApplyBatch per datagram measured 25 % slower,
// docs/BENCHMARKS.md, "Replicated writes"). Each is acknowledged by
// updatesApplied once the commit that includes it has returned. The
// datagrams of one writer batch are queued together (hold.go): ups[0]
// is the datagram's own UPDATE, whose Follow counts those still to come.
// A write's hash was checked by wire.Decode, which keeps the encoding it
// checked (Update.Raw) for the store to take as it is (ApplyHashed):
// one encoding and one hash per received write. A write without it (not
// from Decode) is checked by the store, and one that does not match its
// hash is dropped as before (updatesApplied).
func (n *Node) handleUpdates(ctx context.Context, from netip.AddrPort, ups []*wire.Update) {
	recs := make([]store.Record, len(ups))
	raws := make([][]byte, len(ups))
	hashes := make([]store.Hash, len(ups))
	tags := make([]any, len(ups))
	qs := make([]queuedUpdate, len(ups)) // one allocation for the datagram's writes
	for i, up := range ups {
		recs[i], raws[i], hashes[i] = up.Record, up.Raw, up.Hash
		qs[i] = queuedUpdate{ctx: ctx, from: from, up: up}
		tags[i] = &qs[i]
	}
	n.takeUpdates(ctx, from, ups[0].Follow, updateBatch{recs, raws, hashes, tags})
}

// queuedUpdate is a received write in the store's queue.
type queuedUpdate struct {
	ctx  context.Context
	from netip.AddrPort
	up   *wire.Update
}

// updatesApplied acknowledges the received writes a commit has made
// durable (or found this node already holding, or something newer):
// one ACK datagram per writer for the whole commit. It runs on the
// committing goroutine, or on the receive loop for writes refused before
// they were queued.
func (n *Node) updatesApplied(done []store.ApplyDone) {
	// By writer: a slice, not a map, as a commit's writes come from one
	// writer or a few, and the first gets room for all of them at once.
	type owedTo struct {
		to netip.AddrPort
		es []wire.AckEntry
	}
	var owed []owedTo
	for _, d := range done {
		q := d.Tag.(*queuedUpdate)
		if errors.Is(d.Err, store.ErrHashMismatch) {
			n.drop("hash", fmt.Errorf("update for %q: record does not match its hash", q.up.Record.Key))
			continue
		}
		if d.Err != nil {
			n.applyFailed(q.ctx, q.up.Record.Key, d.Err)
			continue
		}
		n.stats.applied(d.Result.Outcome)
		rec := &q.up.Record
		if q.up.Wants(n.id) && d.Result.Record.VV.Dominates(rec.VV) {
			i := slices.IndexFunc(owed, func(o owedTo) bool { return o.to == q.from })
			if i < 0 {
				i = len(owed)
				owed = append(owed, owedTo{to: q.from, es: make([]wire.AckEntry, 0, len(done))})
			}
			owed[i].es = append(owed[i].es, wire.AckEntry{Key: rec.Key, Origin: rec.Origin, Lamport: rec.Lamport})
		}
	}
	for _, o := range owed {
		n.acker.send(n, o.to, o.es...)
	}
}

// handleAnnounce fetches an announced record unless this node already
// holds it, applies it, and acknowledges it.
func (n *Node) handleAnnounce(ctx context.Context, from netip.AddrPort, a *wire.Announce) {
	cur, found, err := n.st.Peek(a.Key)
	if err != nil {
		n.log.Warn("read for an announce", "key", a.Key, "error", err)
		return
	}
	if !found || cur.Hash() != a.Hash && cur.VV[a.Origin] < a.Lamport {
		holder, err := netip.ParseAddrPort(a.Holder)
		if err != nil {
			holder = from
		}
		rec, ok := n.fetch(ctx, holder, a.Key)
		if !ok {
			return
		}
		if cur, err = n.apply(ctx, rec); err != nil {
			return
		}
	}
	// vv[origin] >= lamport means cur descends from the announced write.
	if a.Acks().Wants(n.id) && cur.VV[a.Origin] >= a.Lamport {
		n.acker.send(n, from, wire.AckEntry{Key: a.Key, Origin: a.Origin, Lamport: a.Lamport})
	}
}

// apply stores a received record and returns what the store then holds.
func (n *Node) apply(ctx context.Context, rec store.Record) (store.Record, error) {
	res, err := n.applyResult(ctx, rec)
	return res.Record, err
}

// applyResult is apply with the store's outcome. A Dropped record (an
// expired tombstone, or a deleted value coming back) leaves Record as the
// store holds the key afterwards: zero when it holds nothing.
func (n *Node) applyResult(ctx context.Context, rec store.Record) (store.ApplyResult, error) {
	res, err := n.st.Apply(ctx, rec)
	if err != nil {
		n.applyFailed(ctx, rec.Key, err)
		return store.ApplyResult{}, err
	}
	n.stats.applied(res.Outcome)
	return res, nil
}

// applyFailed counts and logs a received record the store did not take.
func (n *Node) applyFailed(ctx context.Context, key string, err error) {
	if ctx.Err() == nil { // not merely stopping
		n.stats.applyErrors.Add(1)
		n.log.Warn("could not apply a received record", "key", key, "error", err)
	}
}
