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

// SyncState is where the node stands in its bootstrap (DESIGN §4).
type SyncState struct {
	State    string       // StateBootstrapping or StateSynced
	Peer     store.NodeID // the peer pulled from (zero while none is found, or when alone)
	PeerName string
	Received uint64 // records received from peers in bootstrap sessions
}

// syncer is the node's anti-entropy state: per peer, the HELLO roots seen
// and when they were last in sync; node-wide, the session this node runs
// and those it serves.
type syncer struct {
	mu      sync.Mutex
	peers   map[store.NodeID]*peerSync
	running bool // a session this node opened is in progress
	serving int  // sessions served now
	state   SyncState

	received atomic.Uint64 // SyncState.Received
}

type peerSync struct {
	epoch      uint64    // boot epoch and frame counter of the last HELLO
	counter    uint64    // counted, so a duplicate does not count twice
	diffs      int       // consecutive HELLOs whose root differed from ours
	next       time.Time // no session opened with this peer before then
	lastInSync time.Time // equal roots in a HELLO, or a completed session
}

func newSyncer() *syncer {
	return &syncer{peers: map[store.NodeID]*peerSync{}, state: SyncState{State: StateBootstrapping}}
}

func (s *syncer) peer(id store.NodeID) *peerSync {
	p := s.peers[id]
	if p == nil {
		p = &peerSync{}
		s.peers[id] = p
	}
	return p
}

// noteHello records whether a peer's HELLO carried our root, and reports
// whether to open a session with it now: its root differed in two
// consecutive HELLOs (one may just have crossed a write in flight), it is
// not bootstrapping (it pulls from one peer at a time), no other session
// of ours runs, and none ran with it within the last interval.
func (s *syncer) noteHello(id store.NodeID, hdr wire.Header, equal, peerSyncing bool, now time.Time, interval time.Duration) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peer(id)
	// A duplicated or reordered datagram is not a second HELLO.
	if hdr.Epoch < p.epoch || hdr.Epoch == p.epoch && hdr.Counter <= p.counter {
		return false
	}
	p.epoch, p.counter = hdr.Epoch, hdr.Counter
	if equal {
		p.diffs, p.lastInSync = 0, now
		return false
	}
	p.diffs++
	if p.diffs < 2 || peerSyncing || s.state.State != StateSynced || s.running || now.Before(p.next) {
		return false
	}
	s.running = true
	p.next = now.Add(jitterAround(interval))
	return true
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
	p := s.peer(id)
	p.diffs, p.lastInSync = 0, now
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
// false if never since this node started.
func (n *Node) LastInSync(peer store.NodeID) (t time.Time, ok bool) {
	n.sync.mu.Lock()
	defer n.sync.mu.Unlock()
	p := n.sync.peers[peer]
	if p == nil || p.lastInSync.IsZero() {
		return time.Time{}, false
	}
	return p.lastInSync, true
}

// helloRoot compares a peer's HELLO root with ours and starts an
// anti-entropy session with it when noteHello says so.
func (n *Node) helloRoot(ctx context.Context, m Member, hdr wire.Header, h *wire.Hello) {
	equal := h.Root == n.st.Root()
	if !n.sync.noteHello(m.ID, hdr, equal, h.Syncing, time.Now(), n.cfg.SyncInterval) {
		return
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer n.sync.end()
		n.openSession(ctx, m, nil)
	}()
}
