package cluster

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudknowledge/ck/daemon/transport"
	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// TestAskAcks: a write waiting for ACKs asks want+1 peers, then twice as
// many at each resend (those not yet answered kept), then everyone; an
// ACK received shrinks what is still asked for.
func TestAskAcks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		want   int
		acked  int   // peers that answered before the first resend
		rounds []int // peers asked at each round; 0: everyone
	}{
		{"wait 1", 1, 0, []int{2, 4, 0}},
		{"wait 2", 2, 0, []int{3, 6, 0}},
		{"wait 2, one answered", 2, 1, []int{3, 4, 0}},
		{"wait 6", 6, 0, []int{0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				nodes := startSimCluster(t, lossless(1), 8) // 7 peers
				n := nodes[0].node
				k := ackKey{tc.name, n.id, 1}
				w := n.acks.register(k, tc.want, nil)
				defer n.acks.forget(k)
				asked := map[store.NodeID]bool{}
				var before []store.NodeID
				for round, want := range tc.rounds {
					r := n.askAcks(w, asked, tc.want, round)
					if len(r.AckFrom) != want || r.NoAck {
						t.Fatalf("round %d asks %v, want %d peers (0: everyone)", round, r, want)
					}
					for _, id := range before {
						if want > 0 && !slices.Contains(r.AckFrom, id) && !acked(n, k, id) {
							t.Errorf("round %d dropped %s, asked before and not answered", round, id)
						}
					}
					if round == 0 {
						for _, id := range r.AckFrom[:tc.acked] {
							n.acks.ack(k, id)
						}
					}
					before = r.AckFrom
				}
			})
		})
	}
}

func acked(n *Node, k ackKey, id store.NodeID) bool {
	n.acks.mu.Lock()
	defer n.acks.mu.Unlock()
	w := n.acks.waiting[k]
	return w != nil && w.from[id]
}

// TestAcksCoalesced: ACKs owed to one writer go in as few datagrams as
// fit max_datagram, each within it, acknowledging every write once.
func TestAcksCoalesced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		nw := lossless(1)
		dir := simDir(t)
		rec := &sendRecorder{}
		a := newSimNode(t, nw, dir, "a", nil)
		a.wrap = func(tr transport.Transport) transport.Transport { rec.Transport = tr; return rec }
		a.start(t)
		t.Cleanup(func() { a.stop(t) })
		to := netip.MustParseAddrPort("10.0.9.9:7000")
		var es []wire.AckEntry
		for i := range 100 {
			es = append(es, wire.AckEntry{Key: fmt.Sprintf("%s/%03d", strings.Repeat("k", 60), i), Origin: store.NodeID{1}, Lamport: uint64(i + 1)})
		}
		a.node.sendAcks(to, es)
		got := map[wire.AckEntry]int{}
		for _, b := range rec.sent() {
			if len(b) > a.node.cfg.MaxDatagram {
				t.Errorf("an ACK datagram of %d bytes, over %d", len(b), a.node.cfg.MaxDatagram)
			}
			_, msg, err := wire.Decode(b, a.node.sealer)
			if err != nil {
				t.Fatal(err)
			}
			m := msg.(*wire.Ack)
			got[wire.AckEntry{Key: m.Key, Origin: m.Origin, Lamport: m.Lamport}]++
			for _, e := range m.More {
				got[e]++
			}
		}
		for _, e := range es {
			if got[e] != 1 {
				t.Errorf("%s@%d acknowledged %d times", e.Key, e.Lamport, got[e])
			}
		}
		if n, fit := len(rec.sent()), 100*(len(es[0].Key)+22)/(a.node.cfg.MaxDatagram-100)+1; n > 2*fit {
			t.Errorf("%d datagrams for 100 ACKs of ~%d bytes each", n, len(es[0].Key)+22)
		}
		t.Logf("100 ACKs in %d datagrams", len(rec.sent()))
	})
}

// sendRecorder keeps what a node sends unicast.
type sendRecorder struct {
	transport.Transport
	mu  sync.Mutex
	out [][]byte
}

func (r *sendRecorder) SendTo(to netip.AddrPort, b []byte) error {
	r.mu.Lock()
	r.out = append(r.out, append([]byte(nil), b...))
	r.mu.Unlock()
	return r.Transport.SendTo(to, b)
}

func (r *sendRecorder) sent() [][]byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.out)
}

// TestAckWakesAtWant: ACKs wake a write's waiters only once the fewest
// any of them waits for have come, and at each ACK after that; before,
// they wake nobody (a --wait 2 writer is woken once, not per ACK).
func TestAckWakesAtWant(t *testing.T) {
	for _, tc := range []struct {
		name  string
		wants []int  // registrations, in order: register, or registerEarly then claim
		early bool   // the first registration is an early one
		wakes []bool // whether the i-th ACK closes the channel count returned before it
	}{
		{"wait 1", []int{1}, false, []bool{true, true, true}},
		{"wait 2", []int{2}, false, []bool{false, true, true}},
		{"wait 3", []int{3}, false, []bool{false, false, true}},
		{"wait 2 and wait 1", []int{2, 1}, false, []bool{true, true}},
		{"early wait 2", []int{2}, true, []bool{false, true}},
		{"early wait 2 claimed for 1", []int{2, 1}, true, []bool{true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tab := newAckTable()
			k := ackKey{"k", store.NodeID{1}, 7}
			var w *ackWait
			for i, want := range tc.wants {
				switch {
				case i == 0 && tc.early:
					w = tab.registerEarly(k, want, time.Now(), nil)
				case tc.early:
					var ok bool
					if w, ok = tab.claim(k, want); !ok {
						t.Fatal("the early registration was not claimed")
					}
				default:
					w = tab.register(k, want, nil)
				}
			}
			for i, wake := range tc.wakes {
				got, _, ch := tab.count(w)
				if got != i {
					t.Fatalf("count %d before ACK %d", got, i+1)
				}
				tab.ack(k, store.NodeID{byte(10 + i)})
				select {
				case <-ch:
					if !wake {
						t.Errorf("ACK %d woke the waiters", i+1)
					}
				default:
					if wake {
						t.Errorf("ACK %d did not wake the waiters", i+1)
					}
				}
			}
		})
	}
}
