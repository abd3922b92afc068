package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/store"
)

// deleteKey is a replicated delete through a node, recorded in h.
func (h *history) deleteKey(t *testing.T, sn *simNode, key string) store.Record {
	t.Helper()
	rec, err := sn.st.Delete(context.Background(), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	sn.node.Replicate(rec)
	h.writes = append(h.writes, rec)
	return rec
}

// rejoin does on sn what `ckctl rejoin` does (daemon/rejoin.go) with the
// same selection and re-application: it takes the node's own writes made
// since it was last in sync, stops it (BYE), starts it on a fresh store
// (a fresh node id) and a fresh peer book at the same address, waits for
// its bootstrap, and re-applies those writes as new local writes. It
// returns them, and the records the re-application wrote.
func rejoin(t *testing.T, sn *simNode) (own, reapplied []store.Record) {
	t.Helper()
	cutoff := sn.node.LatestInSync()
	if cutoff.IsZero() {
		t.Fatalf("%s was never in sync", sn.name)
	}
	if err := OwnWrites(sn.st, cutoff, func(r store.Record) error { own = append(own, r); return nil }); err != nil {
		t.Fatal(err)
	}
	old := sn.node.id
	sn.stop(t)
	sn.path = filepath.Join(filepath.Dir(sn.path), sn.name+"-rejoined.db")
	sn.book = &memBook{}
	sn.start(t)
	if sn.node.id == old {
		t.Fatalf("%s kept its node id on a fresh store", sn.name)
	}
	waitFor(t, 20*simHeartbeat, func() error { return synced([]*simNode{sn}) })
	if st := sn.node.Sync(); st.Received == 0 {
		t.Errorf("%s's bootstrap after the rejoin pulled nothing: %+v", sn.name, st)
	}
	for _, r := range own {
		did, err := sn.node.Reapply(context.Background(), sn.st, r)
		if err != nil {
			t.Fatal(err)
		}
		if !did {
			t.Errorf("%s: its own write %s@%d, made while apart, was not re-applied", sn.name, r.Key, r.Lamport)
			continue
		}
		cur, _, _ := sn.st.Get(r.Key)
		reapplied = append(reapplied, cur)
	}
	return own, reapplied
}

// sameMilli waits, a millisecond at a time and for up to a few
// heartbeats, until sn has been in sync with a peer within the current
// millisecond (it may not happen: 20% of HELLOs are lost).
func sameMilli(sn *simNode) {
	// Virtual time stands on whole milliseconds here: look at the end of
	// each one, not at its start.
	time.Sleep(time.Millisecond - time.Microsecond)
	for range 5 * simHeartbeat / time.Millisecond {
		if sn.node.LatestInSync().UnixMilli() == time.Now().UnixMilli() {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// noneQuarantined returns nil when no running node shows a member as
// quarantined (a peer that left or is gone does not count).
func noneQuarantined(nodes []*simNode) error {
	for _, sn := range nodes {
		if !sn.running() {
			continue
		}
		for _, m := range sn.node.Members() {
			if m.State == Quarantined {
				return fmt.Errorf("%s holds %s (%s) quarantined", sn.name, m.Name, m.ID)
			}
		}
	}
	return nil
}

// TestSimRejoinAfterLongSeparation: one node of three is cut off for
// longer than purge_log_ttl while both sides write — the other side
// deletes some keys, changes others and writes new ones; the stale node
// writes its own keys, changes and deletes keys the other side leaves
// alone, and writes one key the other side writes too. After the heal they
// quarantine each other. The stale node then rejoins (as `ckctl rejoin`
// does): its own writes since the separation are exactly those it made
// while apart, it bootstraps on a fresh store, and re-applies them. Then
// nobody is quarantined, every node converges, no key the other side
// deleted comes back, each of the stale node's writes holds everywhere
// (over the other side's value on the key both wrote), and every write of
// the other side and every re-applied write is held everywhere.
func TestSimRejoinAfterLongSeparation(t *testing.T) {
	forSeedsDiv(t, 5, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 50))
		nw := lossy(seed)
		nodes := startSeparable(t, nw, 3)
		stale, others := nodes[0], nodes[1:]
		h := &history{}
		const keys = 10
		for i := range keys {
			h.write(t, nodes[rng.IntN(len(nodes))], fmt.Sprintf("old/%d", i), "v0")
		}
		waitFor(t, 10*simHeartbeat, func() error { return converged(nodes) })
		settled := time.Now()
		waitFor(t, 10*simHeartbeat, func() error { return inSyncSince(nodes, settled) })
		if rng.IntN(2) == 0 {
			// Split, and write, within the millisecond of the stale node's
			// last in-sync moment: its writes then carry that millisecond
			// (At), and are still its own writes since the separation.
			sameMilli(stale)
		}

		nw.Partition(addrs(nodes[:1]), addrs(others))
		apart := len(h.writes)
		perm := rng.Perm(keys)
		old := func(i int) string { return fmt.Sprintf("old/%d", perm[i]) }
		// The stale node's writes while apart, latest per key. It writes
		// first, at the very instant of the split, as it may.
		mine := map[string]store.Record{}
		staleWrite := func(key, value string) {
			var r store.Record
			if value == "" {
				r = h.deleteKey(t, stale, key)
			} else {
				r = h.write(t, stale, key, value)
			}
			mine[key] = r
		}
		deleted := map[string]bool{}
		for round := range 2 + rng.IntN(3) {
			for j := range 1 + rng.IntN(3) {
				staleWrite(fmt.Sprintf("stale/k%d", j), fmt.Sprintf("stale %d", round))
			}
			staleWrite(old(5+round%2), fmt.Sprintf("changed by stale %d", round)) // old 5, 6: the stale side's
			staleWrite("both", fmt.Sprintf("stale %d", round))
			if round == 0 {
				staleWrite(old(7), "") // deleted by the stale side
			}
			other := others[rng.IntN(len(others))]
			for i := range 2 + round%2 { // old 0..2: deleted by the other side
				if !deleted[old(i)] {
					h.deleteKey(t, other, old(i))
					deleted[old(i)] = true
				}
			}
			h.write(t, other, old(3+round%2), fmt.Sprintf("changed by %s %d", other.name, round)) // old 3, 4
			h.write(t, other, fmt.Sprintf("others/k%d", rng.IntN(3)), fmt.Sprintf("%s %d", other.name, round))
			h.write(t, other, "both", fmt.Sprintf("%s %d", other.name, round))
			time.Sleep(time.Duration(rng.IntN(60)) * time.Second)
		}
		time.Sleep(simTTL + time.Duration(1+rng.IntN(600))*time.Second)

		nw.Heal()
		waitFor(t, 20*simHeartbeat, func() error {
			for _, o := range others {
				if err := mutual(stale, o, Quarantined); err != nil {
					return err
				}
			}
			return nil
		})
		// What the others hold before the rejoin: the deletes are tombstones.
		for key := range deleted {
			for _, o := range others {
				if r, ok, _ := o.st.Get(key); !ok || !r.Deleted {
					t.Fatalf("%s does not hold %s deleted before the rejoin", o.name, key)
				}
			}
		}

		staleID := stale.node.id
		own, reapplied := rejoin(t, stale)
		if len(own) != len(mine) {
			t.Errorf("the rejoin selected %d own writes, the stale node made %d (latest per key) while apart", len(own), len(mine))
		}
		for _, r := range own {
			if m, ok := mine[r.Key]; !ok || m.Hash() != r.Hash() {
				t.Errorf("the rejoin selected %s@%d %q, which is not the stale node's latest write while apart", r.Key, r.Lamport, r.Value)
			}
		}

		waitFor(t, 60*simHeartbeat, func() error {
			if err := noneQuarantined(nodes); err != nil {
				return err
			}
			if !allSee(nodes, len(nodes)-1) {
				return errors.New("the members do not all see each other alive")
			}
			return converged(nodes)
		})
		for _, sn := range nodes {
			for _, id := range sn.node.Quarantined() {
				// The others keep the stale node's old id, which never comes
				// back, as quarantined; it shows as left or gone.
				if sn == stale || id == stale.node.id {
					t.Errorf("%s quarantines %s after the rejoin", sn.name, id)
				}
			}
			for key := range deleted {
				if r, ok, _ := sn.st.Get(key); !ok || !r.Deleted {
					t.Errorf("%s: %s, deleted by the other side while apart, came back: %q", sn.name, key, r.Value)
				}
			}
			for key, m := range mine {
				r, ok, _ := sn.st.Get(key)
				if !ok || r.Deleted != m.Deleted || string(r.Value) != string(m.Value) {
					t.Errorf("%s holds %s = %q (deleted %v), not the stale node's %q (deleted %v)",
						sn.name, key, r.Value, r.Deleted, m.Value, m.Deleted)
				}
			}
		}
		// The stale node's writes under its old id are superseded by their
		// re-application; every other write must hold.
		var kept history
		for i, w := range h.writes {
			if i < apart || w.Origin != staleID {
				kept.writes = append(kept.writes, w)
			}
		}
		kept.writes = append(kept.writes, reapplied...)
		checkWrites(t, nodes, &kept)
		rejoined := time.Now()
		waitFor(t, 20*simHeartbeat, func() error { return inSyncSince(nodes, rejoined) })
	})
}
