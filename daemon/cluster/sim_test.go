package cluster

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudknowledge/ck/internal/poll"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/daemon/transport"
	"github.com/cloudknowledge/ck/internal/simnet"
	"github.com/cloudknowledge/ck/store"
)

var (
	simSeed  = flag.Uint64("sim.seed", 0, "run the simulated-network scenarios with this seed only")
	simSeeds = flag.Int("sim.seeds", 200, "how many seeds each simulated-network scenario runs")
)

// seeds returns the seeds a scenario runs: -sim.seed alone when given,
// else -sim.seeds random ones divided by div (a scenario that costs more
// runs fewer), and a tenth of that under -race or -short.
func seeds(div int) []uint64 {
	if *simSeed != 0 {
		return []uint64{*simSeed}
	}
	n := *simSeeds / max(div, 1)
	if raceEnabled || testing.Short() {
		n /= 10
	}
	n = max(n, 1)
	base := rand.Uint64()
	out := make([]uint64, n)
	for i := range out {
		out[i] = base + uint64(i)
	}
	return out
}

// forSeeds runs scenario once per seed, each in its own synctest bubble,
// naming the seed so that a failure replays with -sim.seed.
func forSeeds(t *testing.T, scenario func(t *testing.T, seed uint64)) {
	forSeedsDiv(t, 1, scenario)
}

// forSeedsDiv is forSeeds with a div-th of the seeds.
func forSeedsDiv(t *testing.T, div int, scenario func(t *testing.T, seed uint64)) {
	for _, seed := range seeds(div) {
		ok := t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				t.Logf("seed %d", seed)
				scenario(t, seed)
			})
		})
		if !ok {
			// The seed fixes the network's losses, delays and order, not
			// the timing of the nodes' real stores around them: a failure
			// that hangs on that timing may take several runs to recur.
			t.Fatalf("seed %d failed; replay with: go test ./daemon/cluster -run '^%s$' -sim.seed %d -count 20 (the seed fixes the network; the stores' timing varies, so one run may pass)", seed, t.Name(), seed)
		}
	}
}

// simNode is one node of a simulated cluster: a real store (without fsync)
// and the protocol on a simnet endpoint. It can be stopped and started
// again on the same data file and address.
type simNode struct {
	name   string
	path   string
	res    store.Resolver
	nw     *simnet.Network
	addr   netip.AddrPort
	st     *store.Store
	node   *Node
	ep     *simnet.Endpoint
	cancel context.CancelFunc
	done   chan struct{}
	runErr error
	wrap   func(transport.Transport) transport.Transport // optional, set before start
	key    []byte                                        // cluster key; nil: no encryption
	ttl    time.Duration                                 // purge_log_ttl; 0: the default
	tomb   time.Duration                                 // tombstone_ttl; 0: the default
	book   PeerBook                                      // kept across restarts; nil: none
	// eph: the store shows ephemeral records by the node's member table,
	// as the daemon wires it.
	eph bool
	// marks: replay marks kept across restarts, as the daemon's file;
	// never flushed, so a restart is a crash's. nil: new ones each start.
	marks *seal.MemoryEpochs
	// countHold: the store's CountHold (a store opened after a crash
	// counts its records once it is closed); nil: none.
	countHold <-chan struct{}
	// witnesses: fresh_witnesses; 0: DefaultFreshWitnesses, as the daemon
	// runs; negative: off.
	witnesses int
}

var simHeartbeat = time.Second

// simLogSize is a simulated store's log ring (and so its space reserve):
// 1 MiB rather than 32, so that a hundred stores fit /dev/shm (simDir).
const simLogSize = 1 << 20

// simDir is where simulated nodes keep their files: tmpfs when there is
// one, since bbolt syncs a new file once even without fsync, and on a busy
// disk that, not the simulation, would set the pace.
func simDir(t *testing.T) string {
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		d, err := os.MkdirTemp("/dev/shm", "ck-sim-")
		if err == nil {
			t.Cleanup(func() { os.RemoveAll(d) })
			return d
		}
	}
	return t.TempDir()
}

func newSimNode(t *testing.T, nw *simnet.Network, dir, name string, res store.Resolver) *simNode {
	return &simNode{name: name, path: filepath.Join(dir, name+".db"), res: res, nw: nw}
}

func startSimNode(t *testing.T, nw *simnet.Network, dir, name string, res store.Resolver) *simNode {
	t.Helper()
	sn := newSimNode(t, nw, dir, name, res)
	sn.start(t)
	return sn
}

// open opens the node's store (if it is not open) without starting it.
func (sn *simNode) open(t *testing.T) {
	t.Helper()
	if sn.st != nil {
		return
	}
	st, err := store.Open(sn.path, store.Options{
		NoSync: true, Resolver: sn.res, TombstoneTTL: sn.tombTTL(), PurgeLogTTL: sn.purgeLogTTL(),
		LogSize: simLogSize, CountHold: sn.countHold,
	})
	if err != nil {
		t.Fatal(err)
	}
	sn.st = st
}

// start opens the store and runs the node, on its old address if it had one.
func (sn *simNode) start(t *testing.T) {
	t.Helper()
	sn.open(t)
	epoch, err := sn.st.NextEpoch(uint64(time.Now().UnixMilli()))
	if err != nil {
		t.Fatal(err)
	}
	if sn.addr.IsValid() {
		sn.ep = sn.nw.Attach(sn.addr)
	} else {
		sn.ep = sn.nw.Endpoint()
		sn.addr = sn.ep.Addr()
	}
	var tr transport.Transport = sn.ep
	if sn.wrap != nil {
		tr = sn.wrap(tr)
	}
	cfg := Config{
		NodeName: sn.name, Cluster: "sim", Epoch: epoch, Heartbeat: simHeartbeat, DeadAfter: 30 * simHeartbeat,
		MaxDatagram: 1200, TombstoneTTL: sn.tombTTL(), Logger: testLogger(sn.name),
		PurgeLogTTL: sn.ttl, Peers: sn.book, FreshWitnesses: sn.freshWitnesses(),
	}
	if sn.key != nil {
		ring, err := seal.NewKeyring(sn.key)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Keyring = ring
		var marks seal.EpochStore = &seal.MemoryEpochs{}
		if sn.marks != nil {
			marks = sn.marks
		}
		cfg.Sealer = seal.NewDatagram(ring, cfg.Cluster, seal.NewReplay(marks))
	}
	sn.node = New(cfg, tr, sn.st)
	ctx, cancel := context.WithCancel(context.Background())
	sn.cancel, sn.done = cancel, make(chan struct{})
	go func() { defer close(sn.done); sn.runErr = sn.node.Run(ctx) }()
	if sn.eph {
		sn.st.SetLiveness(sn.node.OwnerLive)
	}
}

func (sn *simNode) tombTTL() time.Duration {
	if sn.tomb == 0 {
		return 168 * time.Hour
	}
	return sn.tomb
}

func (sn *simNode) freshWitnesses() int {
	if sn.witnesses == 0 {
		return DefaultFreshWitnesses
	}
	return max(sn.witnesses, 0)
}

func (sn *simNode) purgeLogTTL() time.Duration {
	if sn.ttl == 0 {
		return DefaultPurgeLogTTL
	}
	return sn.ttl
}

// running reports whether the node was started and not stopped.
func (sn *simNode) running() bool { return sn.st != nil && sn.cancel != nil }

// stop stops the node, checks its store and closes it.
func (sn *simNode) stop(t *testing.T) {
	if sn.cancel != nil {
		sn.cancel()
		<-sn.done
		sn.cancel = nil
	}
	if sn.st == nil {
		return
	}
	if err := sn.st.Check(); err != nil {
		t.Errorf("%s: store check: %v", sn.name, err)
	}
	sn.st.Close()
	sn.st = nil
}

func startSimCluster(t *testing.T, nw *simnet.Network, n int) []*simNode {
	return startSimClusterWith(t, nw, n, simOptions{})
}

// simOptions are what every node of a simulated cluster is started with;
// the zero value is startSimCluster's.
type simOptions struct {
	res  store.Resolver
	ttl  time.Duration // purge_log_ttl; 0: the default
	tomb time.Duration // tombstone_ttl; 0: the default
	book bool          // each node keeps a peer book across restarts
	eph  bool          // stores show ephemeral records by member liveness
	// witnesses: fresh_witnesses (simNode.witnesses); 0: the default.
	witnesses int
	// setup, when set, is called on each node before it starts, its store
	// open (its id known).
	setup func(i int, sn *simNode)
}

// startSimClusterWith starts n nodes named n0, n1, … with o, stops them at
// cleanup, and waits until every node sees every other.
func startSimClusterWith(t *testing.T, nw *simnet.Network, n int, o simOptions) []*simNode {
	t.Helper()
	dir := simDir(t)
	nodes := make([]*simNode, n)
	for i := range nodes {
		sn := newSimNode(t, nw, dir, fmt.Sprintf("n%d", i), o.res)
		sn.ttl, sn.tomb, sn.eph, sn.witnesses = o.ttl, o.tomb, o.eph, o.witnesses
		if o.book {
			sn.book = &memBook{}
		}
		if o.setup != nil {
			sn.open(t)
			o.setup(i, sn)
		}
		sn.start(t)
		nodes[i] = sn
	}
	t.Cleanup(func() {
		for _, sn := range nodes {
			sn.stop(t)
		}
	})
	// Let every node hear every other's HELLO (a lossy network may need a few).
	waitFor(t, 20*simHeartbeat, func() error {
		if !allSee(nodes, n-1) {
			return errors.New("members did not find each other")
		}
		return nil
	})
	return nodes
}

func allSee(nodes []*simNode, peers int) bool {
	for _, sn := range nodes {
		if sn.running() && sn.node.AlivePeers() < peers {
			return false
		}
	}
	return true
}

// waitFor polls cond every 50ms of virtual time until it returns nil, and
// fails the test with its last error after d.
func waitFor(t *testing.T, d time.Duration, cond func() error) {
	t.Helper()
	poll.Until(t, d, 50*time.Millisecond, cond)
}

// write is a local write through a node, as the daemon does it: commit,
// replicate, and (want > 0) wait for acknowledgements.
func (sn *simNode) write(t *testing.T, key, value string, want int) (store.Record, int, error) {
	rec, err := sn.st.Set(context.Background(), key, []byte(value), nil)
	if err != nil {
		t.Fatal(err)
	}
	sn.node.Replicate(rec)
	if want == 0 {
		return rec, 0, nil
	}
	n, err := sn.node.WaitAcks(context.Background(), rec, want, 5*time.Second)
	return rec, n, err
}

func dump(t *testing.T, st *store.Store) map[string]store.Record {
	t.Helper()
	out := map[string]store.Record{}
	if err := st.Scan("", func(r store.Record) error { out[r.Key] = r; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestSimReplicationUnderLoss: random writes on random nodes over a network
// that loses, duplicates and reorders 20% of datagrams; every write
// acknowledged by all peers is then held (or descended from) everywhere,
// and duplicates never register as conflicts.
func TestSimReplicationUnderLoss(t *testing.T) {
	forSeeds(t, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 1))
		nw := simnet.New(seed, simnet.Options{Loss: 0.2, Dup: 0.2, MinDelay: time.Millisecond, MaxDelay: 30 * time.Millisecond})
		nodes := startSimCluster(t, nw, 3+rng.IntN(3))
		var acked []store.Record
		for i := range 30 {
			sn := nodes[rng.IntN(len(nodes))]
			// Each key is written by one node only, so no write is concurrent.
			key := fmt.Sprintf("%s/k%d", sn.name, rng.IntN(5))
			rec, n, err := sn.write(t, key, strconv.Itoa(i), len(nodes)-1)
			if err == nil && n == len(nodes)-1 {
				acked = append(acked, rec)
			}
		}
		nw.SetOptions(simnet.Options{})
		time.Sleep(5 * simHeartbeat)
		for _, sn := range nodes {
			held := dump(t, sn.st)
			for _, w := range acked {
				if r, ok := held[w.Key]; !ok || !r.VV.Dominates(w.VV) {
					t.Errorf("%s lacks acknowledged write %s@%d (holds %d)", sn.name, w.Key, w.Lamport, r.Lamport)
				}
			}
			if c := sn.node.Stats().Conflicts; c != 0 {
				t.Errorf("%s: %d conflicts from writes that were never concurrent", sn.name, c)
			}
		}
		t.Logf("%d of 30 writes acknowledged by all; network %+v", len(acked), nw.Stats())
		if len(acked) < 20 {
			t.Errorf("only %d of 30 writes were acknowledged by every peer within 5s", len(acked))
		}
	})
}

// TestSimConcurrentWrites: two nodes write one key at once, before either
// hears the other; both writes reach everyone, the conflict is detected,
// and every node ends on the same record, byte for byte.
func TestSimConcurrentWrites(t *testing.T) {
	forSeeds(t, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 2))
		nw := simnet.New(seed, simnet.Options{Dup: 0.2, MinDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond})
		nodes := startSimCluster(t, nw, 3+rng.IntN(3))
		a, b := nodes[0], nodes[1+rng.IntN(len(nodes)-1)]
		ra, _ := a.st.Set(context.Background(), "shared", []byte("from a"), nil)
		rb, _ := b.st.Set(context.Background(), "shared", []byte("from b"), nil)
		if ra.VV.Compare(rb.VV) != store.Concurrent {
			t.Fatalf("writes not concurrent: %v %v", ra.VV, rb.VV)
		}
		a.node.Replicate(ra)
		b.node.Replicate(rb)
		time.Sleep(2 * simHeartbeat)
		var want store.Hash
		conflicts := uint64(0)
		for i, sn := range nodes {
			r, ok, _ := sn.st.Get("shared")
			if !ok {
				t.Fatalf("%s lacks the key", sn.name)
			}
			if i == 0 {
				want = r.Hash()
			} else if r.Hash() != want {
				t.Errorf("%s holds %q (%s), %s holds another record (%s)", sn.name, r.Value, r.Hash(), nodes[0].name, want)
			}
			if !r.VV.Dominates(ra.VV) || !r.VV.Dominates(rb.VV) {
				t.Errorf("%s: resolution %v does not descend from both writes", sn.name, r.VV)
			}
			conflicts += sn.node.Stats().Conflicts
		}
		if conflicts == 0 {
			t.Error("no node detected the conflict")
		}
	})
}

var simLog = flag.Bool("sim.log", false, "log what simulated nodes say")

func testLogger(name string) hclog.Logger {
	if !*simLog {
		return nil
	}
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Debug})
}
