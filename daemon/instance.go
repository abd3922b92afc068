package daemon

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/cloudknowledge/ck/daemon/cluster"
	"github.com/cloudknowledge/ck/daemon/natsbridge"
	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/rpc"
	"github.com/cloudknowledge/ck/store"
)

// instance is one life of the node on one store (docs/ARCHITECTURE.md,
// "The daemon"): the store and its peer book, the cluster transport, the
// datagram replay filter, the protocol node and the NATS bridge. A start
// opens one; a rejoin (rejoin.go) stops it and opens the next on a fresh
// store. Everything that uses these parts reaches them through the
// daemon's slot, never through fields of the Daemon, so a swap is one
// pointer.
type instance struct {
	store     *store.Store
	peers     *peerFile
	transport ClusterTransport
	replay    *seal.Replay // nil without a cluster key
	node      *cluster.Node
	bridge    *natsbridge.Bridge // nil without a nats block

	// run is the instance's one group of goroutines (the node, the
	// bridge, the drop of an earlier boot's ephemeral keys), from start
	// to stop; nil before start.
	run      *group
	stopOnce sync.Once

	// users counts those holding the instance from the slot (acquire);
	// release is users.Done, made once (a method value per request is an
	// allocation on every API call).
	users   sync.WaitGroup
	release func()

	// waits ends the --wait of the writes made through this instance
	// (waitContext): its retirement (a rejoin, a stop) cuts them short,
	// so that neither waits on a peer's ACK.
	waits    context.Context
	endWaits context.CancelCauseFunc
}

// openStore opens the store at its path (a fresh one if the file is gone)
// and its peer book.
func (d *Daemon) openStore() (*store.Store, *peerFile, error) {
	st, err := store.Open(d.cfg.StorePath(), d.storeOptions())
	if errors.Is(err, store.ErrLocked) {
		return nil, nil, fmt.Errorf("%w: data dir %s is in use (its store is locked by another process)", ErrAlreadyRunning, d.cfg.DataDir)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("store %s: %w", d.cfg.StorePath(), err)
	}
	pf, ignored, err := openPeerFile(filepath.Join(d.cfg.DataDir, peersFileName), st.NodeID())
	if err != nil {
		st.Close()
		return nil, nil, fmt.Errorf("peer book: %w", err)
	}
	if !ignored.IsZero() {
		d.log.Warn("ignoring a peer book written for another node id", "file", pf.path, "its_node", ignored)
	}
	return st, pf, nil
}

func (d *Daemon) storeOptions() store.Options {
	dur := d.cfg.Durations()
	return store.Options{
		Logger:       d.log.Named("store"),
		Resolver:     conflictResolver{d.hooks},
		WatchHistory: d.cfg.WatchHistory,
		MaxValueSize: d.cfg.MaxValueSize,
		LockTimeout:  time.Second,
		TombstoneTTL: dur.TombstoneTTL,
		PurgeLogTTL:  dur.PurgeLogTTL,
	}
}

// newInstance makes a node life on st: a new boot epoch, a transport,
// the replay filter, the protocol node and (with a nats block) the bridge.
// Nothing runs until start. On error it closes what it opened, but not st.
// A bridge that cannot be made is an error at the start (atStart); after
// a rejoin the node goes on without it, saying so.
func (d *Daemon) newInstance(st *store.Store, peers *peerFile, atStart bool) (*instance, error) {
	epoch, err := st.NextEpoch(uint64(time.Now().UnixMilli()))
	if err != nil {
		return nil, err
	}
	inst := &instance{store: st, peers: peers}
	inst.release = inst.users.Done
	inst.waits, inst.endWaits = context.WithCancelCause(context.Background())
	if inst.transport, err = d.openTransport(); err != nil {
		return nil, err
	}
	sealer, err := d.openReplay(inst)
	if err != nil {
		inst.transport.Close()
		return nil, err
	}
	dur := d.cfg.Durations()
	cl := d.cfg.Cluster
	inst.node = cluster.New(cluster.Config{
		NodeName:       d.cfg.NodeName,
		Cluster:        cl.Name,
		Epoch:          epoch,
		Heartbeat:      dur.Heartbeat,
		DeadAfter:      dur.DeadAfter,
		MaxDatagram:    cl.MaxDatagram,
		TombstoneTTL:   dur.TombstoneTTL,
		PurgeLogTTL:    dur.PurgeLogTTL,
		Peers:          peers,
		QueryTimeout:   dur.QueryTimeout,
		FreshWitnesses: cl.FreshWitnesses,
		SyncInterval:   dur.SyncInterval,
		HookHash:       d.hooks.Hash,
		Keyring:        d.ring,
		Sealer:         sealer,
		Logger:         d.log.Named("cluster"),
	}, inst.transport, st)
	st.SetLiveness(inst.node.OwnerLive) // ephemeral records follow the member table
	if bc, ok := d.cfg.NATSBridge(); ok {
		// Made before anything is served: it records the change-log index
		// from which every later change is published.
		inst.bridge, err = natsbridge.New(bc, st, backend{d}, d.log.Named("nats"))
		if err != nil && atStart {
			inst.stop(d.log)
			return nil, fmt.Errorf("nats: %w", err)
		}
		if err != nil {
			d.log.Error("rejoin: the nats bridge could not start again; running without it", "error", err)
		}
	}
	return inst, nil
}

// openReplay opens the replay filter, whose marks persist in the data
// dir, and returns the datagram sealer over it; nil without a cluster
// key (insecure = true).
func (d *Daemon) openReplay(inst *instance) (wire.Sealer, error) {
	if d.ring == nil {
		return nil, nil
	}
	marks, err := seal.OpenEpochFile(filepath.Join(d.cfg.DataDir, "replay-marks"))
	if err != nil {
		return nil, fmt.Errorf("replay marks: %w", err)
	}
	inst.replay = seal.NewReplay(marks)
	return seal.NewDatagram(d.ring, d.cfg.Cluster.Name, inst.replay), nil
}

// start runs the instance's goroutines in one group. The first error (a
// node that had to stop: another process runs with its id) ends the group
// and, through d.fatal, the daemon.
func (d *Daemon) start(inst *instance) {
	g := newGroup(d.fatal)
	inst.run = g
	g.Go(inst.node.Run)
	if b := inst.bridge; b != nil {
		g.Go(func(ctx context.Context) error {
			if err := b.Run(ctx); err != nil {
				d.log.Error("nats bridge", "error", err) // the node goes on without it
			}
			return nil
		})
	}
	g.Go(func(ctx context.Context) error {
		d.dropStaleEphemeral(ctx, inst)
		return nil
	})
}

// stop ends the instance's goroutines: the node says BYE and closes the
// transport, the bridge publishes what was committed; without start, it
// only closes the transport. Then it saves the replay marks. The store
// stays open. Safe to call more than once.
func (inst *instance) stop(log interface{ Warn(string, ...any) }) {
	inst.stopOnce.Do(func() {
		inst.endWaits(rpc.ErrShuttingDown)
		if inst.run != nil {
			inst.run.stop() // its error went to d.fatal
		} else {
			inst.transport.Close()
		}
		if inst.replay != nil {
			if err := inst.replay.Close(); err != nil { // saves the exact marks
				log.Warn("saving replay marks", "error", err)
			}
		}
	})
}

// close stops the instance and closes its store.
func (inst *instance) close(log interface{ Warn(string, ...any) }) error {
	inst.stop(log)
	return inst.store.Close()
}

// slot holds the daemon's current instance. Whoever uses its parts
// acquires it and releases it when done; a rejoin takes it out, closes
// it once every holder has let go (instance.users), and puts the next
// one in. While it is empty, acquire fails and await waits.
type slot struct {
	mu     sync.Mutex
	cur    *instance
	closed bool
	ready  chan struct{} // closed by put; non-nil while empty after take
}

// acquire returns the current instance and its release, or errRejoining
// while a rejoin swaps it, or rpc.ErrShuttingDown once the daemon closed.
func (s *slot) acquire() (*instance, func(), error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, nil, rpc.ErrShuttingDown
	case s.cur == nil:
		return nil, nil, errRejoining
	}
	inst := s.cur
	inst.users.Add(1)
	return inst, inst.release, nil
}

// await is acquire for readers that may wait out a swap (the metrics):
// it returns nil only once the daemon has closed.
func (s *slot) await() (*instance, func()) {
	for {
		s.mu.Lock()
		switch {
		case s.closed:
			s.mu.Unlock()
			return nil, func() {}
		case s.cur != nil:
			inst := s.cur
			inst.users.Add(1)
			s.mu.Unlock()
			return inst, inst.release
		}
		ready := s.ready
		s.mu.Unlock()
		<-ready
	}
}

// peek returns the current instance without holding it: for the one who
// swaps it (the rejoin, Close) and for callers that hold it already.
func (s *slot) peek() *instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// take empties the slot and returns what it held: holders keep it until
// they release it.
func (s *slot) take() *instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst := s.cur
	s.cur = nil
	if s.ready == nil {
		s.ready = make(chan struct{})
	}
	return inst
}

// put fills the slot.
func (s *slot) put(inst *instance) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cur = inst
	if s.ready != nil {
		close(s.ready)
		s.ready = nil
	}
}

// close empties the slot for good and returns what it held.
func (s *slot) close() *instance {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst := s.cur
	s.cur, s.closed = nil, true
	if s.ready != nil {
		close(s.ready)
		s.ready = nil
	}
	return inst
}

// group runs goroutines that live and stop together, as
// golang.org/x/sync/errgroup does: one context they all watch, a
// WaitGroup that stop waits on, and the first error, which ends the
// others and is handed to onError.
type group struct {
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	once    sync.Once
	err     error
	onError func(error)
}

func newGroup(onError func(error)) *group {
	ctx, cancel := context.WithCancel(context.Background())
	return &group{ctx: ctx, cancel: cancel, onError: onError}
}

// Go runs f in the group.
func (g *group) Go(f func(ctx context.Context) error) {
	g.wg.Add(1)
	go func() {
		defer g.wg.Done()
		if err := f(g.ctx); err != nil {
			g.once.Do(func() {
				g.err = err
				g.cancel()
				if g.onError != nil {
					g.onError(err)
				}
			})
		}
	}()
}

// stop ends the group's context, waits for its goroutines and returns
// the first error.
func (g *group) stop() error {
	g.cancel()
	g.wg.Wait()
	return g.err
}
