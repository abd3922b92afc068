package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/transport"
	"github.com/cloudknowledge/ck/daemon/wire"
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

// updateCounter counts the UPDATE frames a node broadcasts and the
// writes they carry.
type updateCounter struct {
	transport.Transport
	mu             sync.Mutex
	frames, writes int
}

func (c *updateCounter) Broadcast(b []byte) error {
	if _, m, err := wire.Decode(bytes.Clone(b), wire.Plaintext("sim")); err == nil {
		if u, ok := m.(*wire.Update); ok {
			c.mu.Lock()
			c.frames++
			c.writes += 1 + len(u.More)
			c.mu.Unlock()
		}
	}
	return c.Transport.Broadcast(b)
}

// TestSimCoalescedUpdates: many clients writing through one node at once,
// each waiting for one ACK, as the daemon writes (Overlap): the writes of
// one group commit leave in shared datagrams (fewer UPDATE frames than
// writes), every write is acknowledged — over a network that loses 20 %,
// where the resends go one write a datagram — and every node ends up
// holding every write.
func TestSimCoalescedUpdates(t *testing.T) {
	forSeedsDiv(t, 10, func(t *testing.T, seed uint64) {
		nw := lossy(seed)
		dir := simDir(t)
		var nodes []*simNode
		ct := &updateCounter{}
		for i := range 3 {
			sn := newSimNode(t, nw, dir, fmt.Sprintf("n%d", i), nil)
			if i == 0 {
				sn.wrap = func(tr transport.Transport) transport.Transport { ct.Transport = tr; return ct }
			}
			sn.start(t)
			t.Cleanup(func() { sn.stop(t) })
			nodes = append(nodes, sn)
		}
		waitFor(t, 20*simHeartbeat, func() error {
			if !allSee(nodes, 2) {
				return errors.New("members did not find each other")
			}
			return nil
		})
		// The simulated stores do not sync: each commit here yields for a
		// while after its send (not a sleep: the writers waiting for the
		// commit lock would keep the bubble's clock still), so that writers
		// queue behind it as they do behind an fsync, and group commits
		// form.
		origin := nodes[0]
		origin.st.SetEarly(func(ws []store.Early) {
			origin.node.sendEarly(ws)
			for range 200 {
				runtime.Gosched()
			}
		})
		// One write first: the next ones are within the reservation.
		if _, _, err := nodes[0].write(t, "first", "v", 2); err != nil {
			t.Fatal(err)
		}
		const clients, each = 32, 8
		var h history
		var mu sync.Mutex
		parallel(t, clients, func(c int) error {
			for j := range each {
				ctx := Overlap(context.Background(), 1)
				rec, err := nodes[0].st.Set(ctx, fmt.Sprintf("c%d/%d", c, j), []byte("v"), nil)
				if err != nil {
					return err
				}
				if n, err := nodes[0].node.ReplicateWait(ctx, rec, 1, 10*time.Second); err != nil || n < 1 {
					return fmt.Errorf("write %s: %d acks, %v", rec.Key, n, err)
				}
				mu.Lock()
				h.writes = append(h.writes, rec)
				mu.Unlock()
			}
			return nil
		})
		ct.mu.Lock()
		frames, writes := ct.frames, ct.writes
		ct.mu.Unlock()
		if frames >= writes {
			t.Errorf("%d writes went out in %d UPDATE frames: none shared a datagram", writes, frames)
		}
		waitFor(t, 60*simHeartbeat, func() error {
			if err := synced(nodes); err != nil {
				return err
			}
			return converged(nodes)
		})
		checkWrites(t, nodes, &h)
		t.Logf("%d writes (resends included) in %d UPDATE frames; network %+v", writes, frames, nw.Stats())
	})
}
