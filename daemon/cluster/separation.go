package cluster

import (
	"strings"
	"time"

	"github.com/cloudknowledge/ck/internal/limits"
	"github.com/cloudknowledge/ck/store"
)

// Long separations (docs/PROTOCOL.md). A tombstone is purged after tombstone_ttl
// and its purge-log entry after purge_log_ttl; a peer that has not been in
// sync with this node for longer than that may hold a value deleted here
// whose purge-log entry is gone, and a sync would bring it back. So each
// node remembers, per peer and across restarts, when it was last in sync
// with it, and does not sync with a peer met again after longer than
// purge_log_ttl apart — unless its HELLO carries our digest root, when
// there is nothing to bring back. Such a peer is quarantined until the
// operator decides: `ckctl rejoin` on the stale node, or
// `ckctl members trust ID` (Trust) on both to sync anyway.
//
// A quarantined peer is, as far as data goes, on the other side of a
// partition: its HELLOs are heard (so the member table shows it), but no
// session is opened with it or served to it, it is not bootstrapped from,
// and its UPDATEs, ANNOUNCEs, QUERYs, ANSWERs, ACKs and FETCHes are dropped.
// Replication of new writes stops too: a received record cannot be told
// apart from an old one coming back (read repair and resends carry old
// records), and both sides keep taking writes, which a sync after a trust,
// or a rejoin's re-application, carries over later.
//
// The rule is symmetric — both sides compute it from their own record —
// and a node that refuses a session because it quarantines the opener says
// so, so the opener quarantines it too even when its own record is a
// heartbeat younger (unless the operator trusted that peer since they were
// last in sync). Nothing here deletes data.

// PeerRecord is what a node keeps about a peer across restarts.
type PeerRecord struct {
	Name string `json:"name,omitempty"`
	// LastInSync: this node's clock when it last saw the peer's HELLO carry
	// its own digest root, or completed a sync session with it.
	LastInSync time.Time `json:"last_in_sync,omitzero"`
	// Trusted: when the operator last trusted the peer (Trust). A trust
	// counts like being in sync for the quarantine rule, so it lasts until
	// the next sync, or for purge_log_ttl if none completes.
	Trusted time.Time `json:"trusted,omitzero"`
}

// PeerBook keeps the peer records of a node across restarts (the daemon's
// is data_dir/peers.json). Load is called once, by New; Save from one
// goroutine at a time, at most every peersSaveEvery, after a Trust, and
// when Run returns. Both may block on the disk. Save must not keep the map.
type PeerBook interface {
	Load() (map[store.NodeID]PeerRecord, error)
	Save(map[store.NodeID]PeerRecord) error
}

const (
	// DefaultPurgeLogTTL is Config.PurgeLogTTL's default (docs/PROTOCOL.md, Long separations).
	DefaultPurgeLogTTL = limits.DefaultPurgeLogTTL
	// peersSaveEvery is how often changed peer records are saved.
	peersSaveEvery = 5 * time.Second
	// refusedQuarantined starts the Refused reason of a session declined
	// because the responder quarantines the opener.
	refusedQuarantined = "quarantined"
)

// separated reports whether p was in sync with this node once, and
// neither that nor a trust happened within ttl.
func (p *peerSync) separated(now time.Time, ttl time.Duration) bool {
	if p.lastInSync.IsZero() {
		return false // never in sync: a new peer, which a sync cannot harm
	}
	last := p.lastInSync
	if p.trusted.After(last) {
		last = p.trusted
	}
	return now.Sub(last) > ttl
}

// trustPending reports whether the operator trusted p since they were
// last in sync.
func (p *peerSync) trustPending() bool { return p.trusted.After(p.lastInSync) }

// inSync records that p is in sync with this node now. It returns true if
// that lifts a quarantine.
func (s *syncer) inSyncLocked(p *peerSync, now time.Time) bool {
	lifted := p.quarantined
	p.quarantined = false
	p.diffs = 0
	if p.lastInSync.IsZero() || now.Sub(p.saved) > s.saveGrain {
		s.dirty = true
	}
	p.lastInSync = now
	return lifted
}

// quarantineLocked applies the rule to a peer whose root differs from
// ours; it returns true if it quarantines p now.
func (s *syncer) quarantineLocked(p *peerSync, now time.Time) bool {
	if p.quarantined || !p.separated(now, s.ttl) {
		return false
	}
	p.quarantined = true
	return true
}

// isQuarantined reports whether this node holds peer in quarantine.
func (s *syncer) isQuarantined(id store.NodeID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[id]
	return p != nil && p.quarantined
}

// refuseSession decides whether to serve a session peer opened: not if it
// is quarantined, or is found to be now (its top digests differ from ours
// and the rule holds). newly is true when this call quarantined it.
func (s *syncer) refuseSession(id store.NodeID, equal bool, now time.Time) (refuse, newly bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peer(id)
	if !equal {
		newly = s.quarantineLocked(p, now)
	}
	return p.quarantined, newly
}

// quarantinedBy records that peer refused a session because it holds this
// node in quarantine. This node quarantines it too unless the operator
// trusted it since they were last in sync (then the peer must be trusted
// there too). It returns whether that quarantined the peer now, and
// whether a trust is pending.
func (s *syncer) quarantinedBy(id store.NodeID) (newly, trustPending bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peer(id)
	if p.trustPending() {
		return false, true
	}
	newly = !p.quarantined
	p.quarantined = true
	p.diffs = 0
	return newly, false
}

// trust lifts a peer's quarantine at the operator's word.
func (s *syncer) trust(id store.NodeID, now time.Time) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peers[id]
	if p == nil || !p.quarantined {
		return ErrNotQuarantined
	}
	p.quarantined, p.diffs, p.trusted = false, 0, now
	s.dirty = true
	return nil
}

// load fills the syncer with the records of a PeerBook.
func (s *syncer) load(recs map[store.NodeID]PeerRecord) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, r := range recs {
		p := s.peer(id)
		p.name, p.lastInSync, p.trusted = r.Name, r.LastInSync, r.Trusted
		p.saved = r.LastInSync
	}
}

// records returns the peer records to save, and false when nothing
// changed enough to be worth a write: a peer's last-in-sync time moving by
// less than saveGrain is saved only when force is set (at stop). A save
// that fails is retried: call unsaved.
func (s *syncer) records(force bool) (map[store.NodeID]PeerRecord, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	changed := s.dirty
	for _, p := range s.peers {
		if force && !p.saved.Equal(p.lastInSync) {
			changed = true
		}
	}
	if !changed {
		return nil, false
	}
	out := make(map[store.NodeID]PeerRecord, len(s.peers))
	for id, p := range s.peers {
		if p.lastInSync.IsZero() && p.trusted.IsZero() {
			continue
		}
		out[id] = PeerRecord{Name: p.name, LastInSync: p.lastInSync, Trusted: p.trusted}
		p.saved = p.lastInSync
	}
	s.dirty = false
	return out, true
}

func (s *syncer) unsaved() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dirty = true
}

// latestInSync is the last time this node was in sync with any peer.
func (s *syncer) latestInSync() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	var t time.Time
	for _, p := range s.peers {
		if p.lastInSync.After(t) {
			t = p.lastInSync
		}
	}
	return t
}

// quarantined lists the peers held in quarantine.
func (s *syncer) quarantined() []store.NodeID {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []store.NodeID
	for id, p := range s.peers {
		if p.quarantined {
			out = append(out, id)
		}
	}
	return out
}

// savePeers saves the peer records if they changed (force: at all).
func (n *Node) savePeers(force bool) {
	if n.cfg.Peers == nil {
		return
	}
	n.saveMu.Lock()
	defer n.saveMu.Unlock()
	recs, ok := n.sync.records(force)
	if !ok {
		return
	}
	if err := n.cfg.Peers.Save(recs); err != nil {
		n.sync.unsaved()
		n.log.Error("could not save when this node was last in sync with its peers", "error", err)
	}
}

// logQuarantine says, loudly and once per peer per start, that a peer is
// quarantined and what the operator can do.
func (n *Node) logQuarantine(id store.NodeID, name, why string) {
	last, _ := n.LastInSync(id)
	n.once("quarantine:"+id.String(), func() {
		n.log.Error("long separation: this node will not sync with a peer (quarantined); "+
			"run `ckctl rejoin` on the stale node, or `ckctl members trust ID` on both nodes to sync anyway",
			"peer", name, "id", id, "why", why, "last_in_sync", last.UTC().Format(time.RFC3339),
			"apart", time.Since(last).Round(time.Second), "purge_log_ttl", n.cfg.PurgeLogTTL)
	})
}

// quarantineSeen handles a session a peer refused because it quarantines
// this node.
func (n *Node) quarantineSeen(peer Member) {
	newly, pending := n.sync.quarantinedBy(peer.ID)
	switch {
	case newly:
		n.logQuarantine(peer.ID, peer.Name, "the peer quarantines this node")
	case pending:
		n.once("trustpending:"+peer.ID.String(), func() {
			n.log.Warn("a peer trusted here still quarantines this node: trust this node on it too",
				"peer", peer.Name, "id", peer.ID, "run_there", "ckctl members trust "+n.id.String())
		})
	}
}

// Trust lifts the quarantine of a peer at the operator's word (`ckctl
// members trust ID`), records it durably, and lets syncing resume — once
// the peer trusts this node too, if it quarantines it. It returns
// ErrUnknownPeer for an id never heard nor remembered, and
// ErrNotQuarantined for a peer that is not quarantined.
func (n *Node) Trust(id store.NodeID) error {
	if err := n.sync.trust(id, time.Now()); err != nil {
		if _, heard := n.members.get(id); !heard && !n.sync.known(id) {
			return ErrUnknownPeer
		}
		return err
	}
	n.savePeers(true)
	name := id.String()
	if m, ok := n.members.get(id); ok {
		name = m.Name
	}
	n.log.Warn("peer trusted by the operator: syncing with it resumes once it trusts this node too",
		"peer", name, "id", id)
	return nil
}

// known reports whether the syncer has heard of, or remembers, a peer.
func (s *syncer) known(id store.NodeID) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.peers[id]
	return ok
}

// Quarantined lists the peers this node holds in quarantine.
func (n *Node) Quarantined() []store.NodeID { return n.sync.quarantined() }

// LatestInSync is the last time this node was in sync with any peer, as far
// as its peer book remembers; zero if never. A rejoin re-applies this
// node's own writes made after it.
func (n *Node) LatestInSync() time.Time { return n.sync.latestInSync() }

// isQuarantineRefusal reports whether a session's Refused reason says the
// responder quarantines the opener.
func isQuarantineRefusal(reason string) bool { return strings.HasPrefix(reason, refusedQuarantined) }
