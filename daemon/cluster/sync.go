package cluster

import (
	"context"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// maxServing bounds the sync sessions this node serves at once; beyond it
// an opener is refused and tries again later (or another peer). Without a
// bound, every peer of a node that was partitioned away would sync with it
// at the same moment.
const maxServing = 4

// Sync states (SyncState.State).
const (
	StateBootstrapping = "bootstrapping"
	StateSynced        = "synced"
)

// SyncState is where the node stands in its bootstrap (docs/PROTOCOL.md, Bootstrap).
type SyncState struct {
	State    string       // StateBootstrapping or StateSynced
	Peer     store.NodeID // the peer pulled from (zero while none is found, or when alone)
	PeerName string
	Received uint64 // records received from peers in bootstrap sessions
}

// maxGapFactor caps the wait between the sessions a node opens while
// they find nothing, in sync intervals: at the default 1 s, a node opens
// at most about one session a minute under steady writes, whatever the
// number of nodes (docs/ARCHITECTURE.md, Anti-entropy at scale).
const maxGapFactor = 60

// syncer is the node's anti-entropy state: per peer, the HELLO roots seen,
// when they were last in sync and whether it is quarantined
// (separation.go); node-wide, the session this node runs and those it
// serves, and how long to wait before opening the next.
type syncer struct {
	mu      sync.Mutex
	peers   map[store.NodeID]*peerSync
	running bool // a session this node opened is in progress
	serving int  // sessions served now
	state   SyncState

	// Pacing (docs/ARCHITECTURE.md, Anti-entropy at scale): after a
	// session that found nothing replication was not already carrying,
	// this node opens no other before nextOpen, gap later; gap doubles
	// from interval to maxGapFactor intervals while sessions find
	// nothing, and falls to zero on evidence of a fault (fault).
	interval time.Duration // sync_interval
	gap      time.Duration
	nextOpen time.Time
	ticks    [2]uint64         // this node's Lamport clock at its last two heartbeats, older first
	drops    uint64            // datagrams the transport had dropped at the last heartbeat
	faults   map[string]uint64 // evidence taken, by kind (fault's reason), for tests and debugging

	ttl       time.Duration // purge_log_ttl: longer apart is a long separation
	saveGrain time.Duration // a last-in-sync time moving less is not saved before the stop
	dirty     bool          // peer records changed enough to be saved

	received atomic.Uint64 // SyncState.Received
	// loading: this node bootstraps a store that was empty when the
	// bootstrap began, by bulk load (bootstrap.go, syncopen.go).
	loading atomic.Bool
}

type peerSync struct {
	epoch      uint64      // boot epoch and frame counter of the last HELLO
	counter    uint64      // counted, so a duplicate does not count twice
	diffs      int         // consecutive HELLOs whose root differed from ours
	roots      [2][32]byte // the peer's root in its last HELLO, and ours then
	stable     [32]byte    // the peer root of the last stable difference taken as a fault
	next       time.Time   // no session opened with this peer before then
	lastInSync time.Time   // equal roots in a HELLO, or a completed session
	name       string      // the peer's name, for the peer book

	trusted     time.Time // the operator trusted it (Trust)
	quarantined bool      // met again after a long separation (separation.go)
	saved       time.Time // lastInSync as last saved
}

func newSyncer(ttl, interval time.Duration) *syncer {
	return &syncer{
		peers: map[store.NodeID]*peerSync{}, state: SyncState{State: StateBootstrapping},
		ttl: ttl, saveGrain: ttl / 100, interval: interval,
	}
}

func (s *syncer) peer(id store.NodeID) *peerSync {
	p := s.peers[id]
	if p == nil {
		p = &peerSync{}
		s.peers[id] = p
	}
	return p
}

// helloVerdict is what noteHello decided about a HELLO.
type helloVerdict struct {
	open        bool // open a session with the peer now (the caller must end it)
	quarantined bool // the peer was quarantined by this HELLO
	lifted      bool // its quarantine was lifted: it carried our root
}

// noteHello records whether a peer's HELLO carried our root and applies
// the quarantine rule (separation.go). It reports whether to open a
// session with it now: its root differed in two consecutive HELLOs (one
// may just have crossed a write in flight), it is not quarantined nor
// bootstrapping (it pulls from one peer at a time), no other session of
// ours runs, none ran with it within the last interval, and this node's
// pacing allows one (nextOpen). Two consecutive HELLOs with the same
// differing root while ours stayed the same too are a difference no write
// in flight explains: a fault, which lifts the pacing, once per such root.
func (s *syncer) noteHello(id store.NodeID, name string, hdr wire.Header, theirs, ours [32]byte, peerSyncing bool, now time.Time) (v helloVerdict) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peer(id)
	// A duplicated or reordered datagram is not a second HELLO.
	if hdr.Epoch < p.epoch || hdr.Epoch == p.epoch && hdr.Counter <= p.counter {
		return v
	}
	p.epoch, p.counter = hdr.Epoch, hdr.Counter
	if p.name != name {
		p.name, s.dirty = name, s.dirty || !p.lastInSync.IsZero()
	}
	if theirs == ([32]byte{}) || ours == ([32]byte{}) {
		return v // a node still counting its records offers no root: nothing to compare
	}
	stable := p.roots == [2][32]byte{theirs, ours}
	p.roots = [2][32]byte{theirs, ours}
	if theirs == ours {
		v.lifted = s.inSyncLocked(p, now)
		return v
	}
	v.quarantined = s.quarantineLocked(p, now)
	if p.quarantined {
		return v
	}
	p.diffs++
	if stable && p.stable != theirs {
		p.stable = theirs
		s.faultLocked("stable difference", now)
	}
	if p.diffs < 2 || peerSyncing || s.state.State != StateSynced || s.running || now.Before(p.next) || now.Before(s.nextOpen) {
		return v
	}
	s.running = true
	p.next = now.Add(jitterAround(s.interval))
	v.open = true
	return v
}

// fault takes evidence that this node may lack what replication will not
// bring, or hold what its peers lack: a member back from suspect, gone or
// left, or restarted; a write whose wait for ACKs timed out; datagrams
// dropped; a session that repaired something. The next session may open
// at once, and sessions run at the full rate until one finds nothing.
func (s *syncer) fault(reason string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faultLocked(reason, now)
}

func (s *syncer) faultLocked(reason string, now time.Time) {
	s.gap, s.nextOpen = 0, now
	if s.faults == nil {
		s.faults = map[string]uint64{}
	}
	s.faults[reason]++
}

// sessionDone paces the next session this node opens after one it opened
// completed: at once if this one repaired something (repaired), else
// after a gap that doubles each time up to maxGapFactor intervals.
func (s *syncer) sessionDone(repaired bool, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if repaired {
		s.faultLocked("repaired", now)
		return
	}
	s.gap = min(max(2*s.gap, s.interval), maxGapFactor*s.interval)
	s.nextOpen = now.Add(jitterAround(s.gap))
}

// tick is called every heartbeat with this node's Lamport clock and the
// datagrams its transport dropped so far: more drops than at the last
// heartbeat are a fault.
func (s *syncer) tick(lamport, drops uint64, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ticks = [2]uint64{s.ticks[1], lamport}
	if drops > s.drops {
		s.faultLocked("drops", now)
	}
	s.drops = drops
}

// settled is this node's Lamport clock as of a heartbeat or two ago. A
// record a session moves whose lamport is no higher was written before
// then and did not arrive by replication: the session repaired something.
// Higher ones were most likely in flight, and replication was bringing
// them anyway.
func (s *syncer) settled() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ticks[0]
}

// jitterAround spreads d by ±20%, so that nodes that saw a difference at
// the same moment do not sync in lockstep.
func jitterAround(d time.Duration) time.Duration {
	return d - d/5 + time.Duration(rand.Int64N(int64(2*d/5)+1))
}

// begin claims the one session this node may open; false if one runs.
func (s *syncer) begin() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.running {
		return false
	}
	s.running = true
	return true
}

func (s *syncer) end() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running = false
}

func (s *syncer) acquireServe() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.serving >= maxServing {
		return false
	}
	s.serving++
	return true
}

func (s *syncer) releaseServe() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.serving--
}

// completed records a completed session with a peer: in sync now, and a
// HELLO that crossed the session does not count towards the next one.
func (s *syncer) completed(id store.NodeID, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.inSyncLocked(s.peer(id), now)
}

func (s *syncer) bootstrapping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state.State == StateBootstrapping
}

func (s *syncer) setPeer(m Member) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state.Peer, s.state.PeerName = m.ID, m.Name
}

func (s *syncer) synced() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.state.State = StateSynced
}

// Sync returns the node's bootstrap state. While it is "bootstrapping" the
// daemon marks reads Ck-Syncing: true and /v1/health answers 503 syncing.
func (n *Node) Sync() SyncState {
	n.sync.mu.Lock()
	st := n.sync.state
	n.sync.mu.Unlock()
	st.Received = n.sync.received.Load()
	return st
}

// Bootstrapping reports whether the node is still pulling its first
// complete copy from a peer: Sync().State == StateBootstrapping.
func (n *Node) Bootstrapping() bool { return n.sync.bootstrapping() }

// LastInSync returns when this node was last in sync with peer: a HELLO
// from it carrying our digest root, or a completed sync session. ok is
// false if never, as far as this node remembers (its PeerBook).
func (n *Node) LastInSync(peer store.NodeID) (t time.Time, ok bool) {
	n.sync.mu.Lock()
	defer n.sync.mu.Unlock()
	p := n.sync.peers[peer]
	if p == nil || p.lastInSync.IsZero() {
		return time.Time{}, false
	}
	return p.lastInSync, true
}

// helloRoot notes a peer's HELLO root (noteHello) before the member table
// shows the peer as alive, so that a bootstrap never picks a peer this
// HELLO quarantines. The caller passes the verdict to helloDone.
func (n *Node) helloRoot(h *wire.Hello, hdr wire.Header) helloVerdict {
	return n.sync.noteHello(h.ID, h.Name, hdr, h.Root, n.st.Root(), h.Syncing, time.Now())
}

// helloDone logs a change of quarantine and starts the anti-entropy
// session noteHello asked for.
func (n *Node) helloDone(ctx context.Context, m Member, v helloVerdict) {
	switch {
	case v.quarantined:
		n.logQuarantine(m.ID, m.Name, "met again after longer than purge_log_ttl apart, with another digest root")
	case v.lifted:
		n.log.Info("quarantine lifted: the peer now holds the same data as this node", "peer", m.Name, "id", m.ID)
	}
	if !v.open {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer n.sync.end()
		s, err := n.openSession(ctx, m, nil)
		if err == nil {
			n.sync.sessionDone(s.repaired > 0, time.Now())
		}
	}()
}
