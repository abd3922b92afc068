package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/daemon/transport"
	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// Store is what the protocol needs of the local store. *store.Store
// implements it. Apply and Get may block on the disk.
type Store interface {
	NodeID() store.NodeID
	Lamport() uint64
	Observe(l uint64)
	Keys() uint64
	Root() [32]byte
	// Counting: the store is still counting its records after a crash
	// (docs/ARCHITECTURE.md, "The digest at restart"): Root and the
	// digests are zero and no session may compare them.
	Counting() bool
	Get(key string) (store.Record, bool, error)
	// Peek is Get for peers: a record past its deadline here is returned
	// too, with Left 0 (docs/ARCHITECTURE.md, "Expiring and ephemeral keys").
	Peek(key string) (store.Record, bool, error)
	// PeekVersion is Peek without the value, which most QUERY answers
	// need alone (query.go).
	PeekVersion(key string) (store.Version, bool, error)
	Apply(ctx context.Context, rec store.Record) (store.ApplyResult, error)
	// NewApplier queues received records for the committer without
	// waiting: UPDATEs are applied through it (replicate.go).
	NewApplier(fn func([]store.ApplyDone)) *store.Applier
	// NewLoader and MergeStaged: a bootstrap into an empty store loads in
	// bulk, its key-hash index staged and merged once it is synced
	// (bootstrap.go, syncopen.go, store/bulk.go).
	NewLoader() *store.Loader
	MergeStaged(ctx context.Context) (int, error)

	// The digest tree and the key-hash index, for sync sessions. They
	// read memory (digests) or an index (entries), never the values.
	TopDigests() [256]store.Hash
	LeafDigests(top uint8) [256]store.Hash
	LeafEntries(leaf uint16) ([]store.LeafEntry, error)

	// Tombstones (docs/PROTOCOL.md): Get never returns an expired one; Apply
	// drops records the purge log covers, whose entries answer them.
	Expired(rec *store.Record) bool
	PurgedRecords(kh store.Hash) ([]store.Record, error)
}

var _ Store = (*store.Store)(nil)

// Config is the protocol's part of the node's configuration.
type Config struct {
	NodeName     string
	Cluster      string // cluster name: authenticated (or tagged) in every frame
	Epoch        uint64 // this boot's epoch (store.NextEpoch)
	Heartbeat    time.Duration
	DeadAfter    time.Duration
	MaxDatagram  int
	TombstoneTTL time.Duration
	// PurgeLogTTL: a peer met again after longer than this without being
	// in sync is quarantined (docs/PROTOCOL.md, Long separations); 0: 720h.
	PurgeLogTTL  time.Duration
	QueryTimeout time.Duration // a fresh read's wait for answers; 0: 500ms
	SyncInterval time.Duration // at most one sync per peer this often (jittered); 0: 1s
	// FreshWitnesses is how many witnesses each key has (witness.go): a
	// fresh read asks those alone while the member table is settled, and
	// a write waiting for ACKs waits for one of them. 0: off (every fresh
	// read asks every node); at most MaxFreshWitnesses.
	FreshWitnesses int
	HookHash       func() string // the hook configuration's hash, for HELLO
	Sealer         wire.Sealer   // datagrams; nil: plaintext frames tagged with the cluster name
	// Keyring, when set, seals every stream (seal.Client / seal.Server);
	// frames inside a sealed stream then travel as plaintext frames.
	Keyring *seal.Keyring
	// Peers keeps when this node was last in sync with each peer across
	// restarts; nil: in memory only, so a restart forgets it.
	Peers  PeerBook
	Logger hclog.Logger
}

// Defaults of Config's optional durations (docs/PROTOCOL.md, Fresh reads, Anti-entropy).
const (
	DefaultQueryTimeout = 500 * time.Millisecond
	DefaultSyncInterval = time.Second
)

// Node is one member of the cluster: it says HELLO, tracks members,
// replicates local writes and applies its peers'.
type Node struct {
	cfg     Config
	tr      transport.Transport
	st      Store
	id      store.NodeID
	log     hclog.Logger
	sealer  wire.Sealer
	members *members
	acks    *ackTable
	acker   acker // ACKs owed, coalesced per writer
	updates *store.Applier
	queries *queryTable
	sync    *syncer
	stats   Stats
	started atomic.Int64 // unix ns when Run started; 0 before
	beat    atomic.Int64 // ns until this node's next HELLO, as HELLO announces it
	dupID   chan uint64  // the newer epoch of a node using our id (buffered 1)
	dupOnce sync.Once

	counter  atomic.Uint64 // datagram frame counter within this epoch
	scounter atomic.Uint64 // stream frame counter: apart, so streams never move datagram replay windows
	plain    wire.Sealer   // frames inside streams: sealed by the stream itself when there is a key
	applying chan struct{} // bounds concurrent applies of received records
	wg       sync.WaitGroup
	recvMu   sync.Mutex  // one received datagram handled at a time (dispatch)
	held     heldBatches // received batches waiting for their last datagram (hold.go), under recvMu
	loggedMu sync.Mutex
	logged   map[string]bool // once-only warnings (protocol version, hook hash)
	saveMu   sync.Mutex      // one PeerBook save at a time, in order
}

// New returns a node; Run starts it.
func New(cfg Config, tr transport.Transport, st Store) *Node {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.HookHash == nil {
		cfg.HookHash = func() string { return "" }
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = DefaultQueryTimeout
	}
	if cfg.SyncInterval <= 0 {
		cfg.SyncInterval = DefaultSyncInterval
	}
	if cfg.PurgeLogTTL <= 0 {
		cfg.PurgeLogTTL = DefaultPurgeLogTTL
	}
	cfg.FreshWitnesses = min(max(cfg.FreshWitnesses, 0), MaxFreshWitnesses)
	s := cfg.Sealer
	if s == nil {
		s = wire.Plaintext(cfg.Cluster)
	}
	n := &Node{
		cfg:      cfg,
		tr:       tr,
		st:       st,
		id:       st.NodeID(),
		log:      cfg.Logger,
		sealer:   s,
		plain:    wire.Plaintext(cfg.Cluster),
		members:  newMembers(cfg.Heartbeat, cfg.DeadAfter),
		acks:     newAckTable(),
		queries:  newQueryTable(),
		sync:     newSyncer(cfg.PurgeLogTTL, cfg.SyncInterval),
		dupID:    make(chan uint64, 1),
		applying: make(chan struct{}, 64),
		logged:   map[string]bool{},
	}
	n.members.quarantined = n.sync.isQuarantined
	n.updates = st.NewApplier(n.updatesApplied)
	if cfg.Peers != nil {
		recs, err := cfg.Peers.Load()
		if err != nil {
			n.log.Error("could not load when this node was last in sync with its peers: long separations go undetected", "error", err)
		}
		n.sync.load(recs)
	}
	n.hookEarly()
	return n
}

// Addr is this node's unicast address.
func (n *Node) Addr() netip.AddrPort { return n.tr.Addr() }

// Run says HELLO every heartbeat, bootstraps from a peer (Sync), keeps
// in sync with the others, receives datagrams and streams, and returns nil
// when ctx ends, after saying BYE. It returns ErrDuplicateID, without BYE,
// when another node runs with this node's id.
func (n *Node) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	n.started.Store(time.Now().UnixNano())
	n.beat.Store(int64(n.cfg.Heartbeat))
	n.wg.Add(3)
	go func() { defer n.wg.Done(); n.receive(ctx) }()
	go func() { defer n.wg.Done(); n.acceptStreams(ctx) }()
	go func() { defer n.wg.Done(); n.bootstrap(ctx) }()
	n.sendHello()
	t := time.NewTimer(jitter(n.cfg.Heartbeat))
	defer t.Stop()
	save := time.NewTicker(peersSaveEvery)
	defer save.Stop()
	for {
		select {
		case <-ctx.Done():
			n.sendBye()
			n.shutdown(cancel)
			return nil
		case epoch := <-n.dupID:
			// No BYE: it would carry our id, and peers would mark the
			// other process as left.
			n.log.Error("duplicate node id: another node runs with this node's id and a newer boot epoch; "+
				"was this data dir copied? (restore with ckctl import instead) — stopping",
				"id", n.id, "epoch", n.cfg.Epoch, "theirs", epoch)
			n.shutdown(cancel)
			return fmt.Errorf("%w %s: another node runs with it (boot epoch %d, ours %d); was the data dir copied?",
				ErrDuplicateID, n.id, epoch, n.cfg.Epoch)
		case <-t.C:
			// The interval is fixed before the HELLO that announces it,
			// so a peer never waits for this node by a shorter one.
			beat := n.members.interval(time.Now())
			n.beat.Store(int64(beat))
			n.sendHello()
			n.sync.tick(n.st.Lamport(), n.transportDrops(), time.Now())
			t.Reset(jitter(beat))
		case <-save.C:
			n.savePeers(false)
		}
	}
}

// shutdown stops every goroutine of the node: cancel ends sessions and
// applies, closing the transport ends the receive and accept loops.
func (n *Node) shutdown(cancel context.CancelFunc) {
	cancel()
	n.tr.Close()
	n.wg.Wait()
	n.savePeers(true)
}

// dropCounter is a transport that counts the datagrams it dropped on
// receipt (transport.UDP, natstransport, simnet).
type dropCounter interface{ Stats() transport.Stats }

// transportDrops is how many received datagrams the transport dropped
// (its queue full, the kernel's buffer full): lost UPDATEs, perhaps.
func (n *Node) transportDrops() uint64 {
	dc, ok := n.tr.(dropCounter)
	if !ok {
		return 0
	}
	st := dc.Stats()
	return st.DroppedQueueFull + st.DroppedKernel
}

// heardRound reports whether a heartbeat has passed since Run started, so
// that every live peer has had the chance to say HELLO.
func (n *Node) heardRound() bool {
	st := n.started.Load()
	return st != 0 && time.Since(time.Unix(0, st)) >= n.cfg.Heartbeat
}

// jitter spreads heartbeats of length hb by ±10% so nodes started
// together do not send in lockstep.
func jitter(hb time.Duration) time.Duration {
	return hb - hb/10 + time.Duration(rand.Int64N(int64(hb/5)+1))
}

// heartbeat is this node's heartbeat now: the configured one, stretched
// in a cluster of more than 16 members (docs/ARCHITECTURE.md, Heartbeats
// at scale).
func (n *Node) heartbeat() time.Duration {
	if b := n.beat.Load(); b > 0 {
		return time.Duration(b)
	}
	return n.cfg.Heartbeat
}

func (n *Node) hello() *wire.Hello {
	return &wire.Hello{
		ID:           n.id,
		Name:         n.cfg.NodeName,
		Epoch:        n.cfg.Epoch,
		Addr:         n.tr.Addr().String(),
		Proto:        wire.Proto,
		Lamport:      n.st.Lamport(),
		Keys:         n.st.Keys(),
		Root:         n.st.Root(),
		HookHash:     n.cfg.HookHash(),
		TombstoneTTL: n.cfg.TombstoneTTL.Milliseconds(),
		Syncing:      n.sync.bootstrapping() || n.st.Counting(), // no session with a node without a digest
		Interval:     max(n.heartbeat().Milliseconds(), 1),
		Witnesses:    uint8(n.cfg.FreshWitnesses),
	}
}

func (n *Node) sendHello() { n.broadcast(n.hello()) }

func (n *Node) sendBye() {
	bye := &wire.Bye{ID: n.id, Epoch: n.cfg.Epoch}
	n.broadcast(bye)
	n.broadcast(bye) // a second copy against loss; BYE is idempotent
}

// header starts a frame from this node.
func (n *Node) header() wire.Header {
	return wire.Header{Sender: n.id, Epoch: n.cfg.Epoch, Counter: n.counter.Add(1)}
}

func (n *Node) encode(msg wire.Message) ([]byte, error) {
	return wire.Encode(n.header(), msg, n.sealer)
}

// encodeStream frames a message for a stream.
func (n *Node) encodeStream(msg wire.Message) ([]byte, error) {
	h := wire.Header{Sender: n.id, Epoch: n.cfg.Epoch, Counter: n.scounter.Add(1)}
	return wire.Encode(h, msg, n.plain)
}

func (n *Node) broadcast(msg wire.Message) {
	b, err := n.encode(msg)
	if err != nil {
		n.log.Error("encode", "type", msg.Type(), "error", err)
		return
	}
	if err := n.tr.Broadcast(b); err != nil && !errors.Is(err, errClosed) {
		n.stats.sendErrors.Add(1)
		n.log.Debug("broadcast", "error", err)
	}
	n.stats.sent.Add(1)
}

func (n *Node) sendTo(to netip.AddrPort, msg wire.Message) {
	b, err := n.encode(msg)
	if err != nil {
		n.log.Error("encode", "type", msg.Type(), "error", err)
		return
	}
	n.send(to, b)
}

// send sends an encoded frame to one node.
func (n *Node) send(to netip.AddrPort, b []byte) {
	if err := n.tr.SendTo(to, b); err != nil {
		n.stats.sendErrors.Add(1)
		n.log.Debug("send", "to", to, "error", err)
	}
	n.stats.sent.Add(1)
}

// receive dispatches datagrams until the transport closes. A transport
// that can (transport.Direct) hands them over on the goroutine that read
// them: one goroutine hand-off less per datagram, which on a loaded host
// is a thread wake-up less on both legs of a replicated write (the UPDATE
// at each peer, the ACK at its writer). Those queued before, and all of a
// transport that cannot, come through Packets.
func (n *Node) receive(ctx context.Context) {
	if d, ok := n.tr.(transport.Direct); ok {
		d.Deliver(func(p transport.Packet) { n.dispatch(ctx, p) })
	}
	for p := range n.tr.Packets() {
		n.dispatch(ctx, p)
	}
}

// dispatch handles one datagram. One at a time (recvMu): a transport
// delivering directly reads each socket on a goroutine of its own, and the
// handlers expect the datagrams of a node in one sequence, as the single
// reader of Packets gave them.
func (n *Node) dispatch(ctx context.Context, p transport.Packet) {
	n.recvMu.Lock()
	defer n.recvMu.Unlock()
	n.stats.received.Add(1)
	hdr, msg, err := wire.Decode(p.Buf, n.sealer)
	if err != nil {
		n.drop(wire.Reason(err), err)
		return
	}
	if hdr.Sender == n.id {
		n.fromSelf(hdr, msg)
		return
	}
	if n.members.heard(hdr.Sender, time.Now()) {
		n.sync.fault("member back", time.Now())
		n.greet(hdr.Sender)
	}
	if carriesData(msg) && n.sync.isQuarantined(hdr.Sender) {
		n.drop("quarantined", fmt.Errorf("%v from a quarantined peer", msg.Type()))
		return
	}
	n.handle(ctx, p.From, hdr, msg)
}

func (n *Node) handle(ctx context.Context, from netip.AddrPort, hdr wire.Header, msg wire.Message) {
	switch m := msg.(type) {
	case *wire.Hello:
		n.handleHello(ctx, from, hdr, m)
	case *wire.Bye:
		if left, news := n.members.bye(m.ID, m.Epoch, time.Now()); news {
			n.log.Info("member left", "name", left.Name, "id", m.ID)
		}
	case *wire.Update:
		n.handleUpdates(ctx, from, m.Updates())
	case *wire.Announce:
		n.spawnApply(ctx, func() { n.handleAnnounce(ctx, from, m) })
	case *wire.Ack:
		n.acks.ack(ackKey{m.Key, m.Origin, m.Lamport}, m.From)
		for _, e := range m.More {
			n.acks.ack(ackKey{e.Key, e.Origin, e.Lamport}, m.From)
		}
	case *wire.Query:
		n.handleQuery(from, m) // on the receive path: cheap and never waits (query.go)
	case *wire.Answer:
		n.queries.answer(hdr.Sender, from, m)
	default:
		n.drop("unexpected", fmt.Errorf("datagram of type %v", msg.Type()))
	}
}

// greet sends a member back from suspect or gone our HELLO at once, as
// handleHello does for a new one: it learns that we are back too within a
// round trip, not a (stretched) heartbeat, and its answer is the second
// HELLO with a differing root that anti-entropy waits for, so a healed
// partition syncs at once. Idle cost is unchanged: this happens only when
// a member returns.
func (n *Node) greet(id store.NodeID) {
	if m, ok := n.members.get(id); ok && m.Addr.IsValid() {
		n.sendTo(m.Addr, n.hello())
	}
}

// carriesData reports whether a datagram moves records or versions between
// nodes: what a quarantined peer's are dropped for (separation.go).
func carriesData(msg wire.Message) bool {
	switch msg.(type) {
	case *wire.Hello, *wire.Bye:
		return false
	}
	return true
}

// fromSelf handles a frame carrying our own node id: our own broadcast
// looping back (same epoch), a replay (older epoch), or another process
// running with a copy of our data dir (a HELLO with a newer epoch), which
// stops this node.
func (n *Node) fromSelf(hdr wire.Header, msg wire.Message) {
	if _, ok := msg.(*wire.Hello); !ok || hdr.Epoch <= n.cfg.Epoch {
		return
	}
	n.stats.duplicateID.Store(true)
	n.dupOnce.Do(func() { n.dupID <- hdr.Epoch })
}

func (n *Node) handleHello(ctx context.Context, from netip.AddrPort, hdr wire.Header, h *wire.Hello) {
	if h.Proto>>8 != wire.Proto>>8 {
		n.once("proto:"+h.ID.String(), func() {
			n.log.Warn("ignoring a node speaking another protocol version", "id", h.ID, "proto", h.Proto, "ours", wire.Proto)
		})
		return
	}
	if h.ID != hdr.Sender {
		n.drop("malformed", fmt.Errorf("hello for %s sent by %s", h.ID, hdr.Sender))
		return
	}
	addr, err := netip.ParseAddrPort(h.Addr)
	if err != nil {
		addr = from
	}
	v := n.helloRoot(h, hdr)
	m, fresh, ok := n.members.hello(h, addr, time.Now())
	if !ok {
		if v.open {
			n.sync.end()
		}
		return
	}
	n.st.Observe(h.Lamport)
	if fresh {
		// It may be a receiver restarted after a crash, which refuses our
		// frames up to the reservation it saved of our counter: skip past
		// any, so that our answer and all after it are heard (a 64-bit
		// counter does not run out by it).
		n.counter.Add(seal.MaxReservation)
		n.sync.fault("member new", time.Now()) // a new member, a restart, or back after BYE
		n.log.Info("member joined", "name", m.Name, "id", m.ID, "addr", m.Addr)
		// Answer a newcomer at once rather than at our next heartbeat, so
		// that a starting node learns the cluster (and whom to bootstrap
		// from) within a round trip. Idle cost is unchanged: this happens
		// only when a member appears.
		n.sendTo(addr, n.hello())
	}
	n.helloDone(ctx, m, v)
	if hh := n.cfg.HookHash(); h.HookHash != hh {
		n.once("hooks:"+h.ID.String()+h.HookHash, func() {
			n.log.Warn("a peer runs other hooks: conflicts may resolve differently", "peer", h.Name, "theirs", h.HookHash, "ours", hh)
		})
	}
	if ttl := n.cfg.TombstoneTTL.Milliseconds(); h.TombstoneTTL != ttl {
		n.once("ttl:"+h.ID.String(), func() {
			n.log.Warn("a peer has another tombstone_ttl", "peer", h.Name, "theirs_ms", h.TombstoneTTL, "ours_ms", ttl)
		})
	}
}

// spawnApply runs fn on its own goroutine, at most cap(applying) at once,
// so that received records are group-committed together; beyond that the
// receive loop waits, and the transport drops (and counts) what it cannot
// queue.
func (n *Node) spawnApply(ctx context.Context, fn func()) {
	select {
	case n.applying <- struct{}{}:
	case <-ctx.Done():
		return
	}
	n.wg.Add(1)
	go func() {
		defer func() { <-n.applying; n.wg.Done() }()
		fn()
	}()
}

func (n *Node) drop(reason string, err error) {
	n.stats.dropped(reason)
	n.log.Trace("dropped a frame", "reason", reason, "error", err)
}

func (n *Node) once(key string, fn func()) {
	n.loggedMu.Lock()
	defer n.loggedMu.Unlock()
	if !n.logged[key] {
		n.logged[key] = true
		fn()
	}
}

// Members is the member table, this node included.
func (n *Node) Members() []Member {
	now := time.Now()
	self := Member{
		ID: n.id, Name: n.cfg.NodeName, Addr: n.tr.Addr(), State: Alive, Epoch: n.cfg.Epoch,
		Keys: n.st.Keys(), Lamport: n.st.Lamport(), Root: n.st.Root(), LastHeard: now, Self: true,
		Interval: n.heartbeat(),
	}
	return append([]Member{self}, n.members.list(now)...)
}

// AlivePeers is the number of other members alive now.
func (n *Node) AlivePeers() int { return n.members.countAlive(time.Now()) }
