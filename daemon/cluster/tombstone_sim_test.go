package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/store"
)

// simTombTTL is tombstone_ttl in the purge scenarios (purge_log_ttl is
// simTTL, longer).
const simTombTTL = 10 * time.Minute

// del deletes key through a node, as the daemon does: commit, replicate.
func (sn *simNode) del(t *testing.T, key string) store.Record {
	t.Helper()
	rec, err := sn.st.Delete(context.Background(), key, nil)
	if err != nil {
		t.Fatal(err)
	}
	sn.node.Replicate(rec)
	return rec
}

// TestSimTombstonePurgedWhileAway: a node stops; meanwhile the others
// delete some keys, and purge the tombstones after tombstone_ttl. When the
// node comes back (within purge_log_ttl) it still holds the deleted
// values and offers them in sync sessions: the others drop them (their
// purge logs cover them) and answer with the purged tombstones, which
// remove them on the returning node. Nothing deleted comes back anywhere,
// and every node ends identical.
func TestSimTombstonePurgedWhileAway(t *testing.T) {
	forSeedsDiv(t, 4, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 40))
		nw := lossy(seed)
		nodes := startSimClusterWith(t, nw, 3+rng.IntN(2), simOptions{ttl: simTTL, tomb: simTombTTL, book: true})
		h := &history{}
		const keys = 30
		for i := range keys {
			h.write(t, nodes[rng.IntN(len(nodes))], fmt.Sprintf("k%02d", i), fmt.Sprint("v", i))
		}
		waitFor(t, 60*simHeartbeat, func() error { return converged(nodes) })

		away := nodes[rng.IntN(len(nodes))]
		away.stop(t)
		var others []*simNode
		for _, sn := range nodes {
			if sn != away {
				others = append(others, sn)
			}
		}
		deleted := map[string]bool{}
		for i := range keys {
			if rng.IntN(2) == 0 {
				key := fmt.Sprintf("k%02d", i)
				h.writes = append(h.writes, others[rng.IntN(len(others))].del(t, key))
				deleted[key] = true
			}
		}
		for i := range 5 {
			h.write(t, others[rng.IntN(len(others))], fmt.Sprintf("new%d", i), "x")
		}
		// Past tombstone_ttl the others purge: no tombstone left.
		time.Sleep(simTombTTL + 2*time.Minute)
		waitFor(t, 5*time.Minute, func() error {
			for _, sn := range others {
				if n := sn.st.Stats().Purged; n < uint64(len(deleted)) {
					return fmt.Errorf("%s purged %d of %d tombstones", sn.name, n, len(deleted))
				}
			}
			return converged(others)
		})

		away.start(t)
		waitFor(t, 120*simHeartbeat, func() error {
			if err := synced(nodes); err != nil {
				return err
			}
			return converged(nodes)
		})
		for _, sn := range nodes {
			held := dump(t, sn.st)
			for key := range deleted {
				if r, ok := held[key]; ok {
					t.Errorf("%s holds deleted key %s again: %+v", sn.name, key, r)
				}
			}
			if sn.node.sync.isQuarantined(away.st.NodeID()) {
				t.Errorf("%s quarantined the returning node", sn.name)
			}
		}
		checkWrites(t, nodes, h)
		t.Logf("%d of %d keys deleted and purged while %s was away; it dropped %d records", len(deleted), keys, away.name, away.st.Stats().Dropped)
	})
}
