package store_test

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cloudknowledge/ck/internal/testseed"
	"github.com/cloudknowledge/ck/store"
)

// applyPure is what Store.Apply does to one key, without the store.
func applyPure(cur *store.Record, rec store.Record, r store.Resolver) store.Record {
	if cur == nil {
		return rec
	}
	switch store.Compare(&rec, cur) {
	case store.Newer:
		return rec
	case store.Concurrent:
		return store.Resolve(rec.Key, cur, &rec, r)
	}
	return *cur
}

func permutations(n int) [][]int {
	if n == 1 {
		return [][]int{{0}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

// Three concurrent writers, delivered to six nodes in every order: every
// node picks the same original write (lww) and content right away, and
// once the nodes exchange what they hold, all hold the same bytes.
func TestThreeWritersConverge(t *testing.T) {
	rng := testseed.Rand(t)
	for iter := range 200 {
		base := write("k", "base", 9, uint64(rng.IntN(3)+1), nil)
		var ws []store.Record
		for n := byte(1); n <= 3; n++ {
			ws = append(ws, write("k", fmt.Sprintf("w%d", n), n, base.Lamport+uint64(rng.IntN(4)+1), base.VV))
		}
		if rng.IntN(4) == 0 {
			ws[1].Deleted, ws[1].Value = true, nil
		}
		for _, tc := range []struct {
			name string
			r    store.Resolver
		}{{"lww", nil}, {"union", union}} {
			nodes := deliverAllOrders(ws, tc.r)
			first := nodes[0]
			for i, n := range nodes {
				if n.LWW != first.LWW || !bytes.Equal(n.Value, first.Value) || n.Deleted != first.Deleted || !n.VV.Equal(first.VV) {
					t.Fatalf("iter %d %s: order %d resolved to %+v, order 0 to %+v", iter, tc.name, i, n, first)
				}
			}
			if tc.r == nil {
				win := ws[0]
				for _, w := range ws[1:] {
					if win.LWW.Less(w.LWW) {
						win = w
					}
				}
				if first.LWW != win.LWW {
					t.Fatalf("iter %d: lww %v, want %v", iter, first.LWW, win.LWW)
				}
			}
			gossip(t, rng, nodes, tc.r)
			for i, n := range nodes {
				if n.Hash() != nodes[0].Hash() {
					t.Fatalf("iter %d %s: node %d holds %+v, node 0 %+v", iter, tc.name, i, n, nodes[0])
				}
			}
		}
	}
}

func deliverAllOrders(ws []store.Record, r store.Resolver) []store.Record {
	var nodes []store.Record
	for _, order := range permutations(len(ws)) {
		var cur *store.Record
		for _, i := range order {
			next := applyPure(cur, ws[i], r)
			cur = &next
		}
		nodes = append(nodes, *cur)
	}
	return nodes
}

// gossip sends random nodes' records to random nodes until a full pass over
// every pair changes nothing.
func gossip(t *testing.T, rng *rand.Rand, nodes []store.Record, r store.Resolver) {
	for round := 0; ; round++ {
		if round > 100 {
			t.Fatal("no convergence after 100 rounds")
		}
		changed := false
		for _, p := range rng.Perm(len(nodes) * len(nodes)) {
			from, to := p/len(nodes), p%len(nodes)
			next := applyPure(&nodes[to], nodes[from], r)
			if next.Hash() != nodes[to].Hash() {
				nodes[to], changed = next, true
			}
		}
		if !changed {
			return
		}
	}
}
