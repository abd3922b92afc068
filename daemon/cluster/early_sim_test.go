package cluster

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/simnet"
	"github.com/cloudknowledge/ck/store"
)

// TestSimCrashBetweenSendAndCommit: the origin of a write sends it to its
// peers before its own commit (docs/ARCHITECTURE.md, "Overlapped
// replication") and is killed in between — the UPDATE on the wire, the
// log not written. The restarted origin holds every write it had
// acknowledged, its clock is past the version it sent (so it never
// hands that version out again: its next writes take newer ones), its
// peers keep the write it lost, and once synced every node, the origin
// included, holds it and every answered write.
func TestSimCrashBetweenSendAndCommit(t *testing.T) {
	forSeedsDiv(t, 4, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 41))
		nw := simnet.New(seed, simnet.Options{Dup: 0.2, MinDelay: time.Millisecond, MaxDelay: 30 * time.Millisecond})
		cs := startCrashSim(t, nw, 3)
		for j := range 5 + rng.IntN(10) {
			cs.write(rng.IntN(3), fmt.Sprintf("k%d", rng.IntN(4)), fmt.Sprint("before-", j), true)
		}

		// Node 0's next commit stops once its writes are sent.
		origin := cs.nodes[0]
		node := origin.node
		entered, release := make(chan store.Record, 1), make(chan struct{})
		origin.st.SetEarly(func(ws []store.Early) {
			node.sendEarly(ws)
			if !sentEarly(ws[0].Ctx) {
				t.Error("a write made with Overlap was not sent before its commit")
			}
			entered <- ws[0].Record
			<-release
		})
		go cs.write(0, "lost", "sent-not-committed", true)
		lost := <-entered
		cs.crashed = func(int) { close(release) } // what the dead process does next reaches nobody
		must := cs.crash(0)

		for _, sn := range cs.nodes[1:] {
			waitFor(t, 10*simHeartbeat, func() error { return holdsVersion(sn, lost) })
		}
		time.Sleep(time.Duration(rng.IntN(3000)) * time.Millisecond)
		cs.restart(0, must)
		if l := origin.st.Lamport(); l < lost.Lamport {
			t.Errorf("the restarted origin's clock is %d, below the version %d it sent before the crash", l, lost.Lamport)
		}
		var after []store.Record
		for j := range 3 {
			rec, ok := cs.write(0, []string{"lost", "k0", "fresh"}[j], fmt.Sprint("after-", j), j%2 == 0)
			if !ok {
				t.Fatalf("write %d after the restart failed", j)
			}
			if rec.Lamport <= lost.Lamport {
				t.Errorf("the restarted origin wrote %s at version %d, not above the %d it sent before its crash", rec.Key, rec.Lamport, lost.Lamport)
			}
			after = append(after, rec)
		}

		waitFor(t, 60*simHeartbeat, func() error {
			if err := synced(cs.nodes); err != nil {
				return err
			}
			return converged(cs.nodes)
		})
		checkWrites(t, cs.nodes, &cs.acked)
		checkWrites(t, cs.nodes, &history{writes: slices.Concat([]store.Record{lost}, after)})
		t.Logf("lost write %s@%d; %d writes answered; network %+v", lost.Key, lost.Lamport, len(cs.acked.writes), nw.Stats())
	})
}

// holdsVersion reports whether sn holds rec or a version descending from it.
func holdsVersion(sn *simNode, rec store.Record) error {
	r, ok, err := sn.st.Get(rec.Key)
	if err != nil || !ok || !r.VV.Dominates(rec.VV) {
		return fmt.Errorf("%s does not hold %s@%d (holds vv %v, %v)", sn.name, rec.Key, rec.Lamport, r.VV, err)
	}
	return nil
}
