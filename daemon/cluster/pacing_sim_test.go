package cluster

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/simnet"
)

// TestSimLostWriteRepairedWhenQuiet: with every node's session pacing at
// its cap (60 s, as steady writes leave it), a write one node missed — cut
// off for less than the 3 heartbeats that make a member suspect, so no
// membership evidence — is still repaired within a few heartbeats once
// the writes stop: the same differing root in two HELLOs, with ours
// unchanged, is a fault no write in flight explains (docs/ARCHITECTURE.md,
// Anti-entropy at scale).
func TestSimLostWriteRepairedWhenQuiet(t *testing.T) {
	forSeedsDiv(t, 20, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 18))
		nw := lossless(seed)
		nodes := startSimCluster(t, nw, 3+rng.IntN(3))
		waitFor(t, 10*simHeartbeat, func() error { return synced(nodes) })
		writer := nodes[0]
		for i := range 100 { // 5 s of 20 writes a second
			writer.write(t, fmt.Sprintf("steady/k%d", rng.IntN(100)), fmt.Sprint(i), 0)
			time.Sleep(50 * time.Millisecond)
		}
		for _, sn := range nodes { // as a minute of steady writes leaves them
			s := sn.node.sync
			s.mu.Lock()
			s.gap = maxGapFactor * s.interval
			s.nextOpen = time.Now().Add(s.gap)
			s.mu.Unlock()
		}
		time.Sleep(2 * simHeartbeat) // replication done: roots equal

		x := nodes[1+rng.IntN(len(nodes)-1)]
		nw.Partition(addrs(nodes[:1]), addrs([]*simNode{x}))
		rec, _, _ := writer.write(t, "lost", "x never hears it", 0)
		time.Sleep(500 * time.Millisecond)
		nw.Heal()
		start := time.Now()
		waitFor(t, 6*simHeartbeat, func() error { return holds(x, "lost", rec.Hash()) })
		waitFor(t, 6*simHeartbeat, func() error { return converged(nodes) })
		t.Logf("%d nodes, pacing at %v; %s had the write it missed %v after the heal",
			len(nodes), maxGapFactor*DefaultSyncInterval, x.name, time.Since(start).Round(time.Millisecond))
	})
}

// lossless is a network that delays (1–5 ms) but loses nothing.
func lossless(seed uint64) *simnet.Network {
	return simnet.New(seed, simnet.Options{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
}
