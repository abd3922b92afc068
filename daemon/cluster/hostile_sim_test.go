package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/store"
)

// TestSimHostileRecords replays the two records that once broke a cluster
// (docs/ARCHITECTURE.md, "Hostile records"), imported on one node and sent
// by a peer as UPDATEs: a lamport at the end of the clock's headroom, and
// a version vector that gives a node's own id a huge entry. Neither moves
// a clock beyond the bound, every later write is acknowledged by every
// peer, and no acknowledged write is lost.
func TestSimHostileRecords(t *testing.T) {
	forSeedsDiv(t, 10, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 3))
		nodes := startSimCluster(t, lossy(seed), 3)
		a, b := nodes[0], nodes[1]
		stranger := store.NodeID{0x01, 0x23, 0x45}

		// 1. The end of the clock: refused on import, and by every peer
		// when a node sends it.
		maxRec := store.Record{Key: "p", Value: []byte("x"), Lamport: store.MaxLamport - 1, Origin: stranger,
			VV: store.VV{stranger: store.MaxLamport - 1}, LWW: store.Stamp{Lamport: store.MaxLamport - 1, Origin: stranger}}
		if _, err := a.st.Apply(context.Background(), maxRec); !errors.Is(err, store.ErrClockJump) {
			t.Fatalf("import of lamport 2^62-2: %v, want ErrClockJump", err)
		}
		// A buggy peer sends it, again until both peers have had it (the
		// network loses a datagram in five).
		waitFor(t, 10*time.Second, func() error {
			for _, sn := range []*simNode{a, nodes[2]} {
				if sn.st.Stats().RefusedClockJump < 1+boolInt(sn == a) {
					b.node.Replicate(maxRec)
					return fmt.Errorf("%s has not refused the UPDATE yet", sn.name)
				}
			}
			return nil
		})
		for _, sn := range nodes {
			if l := sn.st.Lamport(); l > store.MaxClockJump {
				t.Fatalf("%s: clock moved to %d", sn.name, l)
			}
		}

		// 2. A vector naming a's own id with 1e9, imported on a and sent on.
		vvRec := store.Record{Key: "poison/vv", Value: []byte("imported"), Lamport: 1_000_000_000, Origin: stranger,
			VV:  store.VV{a.st.NodeID(): 1_000_000_000, stranger: 999_999_999},
			LWW: store.Stamp{Lamport: 1_000_000_000, Origin: stranger}}
		low := vvRec // the same vector under a small lamport: refused
		low.Lamport, low.LWW.Lamport = 5, 5
		if _, err := a.st.Apply(context.Background(), low); !errors.Is(err, store.ErrBadRecord) {
			t.Fatalf("a vector entry above the lamport: %v, want ErrBadRecord", err)
		}
		res, err := a.st.Apply(context.Background(), vvRec)
		if err != nil {
			t.Fatal(err)
		}
		a.node.Replicate(res.Record)

		// Every later write, on any node, is acknowledged by both peers and
		// survives: the one over the imported record above all.
		h := &history{}
		after, n, err := a.write(t, "poison/vv", "after-import", 2)
		if err != nil || n != 2 {
			t.Fatalf("write after the import: %d acks, %v", n, err)
		}
		h.writes = append(h.writes, after)
		for i := range 20 {
			sn := nodes[rng.IntN(len(nodes))]
			rec, n, err := sn.write(t, fmt.Sprintf("k/%d", i), "v", 2)
			if err != nil || n != 2 {
				t.Fatalf("%s: write %d: %d acks, %v", sn.name, i, n, err)
			}
			h.writes = append(h.writes, rec)
		}
		waitFor(t, 30*time.Second, func() error { return converged(nodes) })
		checkWrites(t, nodes, h)
		for _, sn := range nodes {
			got, _, err := sn.st.Get("poison/vv")
			if err != nil || string(got.Value) != "after-import" {
				t.Errorf("%s: poison/vv = %q (%v), want the acknowledged write", sn.name, got.Value, err)
			}
		}
	})
}

func boolInt(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}
