package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/simnet"
	"github.com/cloudknowledge/ck/store"
)

// lossy is the network of the scenarios: 20% of datagrams lost, 20%
// duplicated, delays up to 30 ms (which reorders them).
func lossy(seed uint64) *simnet.Network {
	return simnet.New(seed, simnet.Options{Loss: 0.2, Dup: 0.2, MinDelay: time.Millisecond, MaxDelay: 30 * time.Millisecond})
}

// unionResolver merges concurrent values as the sorted union of their
// comma-separated tokens — commutative, associative and idempotent, as
// docs/PROTOCOL.md (Resolve) asks of a hook for three or more writers — and records the keys
// it was asked to resolve: a key written on one side only must never be.
type unionResolver struct {
	mu   sync.Mutex
	keys map[string]bool
}

func newUnionResolver() *unionResolver { return &unionResolver{keys: map[string]bool{}} }

func (u *unionResolver) Resolve(key string, w, l *store.Record) ([]byte, bool, error) {
	u.mu.Lock()
	u.keys[key] = true
	u.mu.Unlock()
	set := map[string]bool{}
	for _, r := range []*store.Record{w, l} {
		if r.Deleted {
			continue
		}
		for _, tok := range strings.Split(string(r.Value), ",") {
			set[tok] = true
		}
	}
	if len(set) == 0 {
		return nil, true, nil
	}
	toks := make([]string, 0, len(set))
	for tok := range set {
		toks = append(toks, tok)
	}
	slices.Sort(toks)
	return []byte(strings.Join(toks, ",")), false, nil
}

func (u *unionResolver) resolved() map[string]bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	out := map[string]bool{}
	for k := range u.keys {
		out[k] = true
	}
	return out
}

// history is every write a scenario made through a node: each was durable
// on its node when the client would have been answered.
type history struct{ writes []store.Record }

func (h *history) write(t *testing.T, sn *simNode, key, value string) store.Record {
	t.Helper()
	rec, _, _ := sn.write(t, key, value, 0)
	h.writes = append(h.writes, rec)
	return rec
}

// writeLocal is a write that is not replicated: only its node holds it.
func (h *history) writeLocal(t *testing.T, sn *simNode, key, value string) store.Record {
	t.Helper()
	rec, err := sn.st.Set(context.Background(), key, []byte(value), nil)
	if err != nil {
		t.Fatal(err)
	}
	h.writes = append(h.writes, rec)
	return rec
}

// checkWrites is the end-of-scenario invariant: on every running node,
// every write is present, causally overwritten, or merged into a conflict
// resolution — the node's record of the key has a version vector that
// dominates the write's — or deleted and purged since: the node holds
// nothing for the key and its purge log covers the write.
func checkWrites(t *testing.T, nodes []*simNode, h *history) {
	t.Helper()
	for _, sn := range nodes {
		if !sn.running() {
			continue
		}
		held := dump(t, sn.st)
		bad := 0
		for _, w := range h.writes {
			r, ok := held[w.Key]
			if ok && r.VV.Dominates(w.VV) || !ok && purgedOver(sn, w) {
				continue
			}
			if bad++; bad <= 5 {
				t.Errorf("%s lost write %s@%d by %s: holds vv %v, the write has %v", sn.name, w.Key, w.Lamport, w.Origin, r.VV, w.VV)
			}
		}
		if bad > 5 {
			t.Errorf("%s: %d writes lost in all", sn.name, bad)
		}
	}
}

// purgedOver reports whether sn's purge log covers the write w.
func purgedOver(sn *simNode, w store.Record) bool {
	recs, err := sn.st.PurgedRecords(store.KeyHash(w.Key))
	if err != nil {
		return false
	}
	for _, p := range recs {
		if p.Key == w.Key && p.VV.Dominates(w.VV) {
			return true
		}
	}
	return false
}

// converged returns nil when every running node has the same digest root.
func converged(nodes []*simNode) error {
	var first *simNode
	for _, sn := range nodes {
		if !sn.running() {
			continue
		}
		if first == nil {
			first = sn
			continue
		}
		if a, b := first.st.Root(), sn.st.Root(); a != b {
			return fmt.Errorf("%s (%d keys) and %s (%d keys) differ: roots %x, %x",
				first.name, first.st.Keys(), sn.name, sn.st.Keys(), a[:4], b[:4])
		}
	}
	return nil
}

// synced returns nil when every running node has finished its bootstrap.
func synced(nodes []*simNode) error {
	for _, sn := range nodes {
		if sn.running() && sn.node.Bootstrapping() {
			return fmt.Errorf("%s is still bootstrapping", sn.name)
		}
	}
	return nil
}

// load gives every node the same keys records, written by random nodes, by
// applying them straight to the stores (not over the network): a loaded
// cluster in a moment. Nodes need not be running.
func load(t *testing.T, rng *rand.Rand, nodes []*simNode, prefix string, keys int) {
	t.Helper()
	recs := make([]store.Record, keys)
	writers := make([]int, keys)
	for i := range recs {
		writers[i] = rng.IntN(len(nodes))
	}
	parallel(t, keys, func(i int) error {
		var err error
		recs[i], err = nodes[writers[i]].st.Set(context.Background(), fmt.Sprintf("%s/%06d", prefix, i), fmt.Appendf(nil, "value %d", i), nil)
		return err
	})
	for j, sn := range nodes {
		parallel(t, keys, func(i int) error {
			if writers[i] == j {
				return nil
			}
			_, err := sn.st.Apply(context.Background(), recs[i])
			return err
		})
	}
}

// parallel runs fn(0..n-1) on 512 goroutines, so the store group-commits
// them in large batches.
func parallel(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	next := make(chan int)
	for range 512 {
		wg.Go(func() {
			for i := range next {
				if err := fn(i); err != nil {
					mu.Lock()
					first = cmpOr(first, err)
					mu.Unlock()
				}
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	if first != nil {
		t.Fatal(first)
	}
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func addrs(nodes []*simNode) []netip.AddrPort {
	out := make([]netip.AddrPort, len(nodes))
	for i, sn := range nodes {
		out[i] = sn.addr
	}
	return out
}

// holds returns nil when sn's record of key has hash h.
func holds(sn *simNode, key string, h store.Hash) error {
	r, ok, err := sn.st.Get(key)
	switch {
	case err != nil:
		return err
	case !ok:
		return fmt.Errorf("%s lacks %s", sn.name, key)
	case r.Hash() != h:
		return fmt.Errorf("%s holds %s@%d %q, not the expected version", sn.name, key, r.Lamport, r.Value)
	}
	return nil
}
