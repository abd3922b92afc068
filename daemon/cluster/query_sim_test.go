package cluster

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/internal/simnet"
	"github.com/cloudknowledge/ck/store"
)

var simFreshNodes = flag.Int("sim.fresh", 0, "nodes of TestSimFreshReadCost; 0: 3 and 10 (3 under -race or -short)")

// TestSimFreshRead: one node holds a newer version that was never
// replicated; a fresh read through another node returns it, stores it
// there, and repairs the answerers that held the stale one — before
// anti-entropy could have. Under 20% loss the read still finds the newest
// (it asks the silent members again); the repair is checked on a network
// that only duplicates and reorders, since a lost repair is left to
// anti-entropy by design.
func TestSimFreshRead(t *testing.T) {
	forSeeds(t, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 6))
		nw := lossy(seed)
		nodes := startSimCluster(t, nw, 3+rng.IntN(3))
		time.Sleep(2 * simHeartbeat) // past the first round of HELLOs
		h := &history{}
		for round, loss := range []float64{0.2, 0} {
			nw.SetOptions(simnet.Options{Loss: loss, Dup: 0.2, MinDelay: time.Millisecond, MaxDelay: 30 * time.Millisecond})
			key := fmt.Sprintf("k%d", round)
			h.write(t, nodes[0], key, "old")
			waitFor(t, 10*simHeartbeat, func() error { return converged(nodes) })
			// HELLOs with equal roots reset anti-entropy's count, so it
			// cannot repair anything in the 100ms this round lasts.
			time.Sleep(2 * simHeartbeat)

			// A write that waited for no ACK is promised to a fresh read
			// when its writer is one of the key's witnesses.
			wits := keyWitnesses(nodes, key, DefaultFreshWitnesses)
			holder := wits[rng.IntN(len(wits))]
			asker := holder
			for asker == holder {
				asker = nodes[rng.IntN(len(nodes))]
			}
			newest := h.writeLocal(t, holder, key, "new")
			res, err := asker.node.FreshGet(context.Background(), key, 0)
			if err != nil {
				t.Fatal(err)
			}
			if loss > 0 && (!aliveAt(asker, holder) || res.Alive < len(nodes) || res.Answered < res.Asked) {
				// Three HELLOs lost in a row: the holder is suspect, and a
				// fresh read does not wait for suspect members (it may be
				// alive again by the time the read returns: then the read
				// counted fewer alive than there are nodes); two, and
				// it is overdue, and a read that heard everyone else does
				// not wait for it either: the holder's write waited for no
				// ACK, which the read does not promise to see then.
				t.Logf("round %d: the holder is suspect or overdue at the asker (answered %d of %d); not checked", round, res.Answered, res.Alive)
				continue
			}
			if !res.Found || res.Record.Hash() != newest.Hash() {
				t.Fatalf("round %d: fresh read returned %q@%d (found %v), want %q@%d; %+v; members %+v",
					round, res.Record.Value, res.Record.Lamport, res.Found, newest.Value, newest.Lamport, res, asker.node.Members())
			}
			if err := holds(asker, key, newest.Hash()); err != nil {
				t.Errorf("round %d: the asker did not store the newest: %v", round, err)
			}
			if res.Answered < 1 || res.Answered > res.Alive || res.Alive > len(nodes) {
				t.Errorf("round %d: answered %d of %d alive, %d nodes", round, res.Answered, res.Alive, len(nodes))
			}
			if loss > 0 {
				continue
			}
			// The witnesses and the asker are asked, or every node: at 3
			// (all are witnesses), or after the lossy round left the
			// member table unsettled (a member suspect or back lately).
			asked := nodes
			if res.Asked < len(nodes) {
				asked = wits
				if !slices.Contains(wits, asker) {
					asked = slices.Concat(wits, []*simNode{asker})
				}
			}
			if res.Answered != len(asked) || res.Asked != len(asked) || res.Alive != len(nodes) || res.Repaired != len(asked)-2 {
				t.Errorf("answered %d, asked %d, alive %d, repaired %d; want %d, %d, %d, %d",
					res.Answered, res.Asked, res.Alive, res.Repaired, len(asked), len(asked), len(nodes), len(asked)-2)
			}
			// Well within a heartbeat: anti-entropy needs two HELLOs.
			time.Sleep(100 * time.Millisecond)
			for _, sn := range asked {
				if err := holds(sn, key, newest.Hash()); err != nil {
					t.Errorf("not repaired: %v", err)
				}
			}
		}
		// Nodes not asked get the newest by anti-entropy.
		waitFor(t, 10*simHeartbeat, func() error { return converged(nodes) })
		checkWrites(t, nodes, h)
	})
}

// TestSimFreshReadConcurrent: two nodes hold concurrent versions; a fresh
// read through a third resolves them with the conflict hook, as
// replication would, and every node ends on that resolution.
func TestSimFreshReadConcurrent(t *testing.T) {
	forSeedsDiv(t, 2, func(t *testing.T, seed uint64) {
		nw := lossy(seed)
		res := newUnionResolver()
		nodes := startSimClusterWith(t, nw, 3, simOptions{res: res})
		time.Sleep(2 * simHeartbeat)
		h := &history{}
		a, b := h.writeLocal(t, nodes[0], "k", "a"), h.writeLocal(t, nodes[1], "k", "b")
		got, err := nodes[2].node.FreshGet(context.Background(), "k", 0)
		if err != nil {
			t.Fatal(err)
		}
		// The read promises the resolution only when it heard both
		// holders. On the lossy network one may be suspect when the read
		// begins — it then counts 2 alive and stops at 2 answers, though
		// the holder may be alive again when the read returns — or
		// overdue and left unheard.
		if got.Answered < len(nodes) {
			t.Logf("a holder was suspect or overdue at the asker (answered %d of %d alive); the read is not checked", got.Answered, got.Alive)
		} else if !got.Found || string(got.Record.Value) != "a,b" || !got.Record.VV.Dominates(a.VV) || !got.Record.VV.Dominates(b.VV) {
			t.Fatalf("fresh read of concurrent versions: %q vv %v", got.Record.Value, got.Record.VV)
		}
		// Repairs may be lost: anti-entropy finishes what they miss.
		waitFor(t, 10*simHeartbeat, func() error { return converged(nodes) })
		for _, sn := range nodes {
			if err := holds(sn, "k", got.Record.Hash()); err != nil && got.Answered == len(nodes) {
				t.Error(err)
			}
		}
		checkWrites(t, nodes, h)
	})
}

// TestFreshReadLargeRecord: an answer too large for a datagram carries
// only the version; the asker fetches the record over a stream.
func TestFreshReadLargeRecord(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := simnet.New(1, simnet.Options{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
		nodes := startSimCluster(t, nw, 2)
		time.Sleep(2 * simHeartbeat)
		big := bytes.Repeat([]byte("x"), 10000)
		rec, err := nodes[0].st.Set(context.Background(), "big", big, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := nodes[1].node.FreshGet(context.Background(), "big", 0)
		if err != nil {
			t.Fatal(err)
		}
		if !got.Found || got.Record.Hash() != rec.Hash() || got.Answered != 2 {
			t.Fatalf("got %d bytes @%d, answered %d", len(got.Record.Value), got.Record.Lamport, got.Answered)
		}
	})
}

// TestFreshReadMissing: a key nobody holds is not found, and the read
// returns as soon as every alive member answered.
func TestFreshReadMissing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := simnet.New(1, simnet.Options{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
		nodes := startSimCluster(t, nw, 3)
		time.Sleep(2 * simHeartbeat)
		start := time.Now()
		got, err := nodes[0].node.FreshGet(context.Background(), "nobody/has/it", 0)
		if err != nil {
			t.Fatal(err)
		}
		if got.Found || got.Answered != 3 || got.Alive != 3 {
			t.Errorf("got %+v", got)
		}
		if took := time.Since(start); took >= DefaultQueryTimeout {
			t.Errorf("took %v: waited for the timeout although everyone answered", took)
		}
	})
}

// TestFreshReadBeforeFirstRound: a node up for less than a heartbeat may
// not know every member yet, so it waits the whole query timeout.
func TestFreshReadBeforeFirstRound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := simnet.New(1, simnet.Options{})
		sn := startSimNode(t, nw, simDir(t), "alone", nil)
		t.Cleanup(func() { sn.stop(t) })
		start := time.Now()
		got, err := sn.node.FreshGet(context.Background(), "k", 200*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < 200*time.Millisecond || got.Answered != 1 || got.Alive != 1 {
			t.Errorf("took %v, %+v", took, got)
		}
	})
}

func TestMaxima(t *testing.T) {
	a, b := store.NodeID{1}, store.NodeID{2}
	rec := func(vv store.VV, v string) store.Record {
		return store.Record{Key: "k", Value: []byte(v), VV: vv, Lamport: 1, Origin: a}
	}
	old, newer := rec(store.VV{a: 1}, "old"), rec(store.VV{a: 2}, "new")
	left, right := rec(store.VV{a: 2, b: 1}, "l"), rec(store.VV{a: 1, b: 2}, "r")
	for _, tc := range []struct {
		in   []store.Record
		want []string
	}{
		{[]store.Record{old}, []string{"old"}},
		{[]store.Record{old, newer, old}, []string{"new"}},
		{[]store.Record{newer, old}, []string{"new"}},
		{[]store.Record{old, left, right, newer}, []string{"l", "r"}},
		{[]store.Record{right, left, right}, []string{"r", "l"}},
	} {
		var got []string
		for _, r := range maxima(tc.in) {
			got = append(got, string(r.Value))
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("maxima = %v, want %v", got, tc.want)
		}
	}
}

// keyWitnesses returns the r witnesses of key among nodes (all alive),
// best first: every node when there are at most r.
func keyWitnesses(nodes []*simNode, key string, r int) []*simNode {
	byID := map[store.NodeID]*simNode{}
	var ids []store.NodeID
	for _, sn := range nodes {
		byID[sn.st.NodeID()] = sn
		ids = append(ids, sn.st.NodeID())
	}
	var out []*simNode
	for _, id := range witnessesOf(store.KeyHash(key), ids, r) {
		out = append(out, byID[id])
	}
	return out
}

// aliveAt reports whether sn counts peer alive now.
func aliveAt(sn, peer *simNode) bool {
	for _, m := range sn.node.Members() {
		if m.ID == peer.st.NodeID() {
			return m.State == Alive
		}
	}
	return false
}

// TestFreshReadOverdue: a fresh read waits its whole timeout for a silent
// member while that member may just be slow, and not at all once it is
// overdue (unheard for 2 of its heartbeats, a heartbeat before suspect)
// and every other alive member answered: the answers then include a
// holder of every write acknowledged with --wait 1 or more.
func TestFreshReadOverdue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := simnet.New(1, simnet.Options{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
		nodes := startSimCluster(t, nw, 3)
		time.Sleep(2 * simHeartbeat)
		rec, acked, err := nodes[0].write(t, "k", "v1", 1)
		if err != nil || acked < 1 {
			t.Fatalf("write: %d acks, %v", acked, err)
		}
		asker, silent := nodes[1], nodes[2]
		waitFor(t, 2*simHeartbeat, func() error { return holds(silent, "k", rec.Hash()) })
		nw.Partition(addrs(nodes[:2]), addrs(nodes[2:]))

		start := time.Now()
		got, err := asker.node.FreshGet(context.Background(), "k", 0)
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took < DefaultQueryTimeout || got.Answered != 2 || got.Alive != 3 {
			t.Errorf("a silent member heard lately: took %v, answered %d of %d; want the whole %v, 2 of 3",
				took, got.Answered, got.Alive, DefaultQueryTimeout)
		}

		m, _ := asker.node.members.get(silent.st.NodeID())
		waitFor(t, 3*simHeartbeat, func() error {
			if !asker.node.members.overdue([]Member{m}, time.Now()) {
				return errors.New("the silent member is not overdue")
			}
			return nil
		})
		if !aliveAt(asker, silent) {
			t.Fatal("the silent member is suspect already: nothing left to check")
		}
		start = time.Now()
		got, err = asker.node.FreshGet(context.Background(), "k", 0)
		if err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took >= DefaultQueryTimeout/2 || got.Answered != 2 || got.Alive != 3 ||
			!got.Found || got.Record.Hash() != rec.Hash() {
			t.Errorf("an overdue member: took %v, answered %d of %d, found %v; want at once, 2 of 3, the write",
				took, got.Answered, got.Alive, got.Found)
		}
	})
}

// TestSimFreshReadCost (docs/BENCHMARKS.md, Fresh reads and idle traffic):
// the answers and bytes a fresh read brings its asker. Each peer asked
// (every alive one at 3 nodes, the key's witnesses beyond) answers once; when the asker holds the newest version the answers carry
// versions only, and only an asker that lacks it is sent records. It
// prints the counts per read; -sim.fresh N runs N nodes.
func TestSimFreshReadCost(t *testing.T) {
	sizes := []int{3, 10}
	if raceEnabled || testing.Short() {
		sizes = []int{3}
	}
	if *simFreshNodes > 0 {
		sizes = []int{*simFreshNodes}
	}
	for _, n := range sizes {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			forSeedsDiv(t, 1<<30, func(t *testing.T, seed uint64) { freshReadCost(t, seed, n) })
		})
	}
}

func freshReadCost(t *testing.T, seed uint64, n int) {
	const reads, valueSize = 20, 256
	_, nodes, counters := startCounted(t, seed, n)
	asker := counters[0]
	value := bytes.Repeat([]byte("v"), valueSize)
	ctx := context.Background()
	// Keys every node holds (replicated).
	held, lacked := make([]string, reads), make([]string, reads)
	for i := range reads {
		held[i], lacked[i] = fmt.Sprintf("held/%d", i), fmt.Sprintf("lacked/%d", i)
		if _, _, err := nodes[1].write(t, held[i], string(value), 0); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*simHeartbeat, func() error {
		for _, k := range held {
			if _, ok, _ := nodes[0].st.Get(k); !ok {
				return fmt.Errorf("the asker lacks %s", k)
			}
		}
		return nil
	})
	// Beyond r nodes, with the member table settled, a read asks the key's
	// witnesses alone (docs/PROTOCOL.md, Fresh reads): r peers, or r−1
	// when the asker is one.
	settle(n)
	var peers uint64 // asked, over both measures
	answers0 := asker.byType[wire.TypeAnswer].Load()
	measure := func(keys []string) (answers, bytes float64) {
		a0, b0 := asker.byType[wire.TypeAnswer].Load(), asker.bytes[wire.TypeAnswer].Load()
		for _, k := range keys {
			res, err := nodes[0].node.FreshGet(ctx, k, 0)
			if err != nil || !res.Found || res.Answered != res.Asked {
				t.Fatalf("fresh read of %s: %+v, %v; want found, answered by all asked", k, res, err)
			}
			want := n
			if n > DefaultFreshWitnesses {
				want = len(keyWitnesses(nodes, k, DefaultFreshWitnesses)) + 1
				if slices.Contains(keyWitnesses(nodes, k, DefaultFreshWitnesses), nodes[0]) {
					want--
				}
			}
			if res.Asked != want {
				t.Errorf("fresh read of %s asked %d nodes, want %d", k, res.Asked, want)
			}
			peers += uint64(res.Asked - 1)
		}
		return float64(asker.byType[wire.TypeAnswer].Load()-a0) / reads, float64(asker.bytes[wire.TypeAnswer].Load()-b0) / reads
	}
	ha, hb := measure(held)
	// Keys every node but the asker holds: a write not replicated to it,
	// applied to the others directly, just before the reads (anti-entropy
	// would bring them to the asker within a few heartbeats).
	for _, k := range lacked {
		rec, err := nodes[1].st.Set(ctx, k, value, nil)
		if err != nil {
			t.Fatal(err)
		}
		for _, sn := range nodes[2:] {
			if _, err := sn.st.Apply(ctx, rec); err != nil {
				t.Fatal(err)
			}
		}
	}
	la, lb := measure(lacked)
	t.Logf("%d nodes, %d-byte values, per fresh read: asker holds the newest: %.1f answers, %.0f bytes (%.0f per answer); "+
		"asker lacks it: %.1f answers, %.0f bytes (%.0f per answer)", n, valueSize, ha, hb, hb/ha, la, lb, lb/la)
	if got := asker.byType[wire.TypeAnswer].Load() - answers0; got != peers {
		t.Errorf("%d answers to %d reads, want one per peer asked, %d", got, 2*reads, peers)
	}
	if perAnswer := hb / ha; perAnswer >= valueSize {
		t.Errorf("an asker holding the newest received %.0f bytes per answer: records, not versions", perAnswer)
	}
	if perAnswer := lb / la; perAnswer < valueSize {
		t.Errorf("an asker lacking the key received %.0f bytes per answer: no records", perAnswer)
	}
}

// TestFreshQueryHave: a fresh read's QUERY carries the version the asker
// holds, unless that would not fit a datagram (a version vector of many
// writers): then it carries none, and every peer answers with its record.
func TestFreshQueryHave(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := simnet.New(1, simnet.Options{})
		sn := startSimNode(t, nw, simDir(t), "alone", nil)
		t.Cleanup(func() { sn.stop(t) })
		ctx := context.Background()
		small, err := sn.st.Set(ctx, "small", []byte("v"), nil)
		if err != nil {
			t.Fatal(err)
		}
		wide := store.Record{Key: "wide", Value: []byte("v"), VV: store.VV{}, Lamport: 200}
		for i := range 100 {
			wide.VV[store.NodeID{byte(i), 1}] = uint64(i + 1)
		}
		wide.Origin, wide.LWW = store.NodeID{99, 1}, store.Stamp{Lamport: 200, Origin: store.NodeID{99, 1}}
		wide.At = small.At
		if _, err := sn.st.Apply(ctx, wide); err != nil {
			t.Fatal(err)
		}
		if got, ok, err := sn.st.Peek("wide"); err != nil || !ok || len(got.VV) != 100 {
			t.Fatalf("the wide record was not stored: %v, %v", ok, err)
		}
		for _, tc := range []struct {
			key  string
			want bool
		}{{"small", true}, {"wide", false}, {"missing", false}} {
			q, err := sn.node.query(1, tc.key)
			if err != nil {
				t.Fatal(err)
			}
			if q.Holds() != tc.want {
				t.Errorf("%s: QUERY holds a version: %v, want %v", tc.key, q.Holds(), tc.want)
			}
			if b, err := sn.node.encode(q); err != nil || len(b) > sn.node.cfg.MaxDatagram {
				t.Errorf("%s: QUERY of %d bytes (%v), max_datagram %d", tc.key, len(b), err, sn.node.cfg.MaxDatagram)
			}
		}
	})
}
