package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/store"
)

// writeEph is an ephemeral local write through a node: commit, replicate.
func (sn *simNode) writeEph(t *testing.T, key string) {
	t.Helper()
	rec, err := sn.st.SetWith(context.Background(), key, []byte(sn.name), store.SetOptions{Ephemeral: true})
	if err != nil {
		t.Fatal(err)
	}
	sn.node.Replicate(rec)
}

// dropStale is what the daemon does once a restarted node has synced:
// delete its ephemeral keys of earlier boots (daemon.dropStaleEphemeral).
func (sn *simNode) dropStale(t *testing.T) {
	t.Helper()
	var keys []string
	if err := sn.st.StaleEphemeral(func(r store.Record) error { keys = append(keys, r.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	zero := uint64(0)
	for _, key := range keys {
		rec, err := sn.st.Delete(context.Background(), key, &zero)
		if err != nil {
			t.Fatal(err)
		}
		sn.node.Replicate(rec)
	}
}

// shows returns nil when every running node in nodes shows (want) or hides
// (!want) every key.
func shows(nodes []*simNode, keys []string, want bool) error {
	for _, sn := range nodes {
		if !sn.running() {
			continue
		}
		for _, key := range keys {
			if _, found, err := sn.st.Get(key); err != nil || found != want {
				return fmt.Errorf("%s: %s shown %v, want %v (%v)", sn.name, key, found, want, err)
			}
		}
	}
	return nil
}

// TestSimEphemeral: ephemeral keys of an owner show on every node while it
// runs; a partition hides them on the other side (after dead_after) and
// the heal brings them back with no action; a crash hides them everywhere
// within dead_after; the restarted owner deletes them for good (tombstones
// everywhere, converged); a key overwritten from another node is ordinary
// and outlives its first owner's BYE, which hides the owner's other keys
// at once.
func TestSimEphemeral(t *testing.T) {
	forSeedsDiv(t, 20, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 15))
		nw := lossy(seed)
		nodes := startSimClusterWith(t, nw, 4, simOptions{eph: true})
		perm := rng.Perm(len(nodes))
		owner, other, writer := nodes[perm[0]], nodes[perm[1]], nodes[perm[2]]
		var rest []*simNode
		for _, sn := range nodes {
			if sn != owner {
				rest = append(rest, sn)
			}
		}
		var mine, theirs []string
		for i := range 5 {
			mine = append(mine, fmt.Sprintf("hosts/%s/%d", owner.name, i))
			owner.writeEph(t, mine[i])
		}
		for i := range 2 {
			theirs = append(theirs, fmt.Sprintf("hosts/%s/%d", other.name, i))
			other.writeEph(t, theirs[i])
		}
		all := append(slices.Clone(mine), theirs...)
		waitFor(t, 30*simHeartbeat, func() error { return shows(nodes, all, true) })

		// A partition hides the owner's keys on the other side, and the
		// other side's on the owner; the heal brings them back.
		nw.Partition(addrs([]*simNode{owner}), addrs(rest))
		dead := 30 * simHeartbeat
		waitFor(t, dead+10*simHeartbeat, func() error {
			return errors.Join(shows(rest, mine, false), shows([]*simNode{owner}, theirs, false))
		})
		if err := errors.Join(shows([]*simNode{owner}, mine, true), shows(rest, theirs, true)); err != nil {
			t.Fatalf("a partition hid the keys of a node on the same side: %v", err)
		}
		nw.Heal()
		waitFor(t, 20*simHeartbeat, func() error { return shows(nodes, all, true) })

		// Overwritten from another node, a key is ordinary: it stays when
		// its first owner stops, which hides the owner's other key: at
		// once where its BYE arrives, within dead_after where it is lost.
		if _, _, err := writer.write(t, theirs[0], "plain", 0); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 30*simHeartbeat, func() error {
			for _, sn := range nodes {
				if r, _, _ := sn.st.Get(theirs[0]); r.Ephemeral != 0 {
					return fmt.Errorf("%s: %s is still ephemeral", sn.name, theirs[0])
				}
			}
			return nil
		})
		other.stop(t)
		waitFor(t, dead+10*simHeartbeat, func() error {
			return errors.Join(shows(nodes, theirs[:1], true), shows(nodes, theirs[1:], false))
		})

		// A crash (no BYE reaches anyone) hides the owner's keys
		// everywhere within dead_after.
		nw.Partition(addrs([]*simNode{owner}), addrs(rest))
		owner.stop(t)
		nw.Heal()
		crashed := time.Now()
		waitFor(t, dead+10*simHeartbeat, func() error { return shows(rest, mine, false) })
		t.Logf("a crashed owner's keys hidden everywhere after %v (dead_after %v)", time.Since(crashed), dead)

		// The restarted owner (a new boot epoch) deletes them for good.
		owner.start(t)
		if err := shows([]*simNode{owner}, mine, false); err != nil {
			t.Fatalf("the restarted owner shows its keys of the earlier boot: %v", err)
		}
		waitFor(t, 30*simHeartbeat, func() error {
			if owner.node.Bootstrapping() {
				return errors.New("the owner is still bootstrapping")
			}
			return nil
		})
		owner.dropStale(t)
		waitFor(t, 60*simHeartbeat, func() error {
			for _, sn := range nodes {
				if !sn.running() {
					continue
				}
				for _, key := range mine {
					if r, found, _ := sn.st.Peek(key); !found || !r.Deleted {
						return fmt.Errorf("%s: %s is not deleted", sn.name, key)
					}
				}
			}
			return converged(nodes)
		})
	})
}
