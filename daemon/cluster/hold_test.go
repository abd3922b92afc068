package cluster

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/internal/simnet"
	"github.com/cloudknowledge/ck/store"
)

// TestHeldBatch: a writer's batch that reaches a node as several UPDATE
// datagrams, each saying how many follow it, is committed once its last
// datagram is in — one commit, one ACK datagram for all its writes — and
// not before; a datagram that does not continue the held batch, or the
// hold's timer, releases what is held, and every write is committed and
// acknowledged whatever the order. Counted on a real store, with the
// node on a simulated network in virtual time: synctest.Wait lets every
// commit and ACK the node would make happen before the next datagram.
func TestHeldBatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		follows []uint8 // each datagram's Follow, in the order sent
		// commits[i]: the node's commits once datagram i is in.
		commits []uint64
		// acks: ACK datagrams at the end.
		acks int
		// whole, broken: batches held to their end, released early.
		whole, broken uint64
		// gathered: the last datagram's release and its own writes are
		// queued one after the other, and the committer may take both
		// in one commit (one commit and one ACK datagram fewer).
		gathered bool
	}{
		{"whole", []uint8{2, 1, 0}, []uint64{0, 0, 1}, 1, 1, 0, false},
		{"alone", []uint8{0}, []uint64{1}, 1, 0, 0, false},
		{"middle lost", []uint8{2, 0}, []uint64{0, 2}, 2, 0, 1, true},
		{"out of order", []uint8{1, 2, 1, 0}, []uint64{0, 1, 1, 2}, 2, 1, 1, false},
		{"last lost", []uint8{2, 1}, []uint64{0, 0}, 1, 0, 1, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n, st, writer, stop := heldNode(t)
				defer stop()
				origin := store.NodeID{0xa5}
				start := st.Stats().Commits
				sent := 0
				for i, f := range tc.follows {
					u := batchDatagram(t, origin, i, 3, f)
					sent += len(u.Updates())
					b, err := wire.Encode(wire.Header{Sender: origin, Epoch: 1, Counter: uint64(i + 1)}, u, wire.Plaintext("sim"))
					if err != nil {
						t.Fatal(err)
					}
					if err := writer.SendTo(n.Addr(), b); err != nil {
						t.Fatal(err)
					}
					synctest.Wait()
					last := tc.gathered && i == len(tc.follows)-1
					if c := st.Stats().Commits - start; c != tc.commits[i] && !(last && c == tc.commits[i]-1) {
						t.Errorf("after datagram %d (follow %d): %d commits, want %d", i, f, c, tc.commits[i])
					}
				}
				time.Sleep(2 * holdFor) // a batch whose end was lost is released by its timer
				synctest.Wait()

				acked, acks := map[string]bool{}, 0
				for len(writer.Packets()) > 0 {
					p := <-writer.Packets()
					_, msg, err := wire.Decode(p.Buf, wire.Plaintext("sim"))
					if err != nil {
						t.Fatal(err)
					}
					if a, ok := msg.(*wire.Ack); ok {
						acks++
						acked[a.Key] = true
						for _, e := range a.More {
							acked[e.Key] = true
						}
					}
				}
				if (acks != tc.acks && !(tc.gathered && acks == tc.acks-1)) || len(acked) != sent {
					t.Errorf("%d writes acknowledged in %d ACK datagrams, want %d in %d", len(acked), acks, sent, tc.acks)
				}
				for k := range acked {
					if _, ok, err := st.Get(k); err != nil || !ok {
						t.Errorf("%s acknowledged but not stored (%v)", k, err)
					}
				}
				if w, b := n.held.whole.Load(), n.held.broken.Load(); w != tc.whole || b != tc.broken {
					t.Errorf("batches held whole %d, released early %d; want %d, %d", w, b, tc.whole, tc.broken)
				}
			})
		})
	}
}

// heldNode starts a node with a store of its own on a simulated network,
// inside a synctest bubble, and returns it, its store, an endpoint to
// send it datagrams from, and what stops them.
func heldNode(t *testing.T) (*Node, *store.Store, *simnet.Endpoint, func()) {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "data.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	nw := simnet.New(1, simnet.Options{})
	n := New(Config{NodeName: "n", Cluster: "sim", Heartbeat: time.Hour, DeadAfter: 10 * time.Hour, MaxDatagram: 1200}, nw.Endpoint(), st)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	return n, st, nw.Endpoint(), func() { cancel(); <-done; st.Close() }
}

// batchDatagram is datagram i of a writer's batch: k writes of its own
// from origin, saying follow more come.
func batchDatagram(t *testing.T, origin store.NodeID, i, k int, follow uint8) *wire.Update {
	t.Helper()
	var u *wire.Update
	for j := range k {
		l := uint64(10*i + j + 1)
		rec := store.Record{Key: fmt.Sprintf("d%d/w%d", i, j), Value: []byte("v"), VV: store.VV{origin: l}, Lamport: l,
			Origin: origin, LWW: store.Stamp{Lamport: l, Origin: origin}, At: time.Now().UnixMilli()}
		if u == nil {
			u = wire.NewUpdate(rec)
			continue
		}
		u.More = append(u.More, *wire.NewUpdate(rec))
	}
	u.Follow = follow
	return u
}

// TestUpdateHashChecked: a write whose record does not match the hash its
// UPDATE gives (the store checks it, ApplyHashed) is dropped as "hash",
// not stored, not acknowledged and not counted as an apply error, held
// batch or not; the writes beside it are stored and acknowledged. The
// UPDATEs are handed to the node as decoded (wire.Decode refuses such a
// datagram before the node sees it, so this is the node's own check).
func TestUpdateHashChecked(t *testing.T) {
	for _, tc := range []struct {
		name    string
		follows []uint8
	}{{"alone", []uint8{0}}, {"held batch", []uint8{1, 0}}} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				n, st, writer, stop := heldNode(t)
				defer stop()
				origin := store.NodeID{0xa5}
				var good, bad []string
				for i, f := range tc.follows {
					u := batchDatagram(t, origin, i, 3, f)
					u.More[0].Hash[0] ^= 1 // the second write of each datagram
					ups := u.Updates()
					for j, w := range ups {
						if j == 1 {
							bad = append(bad, w.Record.Key)
						} else {
							good = append(good, w.Record.Key)
						}
					}
					n.recvMu.Lock() // as dispatch holds it
					n.handleUpdates(t.Context(), writer.Addr(), ups)
					n.recvMu.Unlock()
					synctest.Wait()
				}
				time.Sleep(2 * holdFor)
				synctest.Wait()

				acked := map[string]bool{}
				for len(writer.Packets()) > 0 {
					p := <-writer.Packets()
					if _, msg, err := wire.Decode(p.Buf, wire.Plaintext("sim")); err != nil {
						t.Fatal(err)
					} else if a, ok := msg.(*wire.Ack); ok {
						acked[a.Key] = true
						for _, e := range a.More {
							acked[e.Key] = true
						}
					}
				}
				for _, k := range good {
					if _, ok, err := st.Get(k); err != nil || !ok || !acked[k] {
						t.Errorf("%s: stored %v (%v), acknowledged %v; want both", k, ok, err, acked[k])
					}
				}
				for _, k := range bad {
					if _, ok, _ := st.Get(k); ok || acked[k] {
						t.Errorf("%s, not matching its hash: stored %v, acknowledged %v", k, ok, acked[k])
					}
				}
				s := n.Stats()
				if s.Dropped["hash"] != uint64(len(bad)) || s.ApplyErrors != 0 {
					t.Errorf("dropped for their hash %d, apply errors %d; want %d, 0", s.Dropped["hash"], s.ApplyErrors, len(bad))
				}
			})
		})
	}
}
