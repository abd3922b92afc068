package cluster

import (
	"context"
	"errors"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudknowledge/ck/internal/simnet"
)

// TestSimRestartWhileCounting: a node restarted from what a crash left
// counts its records in the background (docs/ARCHITECTURE.md, "The digest
// at restart"; the count held here for several heartbeats). Meanwhile it
// serves reads and writes and applies its peers' updates, but its HELLOs
// carry no root and say it is syncing: no peer ever holds a partial root
// of it, no session runs with it either way, and its bootstrap waits. Once
// counted, it pulls what it missed while it was down and converges.
func TestSimRestartWhileCounting(t *testing.T) {
	forSeedsDiv(t, 20, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 16))
		nw := simnet.New(seed, simnet.Options{Dup: 0.1, MinDelay: time.Millisecond, MaxDelay: 20 * time.Millisecond})
		nodes := startSimCluster(t, nw, 3)
		load(t, rng, nodes, "k", 150)
		r := nodes[2]

		// The crash: r's files as they are at this instant, r gone.
		r.cancel()
		<-r.done
		r.cancel = nil
		synctest.Wait()
		crashed := filepath.Join(filepath.Dir(r.path), "r-crashed.db")
		copyStoreFiles(t, r.path, crashed)
		r.st.Close()
		r.st, r.path = nil, crashed
		missed, _, err := nodes[0].write(t, "missed/1", "written while r was down", 0)
		if err != nil {
			t.Fatal(err)
		}

		hold := make(chan struct{})
		release := sync.OnceFunc(func() { close(hold) })
		t.Cleanup(release) // before the nodes stop: their checks wait for the count
		r.countHold = hold
		r.start(t)
		if !r.st.Counting() {
			t.Fatal("the restarted store is not counting")
		}
		id, epoch := r.st.NodeID(), r.node.cfg.Epoch
		heard := 0
		during, _, err := nodes[1].write(t, "during/1", "written while r counts", 0)
		if err != nil {
			t.Fatal(err)
		}
		for range 6 * 10 { // six heartbeats
			time.Sleep(simHeartbeat / 10)
			for _, p := range nodes[:2] {
				m, ok := p.node.members.get(id)
				if !ok || m.Epoch != epoch {
					continue // not heard since the restart
				}
				heard++
				if m.Root != ([32]byte{}) || !m.Syncing {
					t.Fatalf("%s holds root %x, syncing %v, of a node still counting", p.name, m.Root[:4], m.Syncing)
				}
			}
		}
		if heard == 0 {
			t.Fatal("no peer heard the restarted node")
		}
		if rec, found, err := r.st.Get("k/000007"); err != nil || !found || string(rec.Value) != "value 7" {
			t.Fatalf("read while counting: %q, found %v, %v", rec.Value, found, err)
		}
		own, _, err := r.write(t, "own/1", "written by r while counting", 0)
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, 10*simHeartbeat, func() error {
			return errors.Join(holds(r, "during/1", during.Hash()), holds(nodes[0], "own/1", own.Hash()))
		})
		// A peer that opens a session anyway (its HELLO not heard yet) is
		// refused.
		m, _ := nodes[0].node.members.get(id)
		if _, err := nodes[0].node.openSession(context.Background(), m, nil); !errors.Is(err, errRefused) {
			t.Fatalf("a session opened with a node still counting: %v", err)
		}
		if st := r.node.Stats(); st.SyncOpened != 0 || st.SyncServed != 0 || st.SyncDeclined != 1 || !r.node.Bootstrapping() {
			t.Fatalf("while counting: %d sessions opened, %d served, %d declined, bootstrapping %v",
				st.SyncOpened, st.SyncServed, st.SyncDeclined, r.node.Bootstrapping())
		}
		if err := holds(r, "missed/1", missed.Hash()); err == nil {
			t.Fatal("the write r missed arrived before any session could run")
		}

		release()
		select {
		case <-r.st.Counted():
		case <-time.After(10 * simHeartbeat):
			t.Fatal("the count did not complete")
		}
		waitFor(t, 30*simHeartbeat, func() error {
			return errors.Join(synced(nodes), converged(nodes), holds(r, "missed/1", missed.Hash()))
		})
		// Its bootstrap pulled what it lacked, not everything: a store
		// counting its records is not an empty one (bootstrap.go).
		if got := r.node.Sync().Received; got > 10 {
			t.Fatalf("the restarted node's bootstrap received %d records: it asked for everything, as an empty store does", got)
		}
		for _, sn := range nodes {
			if err := sn.st.Check(); err != nil {
				t.Fatalf("%s: %v", sn.name, err)
			}
		}
	})
}
