package cluster

import (
	"context"
	"time"

	"github.com/cloudknowledge/ck/store"
)

const (
	// bootstrapAlone is how many heartbeats a starting node waits without
	// any alive peer before it concludes it is the first (or only) node:
	// peers answer a newcomer's HELLO at once, so this only has to cover
	// lost datagrams.
	bootstrapAlone = 3
	// progressEvery is how often a bootstrap logs its progress.
	progressEvery = 5 * time.Second
)

// bootstrap pulls everything this node lacks from one peer at a time
// (docs/PROTOCOL.md, Bootstrap): a sync session, which against an empty store
// streams every record of the peer's. It prefers the first peer heard
// that is not bootstrapping itself, tries the others in turn when a
// session fails or is refused, and ends — Sync().State "synced" — at the
// first completed session, or when no peer has been alive for
// bootstrapAlone heartbeats. It runs at every start: a restarted node
// catches up the same way as a new one.
func (n *Node) bootstrap(ctx context.Context) {
	if !n.st.Counting() && n.st.TopDigests() == ([256]store.Hash{}) {
		// An empty store: its sessions ask for everything and load it in
		// bulk (syncopen.go), and it serves no session that would push
		// records at it meanwhile (syncserve.go). A store still counting
		// its records after a crash shows zero digests too, but is not
		// empty (only a file past the store's countInlineSize is counted in the
		// background, docs/ARCHITECTURE.md "The digest at restart"): it
		// pulls what it lacks, once counted, as any restarted node.
		n.sync.loading.Store(true)
	}
	n.pull(ctx)
	n.sync.loading.Store(false)
	n.mergeStaged(ctx)
}

// mergeStaged moves a bulk load's staged key-hash index entries into the
// index (store/bulk.go), once the node is synced: the store is whole and
// correct meanwhile, so the bootstrap does not wait for it. A load cut
// short by a crash left some too; none cost a read.
func (n *Node) mergeStaged(ctx context.Context) {
	start := time.Now()
	moved, err := n.st.MergeStaged(ctx)
	if err != nil {
		if ctx.Err() == nil {
			n.log.Warn("merging the staged key-hash index failed; the next bootstrap merges it", "error", err)
		}
		return
	}
	if moved > 0 {
		n.log.Info("bootstrap: staged key-hash index merged", "entries", moved, "took", time.Since(start))
	}
}

// pull is the bootstrap's loop (bootstrap).
func (n *Node) pull(ctx context.Context) {
	start := time.Now()
	lonely := start // since when no peer has been alive
	tried := map[store.NodeID]time.Time{}
	for ctx.Err() == nil {
		now := time.Now()
		peer, ok := n.bootstrapPeer(now, now.Sub(start) >= n.cfg.Heartbeat, tried)
		if !ok {
			if n.AlivePeers() > 0 {
				lonely = now
			} else if now.Sub(lonely) >= bootstrapAlone*n.cfg.Heartbeat {
				n.sync.synced()
				if q := n.Quarantined(); len(q) > 0 {
					n.log.Warn("no peer to pull from but quarantined ones (long separation): synced with what this node holds",
						"keys", n.st.Keys(), "quarantined", len(q))
					return
				}
				n.log.Info("no peer answered: starting alone, synced", "keys", n.st.Keys())
				return
			}
			sleep(ctx, n.cfg.Heartbeat/10)
			continue
		}
		lonely = now
		if n.st.Counting() { // no session before the digest is whole (docs/ARCHITECTURE.md, "The digest at restart")
			sleep(ctx, n.cfg.Heartbeat/10)
			continue
		}
		if n.pullFrom(ctx, peer) {
			return
		}
		tried[peer.ID] = time.Now()
	}
}

// bootstrapPeer picks the peer to pull from: the first heard that is not
// bootstrapping and was not tried within the last sync interval. A peer
// that is bootstrapping too is taken only once a heartbeat has passed
// (every settled peer had time to answer): when a whole cluster restarts,
// its nodes pull from each other.
func (n *Node) bootstrapPeer(now time.Time, settled bool, tried map[store.NodeID]time.Time) (Member, bool) {
	var fallback *Member
	for _, m := range n.members.byFirstHeard(now) {
		if t, ok := tried[m.ID]; ok && now.Sub(t) < n.cfg.SyncInterval {
			continue
		}
		if !m.Syncing {
			return m, true
		}
		if fallback == nil {
			fallback = &m
		}
	}
	if fallback != nil && settled {
		return *fallback, true
	}
	return Member{}, false
}

// pullFrom runs one bootstrap session with peer, logging its progress,
// and reports whether it completed (then the node is synced).
func (n *Node) pullFrom(ctx context.Context, peer Member) bool {
	for !n.sync.begin() { // an anti-entropy session cannot run yet; be sure
		if !sleep(ctx, n.cfg.Heartbeat/10) {
			return false
		}
	}
	defer n.sync.end()
	n.sync.setPeer(peer)
	n.log.Info("bootstrap: pulling from a peer", "peer", peer.Name, "id", peer.ID, "peer_keys", peer.Keys)
	start, last := time.Now(), time.Now()
	got := uint64(0)
	progress := func(k int) {
		got += uint64(k)
		n.sync.received.Add(uint64(k))
		if now := time.Now(); now.Sub(last) >= progressEvery {
			last = now
			n.log.Info("bootstrap progress", "peer", peer.Name, "received", got,
				"per_second", rate(got, now.Sub(start)))
		}
	}
	if _, err := n.openSession(ctx, peer, progress); err != nil {
		if ctx.Err() == nil {
			n.log.Warn("bootstrap: session did not complete; trying again", "peer", peer.Name, "received", got, "error", err)
		}
		return false
	}
	took := time.Since(start)
	n.sync.synced()
	n.log.Info("bootstrap complete: synced", "peer", peer.Name, "received", got, "keys", n.st.Keys(),
		"took", took, "per_second", rate(got, took))
	return true
}

func rate(n uint64, d time.Duration) uint64 {
	if d <= 0 {
		return n
	}
	return uint64(float64(n) / d.Seconds())
}

// sleep waits d or until ctx ends; false if ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
