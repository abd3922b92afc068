package cluster

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/store"
)

// TestSimPartitionHeal: a cluster splits in two; both sides keep writing,
// some keys by one node only, some on both sides; after the partition heals,
// anti-entropy brings every node to identical records, each key written on
// both sides is resolved (by the conflict hook) identically everywhere,
// and no key written by one node only is ever treated as a conflict.
func TestSimPartitionHeal(t *testing.T) {
	forSeeds(t, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 3))
		nw := lossy(seed)
		res := newUnionResolver()
		nodes := startSimClusterWith(t, nw, 3+rng.IntN(3), simOptions{res: res})
		h := &history{}
		for i := range 5 { // history before the split
			h.write(t, nodes[rng.IntN(len(nodes))], fmt.Sprintf("both/k%d", i), "v0")
		}
		waitFor(t, 10*simHeartbeat, func() error { return converged(nodes) })

		perm := rng.Perm(len(nodes))
		cut := 1 + rng.IntN(len(nodes)-1)
		var sides [2][]*simNode
		for i, p := range perm {
			sides[min(i/cut, 1)] = append(sides[min(i/cut, 1)], nodes[p])
		}
		nw.Partition(addrs(sides[0]), addrs(sides[1]))
		both := map[string]bool{}
		for i := range 40 {
			side := rng.IntN(2)
			sn := sides[side][rng.IntN(len(sides[side]))]
			// A one-side key has one writer: two nodes of a side writing
			// one key before either hears the other is a real conflict.
			key := fmt.Sprintf("one-%s/k%d", sn.name, rng.IntN(4))
			if i%4 == 0 { // each both/ key gets a write on each side
				key = fmt.Sprintf("both/k%d", i/8)
				both[key] = true
				other := sides[1-side][rng.IntN(len(sides[1-side]))]
				h.write(t, other, key, fmt.Sprintf("%s-%d", other.name, i))
			}
			h.write(t, sn, key, fmt.Sprintf("%s-%d", sn.name, i))
			time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(40)) * simHeartbeat) // long enough to be gone, sometimes
		nw.Heal()
		waitFor(t, 60*simHeartbeat, func() error { return converged(nodes) })

		checkWrites(t, nodes, h)
		resolved := res.resolved()
		for key := range resolved {
			if !both[key] {
				t.Errorf("%s was written by one node only, yet resolved as a conflict", key)
			}
		}
		for key := range both {
			if !resolved[key] {
				t.Errorf("%s was written on both sides, yet never resolved", key)
			}
		}
		opened, completed := uint64(0), uint64(0)
		for _, sn := range nodes {
			s := sn.node.Stats()
			opened, completed = opened+s.SyncOpened, completed+s.SyncCompleted
		}
		t.Logf("%d nodes split %d/%d; %d keys resolved; sessions: %d opened, %d completed",
			len(nodes), len(sides[0]), len(sides[1]), len(resolved), opened, completed)
	})
}

// TestSimRestartCatchesUp: a node stopped for minutes while the others
// write starts again behind, and catches up by syncing: its bootstrap
// reports "bootstrapping", then "synced", and every node ends identical.
func TestSimRestartCatchesUp(t *testing.T) {
	forSeeds(t, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 4))
		nw := lossy(seed)
		nodes := startSimCluster(t, nw, 3+rng.IntN(2))
		h := &history{}
		for i := range 10 {
			h.write(t, nodes[rng.IntN(len(nodes))], fmt.Sprintf("k%d", rng.IntN(20)), fmt.Sprint(i))
		}
		x := nodes[rng.IntN(len(nodes))]
		time.Sleep(time.Duration(rng.IntN(3000)) * time.Millisecond)
		x.stop(t)
		offline := time.Duration(60+rng.IntN(120)) * simHeartbeat
		for end := time.Now().Add(offline); time.Now().Before(end); {
			time.Sleep(time.Duration(1+rng.IntN(20)) * simHeartbeat)
			if sn := nodes[rng.IntN(len(nodes))]; sn != x {
				h.write(t, sn, fmt.Sprintf("k%d", rng.IntN(20)), "later")
			}
		}
		x.start(t)
		if st := x.node.Sync(); st.State != StateBootstrapping {
			t.Errorf("a restarted node reports %q, want %q", st.State, StateBootstrapping)
		}
		waitFor(t, 30*simHeartbeat, func() error {
			if err := synced(nodes); err != nil {
				return err
			}
			return converged(nodes)
		})
		checkWrites(t, nodes, h)
		t.Logf("%s offline for %v; it received %d records by sync", x.name, offline, x.node.Stats().SyncRecordsIn)
	})
}

// TestSimBootstrap: an empty node joins a cluster holding a few thousand
// keys (while writes go on) and pulls them from one peer: it reports
// bootstrapping, then synced, and every node ends identical.
func TestSimBootstrap(t *testing.T) {
	forSeedsDiv(t, 10, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 5))
		nw := lossy(seed)
		nodes := startSimCluster(t, nw, 2+rng.IntN(3))
		keys := 1000 + rng.IntN(2000)
		load(t, rng, nodes, "loaded", keys)
		waitFor(t, 5*simHeartbeat, func() error { return converged(nodes) })

		e := startSimNode(t, nw, simDir(t), "empty", nil)
		nodes = append(nodes, e)
		t.Cleanup(func() { e.stop(t) })
		if st := e.node.Sync(); st.State != StateBootstrapping {
			t.Errorf("a starting node reports %q, want %q", st.State, StateBootstrapping)
		}
		h := &history{}
		for i := range 5 {
			h.write(t, nodes[rng.IntN(len(nodes)-1)], fmt.Sprintf("during/k%d", i), "v")
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		}
		waitFor(t, 10*simHeartbeat, func() error { return synced(nodes) })
		waitFor(t, 20*simHeartbeat, func() error { return converged(nodes) })
		checkWrites(t, nodes, h)

		st := e.node.Sync()
		if st.State != StateSynced || st.Peer == (store.NodeID{}) || st.Received < uint64(keys) {
			t.Errorf("after the bootstrap: %+v, want synced from a peer with at least %d records", st, keys)
		}
		// One peer at a time: no key arrived twice by sync.
		if in := e.node.Stats().SyncRecordsIn; in > uint64(keys+len(h.writes)) {
			t.Errorf("received %d records by sync for %d keys: pulled from several peers at once", in, keys)
		}
		t.Logf("%d keys; %s pulled %d records from %s", keys, e.name, st.Received, st.PeerName)
	})
}

// TestSimLoneNodeSyncs: a node with no peers is synced after a few
// heartbeats, not bootstrapping for ever.
func TestSimLoneNodeSyncs(t *testing.T) {
	forSeedsDiv(t, 20, func(t *testing.T, seed uint64) {
		nw := lossy(seed)
		sn := startSimNode(t, nw, simDir(t), "alone", nil)
		t.Cleanup(func() { sn.stop(t) })
		if !sn.node.Bootstrapping() {
			t.Fatal("not bootstrapping at start")
		}
		time.Sleep(bootstrapAlone*simHeartbeat + simHeartbeat/2)
		if st := sn.node.Sync(); st.State != StateSynced || st.Received != 0 {
			t.Errorf("a lone node reports %+v after %d heartbeats", st, bootstrapAlone)
		}
	})
}
