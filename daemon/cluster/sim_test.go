package cluster

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudknowledge/ck/daemon/transport/simnet"
	"github.com/cloudknowledge/ck/store"
)

var (
	simSeed  = flag.Uint64("sim.seed", 0, "run the simulated-network scenarios with this seed only")
	simSeeds = flag.Int("sim.seeds", 200, "how many seeds each simulated-network scenario runs")
)

// seeds returns the seeds a scenario runs: -sim.seed alone when given,
// else -sim.seeds random ones (fewer under -race or -short).
func seeds(t *testing.T) []uint64 {
	if *simSeed != 0 {
		return []uint64{*simSeed}
	}
	n := *simSeeds
	if raceEnabled || testing.Short() {
		n = max(1, n/10)
	}
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
	for _, seed := range seeds(t) {
		ok := t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) { scenario(t, seed) })
		})
		if !ok {
			t.Fatalf("seed %d failed; replay with: go test ./daemon/cluster -run '%s' -sim.seed %d", seed, t.Name(), seed)
		}
	}
}

// simNode is one node of a simulated cluster: a real store (without fsync)
// and the protocol on a simnet endpoint.
type simNode struct {
	name   string
	st     *store.Store
	node   *Node
	ep     *simnet.Endpoint
	cancel context.CancelFunc
	done   chan struct{}
}

var simHeartbeat = time.Second

func startSimNode(t *testing.T, nw *simnet.Network, dir, name string, res store.Resolver) *simNode {
	t.Helper()
	st, err := store.Open(filepath.Join(dir, name+".db"), store.Options{NoSync: true, Resolver: res})
	if err != nil {
		t.Fatal(err)
	}
	epoch, err := st.NextEpoch(uint64(time.Now().UnixMilli()))
	if err != nil {
		t.Fatal(err)
	}
	ep := nw.Endpoint()
	n := New(Config{
		NodeName: name, Cluster: "sim", Epoch: epoch, Heartbeat: simHeartbeat, DeadAfter: 30 * simHeartbeat,
		MaxDatagram: 1200, TombstoneTTL: 168 * time.Hour,
	}, ep, st)
	ctx, cancel := context.WithCancel(context.Background())
	sn := &simNode{name: name, st: st, node: n, ep: ep, cancel: cancel, done: make(chan struct{})}
	go func() { defer close(sn.done); n.Run(ctx) }()
	return sn
}

func (sn *simNode) stop(t *testing.T) {
	sn.cancel()
	<-sn.done
	if err := sn.st.Check(); err != nil {
		t.Errorf("%s: store check: %v", sn.name, err)
	}
	sn.st.Close()
}

func startSimCluster(t *testing.T, nw *simnet.Network, n int) []*simNode {
	dir := t.TempDir()
	nodes := make([]*simNode, n)
	for i := range nodes {
		nodes[i] = startSimNode(t, nw, dir, fmt.Sprintf("n%d", i), nil)
	}
	t.Cleanup(func() {
		for _, sn := range nodes {
			sn.stop(t)
		}
	})
	// Let every node hear every other's HELLO (a lossy network may need a few).
	for range 20 {
		time.Sleep(simHeartbeat)
		if allSee(nodes, n-1) {
			return nodes
		}
	}
	t.Fatalf("members did not find each other within 20 heartbeats")
	return nil
}

func allSee(nodes []*simNode, peers int) bool {
	for _, sn := range nodes {
		if sn.node.AlivePeers() < peers {
			return false
		}
	}
	return true
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
		t.Logf("seed %d", seed)
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
		t.Logf("seed %d", seed)
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
