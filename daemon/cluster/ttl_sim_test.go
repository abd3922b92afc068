package cluster

import (
	"context"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudknowledge/ck/internal/simnet"
	"github.com/cloudknowledge/ck/store"
)

// simKeyTTL is the TTL of the keys in the expiry scenarios, and
// simExpiryBound how much later than at its origin a key may expire on
// another node: the delays of the messages that brought it there, which
// the simulated network keeps under 30 ms a hop, with room for the sync
// session that carried it (docs/ARCHITECTURE.md, "Expiring and ephemeral
// keys").
const (
	simKeyTTL      = 20 * time.Second
	simExpiryBound = time.Second
)

// writeTTL is a local write with a TTL through a node: commit, replicate.
func (sn *simNode) writeTTL(t *testing.T, key, value string, ttl time.Duration) store.Record {
	t.Helper()
	rec, err := sn.st.SetTTL(context.Background(), key, []byte(value), nil, ttl)
	if err != nil {
		t.Fatal(err)
	}
	sn.node.Replicate(rec)
	return rec
}

// expiryWatch polls every node's view of a set of keys in virtual time and
// records when each node stopped showing each key.
type expiryWatch struct {
	deadline map[string]time.Time            // key → its origin's deadline
	seen     map[string]map[string]bool      // node → key → shown once
	gone     map[string]map[string]time.Time // node → key → hidden from then on
	held     map[string]map[string]time.Time // node → key → the deadline it held (from Left)
}

func newExpiryWatch() *expiryWatch {
	return &expiryWatch{
		deadline: map[string]time.Time{}, seen: map[string]map[string]bool{},
		gone: map[string]map[string]time.Time{}, held: map[string]map[string]time.Time{},
	}
}

// poll looks at every running node once; a key shown again after it was
// hidden is an error.
func (w *expiryWatch) poll(t *testing.T, nodes []*simNode) {
	now := time.Now()
	for _, sn := range nodes {
		if !sn.running() {
			continue
		}
		if w.seen[sn.name] == nil {
			w.seen[sn.name], w.gone[sn.name], w.held[sn.name] = map[string]bool{}, map[string]time.Time{}, map[string]time.Time{}
		}
		for key, dl := range w.deadline {
			rec, shown, err := sn.st.Get(key)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case shown && !w.gone[sn.name][key].IsZero():
				t.Errorf("%s shows %s again after it expired there", sn.name, key)
			case shown:
				w.seen[sn.name][key] = true
				at := now.Add(time.Duration(rec.Left) * time.Millisecond)
				if h := w.held[sn.name][key]; h.IsZero() || at.Before(h) {
					w.held[sn.name][key] = at
				}
				if now.After(dl.Add(simExpiryBound)) {
					t.Errorf("%s still shows %s %v after its origin's deadline", sn.name, key, now.Sub(dl))
				}
			case w.seen[sn.name][key] && w.gone[sn.name][key].IsZero():
				w.gone[sn.name][key] = now
				if now.Before(dl.Add(-time.Millisecond)) {
					t.Errorf("%s hid %s %v before its origin's deadline", sn.name, key, dl.Sub(now))
				}
			}
		}
	}
}

// skews returns, over every node and key it showed, how much later than at
// the origin the key expired there (by the deadline it held, to the ms).
func (w *expiryWatch) skews() []time.Duration {
	var out []time.Duration
	for _, keys := range w.held {
		for key, at := range keys {
			out = append(out, at.Sub(w.deadline[key]))
		}
	}
	slices.Sort(out)
	return out
}

// TestSimTTLExpiresEverywhere: keys with a TTL written on random nodes, some
// during a partition, over a network that loses, duplicates and delays 20 %
// of datagrams, are shown on every node until about their origin's
// deadline and hidden on every node within simExpiryBound after it, never
// shown again; the nodes converge to the same bytes; the expirers log one
// expire event per key on every node that held it; and a node that
// bootstraps after the keys expired never shows them.
func TestSimTTLExpiresEverywhere(t *testing.T) {
	forSeedsDiv(t, 10, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 13))
		nw := lossy(seed)
		nodes := startSimCluster(t, nw, 3+rng.IntN(3))
		left := nodes[:1+rng.IntN(len(nodes)-1)]
		nw.Partition(addrs(left), addrs(nodes[len(left):]))
		w := newExpiryWatch()
		const keys = 12
		for i := range keys {
			sn := nodes[rng.IntN(len(nodes))]
			key := fmt.Sprintf("ttl/%s/%d", sn.name, i)
			sn.writeTTL(t, key, "v", simKeyTTL)
			w.deadline[key] = time.Now().Add(simKeyTTL)
			if i == keys/2 {
				nw.Heal()
			}
			for range 1 + rng.IntN(20) {
				time.Sleep(50 * time.Millisecond)
				w.poll(t, nodes)
			}
		}
		nw.Heal()
		last := slices.MaxFunc(slices.Collect(maps.Values(w.deadline)), time.Time.Compare)
		for time.Now().Before(last.Add(2 * simExpiryBound)) {
			time.Sleep(50 * time.Millisecond)
			w.poll(t, nodes)
		}
		for _, sn := range nodes {
			for key := range w.deadline {
				if _, found, _ := sn.st.Peek(key); !found {
					t.Errorf("%s lacks %s (expired, but held)", sn.name, key)
				}
			}
		}
		waitFor(t, 60*simHeartbeat, func() error { return converged(nodes) })
		waitFor(t, 10*simHeartbeat, func() error {
			for _, sn := range nodes {
				if n := sn.st.Stats().Expired; n != keys {
					return fmt.Errorf("%s logged %d expire events for %d keys", sn.name, n, keys)
				}
			}
			return nil
		})

		late := startSimNode(t, nw, simDir(t), "late", nil)
		t.Cleanup(func() { late.stop(t) })
		all := append(slices.Clone(nodes), late)
		waitFor(t, 60*simHeartbeat, func() error {
			for key := range w.deadline {
				if _, found, _ := late.st.Get(key); found {
					t.Fatalf("the late node shows %s, expired before it started", key)
				}
			}
			if err := synced(all); err != nil {
				return err
			}
			return converged(all)
		})
		sk := w.skews()
		if len(sk) == 0 {
			t.Fatal("no node ever showed a key")
		}
		t.Logf("%d expiries on %d nodes: skew after the origin's deadline p50 %v, p99 %v, max %v",
			len(sk), len(nodes), sk[len(sk)/2], sk[len(sk)*99/100], sk[len(sk)-1])
	})
}

// TestSimTTLNewerWriteWins: a key rewritten before its deadline lives on
// with the new write's lifetime everywhere; one rewritten without a TTL
// never expires.
func TestSimTTLNewerWriteWins(t *testing.T) {
	forSeedsDiv(t, 10, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 14))
		nw := lossy(seed)
		nodes := startSimCluster(t, nw, 3)
		a := nodes[rng.IntN(len(nodes))]
		a.writeTTL(t, "renewed", "1", simKeyTTL)
		a.writeTTL(t, "kept", "1", simKeyTTL)
		waitFor(t, 10*simHeartbeat, func() error { return converged(nodes) })
		time.Sleep(simKeyTTL / 2)
		b := nodes[rng.IntN(len(nodes))]
		b.writeTTL(t, "renewed", "2", simKeyTTL)
		if _, err := b.st.Set(context.Background(), "kept", []byte("2"), nil); err != nil {
			t.Fatal(err)
		}
		rec, _, _ := b.st.Get("kept")
		b.node.Replicate(rec)
		time.Sleep(simKeyTTL/2 + simExpiryBound)
		waitFor(t, 30*simHeartbeat, func() error { return converged(nodes) })
		for _, sn := range nodes {
			for _, key := range []string{"renewed", "kept"} {
				if r, found, _ := sn.st.Get(key); !found || string(r.Value) != "2" {
					t.Errorf("%s: %s is %q (found %v) after the rewrite, want 2", sn.name, key, r.Value, found)
				}
			}
		}
		time.Sleep(simKeyTTL / 2)
		for _, sn := range nodes {
			if _, found, _ := sn.st.Get("renewed"); found {
				t.Errorf("%s shows the renewed key past its new deadline", sn.name)
			}
			if _, found, _ := sn.st.Get("kept"); !found {
				t.Errorf("%s lost the key rewritten without a ttl", sn.name)
			}
		}
	})
}

var ttlCostKeys = flag.Int("ttlcost.keys", 10_000, "keys with a TTL in TestIdleCostTTL (docs/BENCHMARKS.md uses 100000)")

// TestIdleCostTTL: keys with a TTL cost nothing on the network when they
// expire: a cluster at rest holding -ttlcost.keys of them (1,000 under
// -race or -short), all expiring during the measurement, sends one HELLO
// per node per heartbeat and runs no sync session (docs/PROTOCOL.md, Costs).
func TestIdleCostTTL(t *testing.T) {
	keys := *ttlCostKeys
	if testing.Short() || raceEnabled {
		keys = min(keys, 1000)
	}
	const beats = 30
	synctest.Test(t, func(t *testing.T) {
		nw := simnet.New(1, simnet.Options{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
		nodes := startSimCluster(t, nw, 3)
		recs := make([]store.Record, keys)
		parallel(t, keys, func(i int) error {
			var err error
			recs[i], err = nodes[i%3].st.SetTTL(context.Background(), fmt.Sprintf("ttl/%06d", i), []byte("up"), nil, 10*simHeartbeat)
			return err
		})
		for j, sn := range nodes {
			parallel(t, keys, func(i int) error {
				if i%3 == j {
					return nil
				}
				_, err := sn.st.Apply(context.Background(), recs[i])
				return err
			})
		}
		waitFor(t, 10*simHeartbeat, func() error {
			if err := synced(nodes); err != nil {
				return err
			}
			return converged(nodes)
		})
		time.Sleep(3 * simHeartbeat)
		before := make([]StatsSnapshot, len(nodes))
		for i, sn := range nodes {
			before[i] = sn.node.Stats()
		}
		time.Sleep(beats * simHeartbeat)
		var total uint64
		for i, sn := range nodes {
			s := sn.node.Stats()
			frames := s.Sent - before[i].Sent
			total += frames
			if frames < beats*9/10 || frames > beats*11/10+1 {
				t.Errorf("%s sent %d frames in %d heartbeats while %d keys expired, want one HELLO each", sn.name, frames, beats, keys)
			}
			if s.SyncOpened != before[i].SyncOpened || s.SyncServed != before[i].SyncServed {
				t.Errorf("%s ran sync sessions while keys expired", sn.name)
			}
			if n := sn.st.Stats().Expired; n != uint64(keys) {
				t.Errorf("%s logged %d expiries of %d keys", sn.name, n, keys)
			}
		}
		t.Logf("%d keys expired on 3 nodes; frames sent in %d heartbeats: %d", keys, beats, total)
	})
}
