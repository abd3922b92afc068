package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/transport"
	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/internal/simnet"
	"github.com/cloudknowledge/ck/store"
)

// holdTransport holds back, while holding, every UPDATE of one key that
// reaches its node, by origin, until the test releases them one origin at
// a time: the order in which the node hears concurrent writes is the
// test's. Meanwhile it refuses every stream, so that no sync session
// carries the key around the hold.
type holdTransport struct {
	transport.Transport
	key  string
	out  chan transport.Packet
	conn chan net.Conn

	mu      sync.Mutex
	holding bool
	held    map[store.NodeID][]transport.Packet
	closed  bool
}

func newHoldTransport(tr transport.Transport, key string) *holdTransport {
	h := &holdTransport{Transport: tr, key: key, out: make(chan transport.Packet, 1024),
		conn: make(chan net.Conn, 64), held: map[store.NodeID][]transport.Packet{}}
	go h.packets()
	go h.streams()
	return h
}

func (h *holdTransport) packets() {
	open := wire.Plaintext("sim")
	for p := range h.Transport.Packets() {
		h.mu.Lock()
		if _, msg, err := wire.Decode(p.Buf, open); err == nil && h.holding {
			if up, ok := msg.(*wire.Update); ok && up.Record.Key == h.key {
				h.held[up.Record.Origin] = append(h.held[up.Record.Origin], p)
				h.mu.Unlock()
				continue
			}
		}
		h.out <- p
		h.mu.Unlock()
	}
	h.mu.Lock()
	h.closed = true
	close(h.out)
	h.mu.Unlock()
}

func (h *holdTransport) streams() {
	for c := range h.Transport.Streams() {
		if h.isHolding() {
			c.Close()
			continue
		}
		h.conn <- c
	}
	close(h.conn)
}

func (h *holdTransport) Packets() <-chan transport.Packet { return h.out }
func (h *holdTransport) Streams() <-chan net.Conn         { return h.conn }

func (h *holdTransport) Dial(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
	if h.isHolding() {
		return nil, simnet.ErrUnreachable
	}
	return h.Transport.Dial(ctx, to)
}

func (h *holdTransport) isHolding() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.holding
}

func (h *holdTransport) hold(on bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.holding = on
}

// release delivers the held UPDATEs from origin (duplicates included),
// and reports how many there were.
func (h *holdTransport) release(origin store.NodeID) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	ps := h.held[origin]
	delete(h.held, origin)
	if h.closed {
		return 0
	}
	for _, p := range ps {
		h.out <- p
	}
	return len(ps)
}

// permutations returns every ordering of 0..n-1.
func permutations(n int) [][]int {
	if n == 0 {
		return [][]int{{}}
	}
	var out [][]int
	for _, p := range permutations(n - 1) {
		for i := 0; i <= len(p); i++ {
			q := append(append(append([]int{}, p[:i]...), n-1), p[i:]...)
			out = append(out, q)
		}
	}
	return out
}

// TestSimThreeWritersEveryOrder: three nodes write one key at once,
// without a conflict hook (last-writer-wins), each before hearing the
// others. Six observers hear the three writes in the six possible orders,
// and each writer hears the other two in an order of the seed's choosing:
// the UPDATEs are held on arrival and released one writer at a time (with
// the network's duplicates), each applied before the next is released,
// and no sync session runs meanwhile. After each order every node holds
// the original write that Resolve (docs/PROTOCOL.md) ranks first — the largest
// (lww, hash) — with its value, its lww and origin, descending from all
// three, and counts the conflict; once sessions run again every node holds
// the same record, byte for byte. The seeds vary which writer wins (how
// far each one's clock is ahead, ties broken by origin) and the delays.
func TestSimThreeWritersEveryOrder(t *testing.T) {
	orders := permutations(3)
	forSeedsDiv(t, 2, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 30))
		nw := simnet.New(seed, simnet.Options{Dup: 0.3, MinDelay: time.Millisecond, MaxDelay: 30 * time.Millisecond})
		const key = "contended"
		dir := simDir(t)
		nodes := make([]*simNode, 3+len(orders))
		hts := make([]*holdTransport, len(nodes))
		for i := range nodes {
			name := fmt.Sprintf("w%d", i)
			if i >= 3 {
				name = fmt.Sprintf("o%d", i-3)
			}
			nodes[i] = newSimNode(t, nw, dir, name, nil)
			nodes[i].wrap = func(tr transport.Transport) transport.Transport {
				hts[i] = newHoldTransport(tr, key)
				return hts[i]
			}
			nodes[i].start(t)
		}
		t.Cleanup(func() {
			for _, sn := range nodes {
				sn.stop(t)
			}
		})
		waitFor(t, 20*simHeartbeat, func() error {
			if !allSee(nodes, len(nodes)-1) {
				return fmt.Errorf("members did not find each other")
			}
			return synced(nodes)
		})

		// Each node's order: the observers take the six orders; a writer
		// hears the others in the order of a random permutation.
		order := make([][]int, len(nodes))
		for i := range nodes {
			if i < 3 {
				order[i] = orders[rng.IntN(len(orders))]
			} else {
				order[i] = orders[i-3]
			}
		}
		for _, h := range hts {
			h.hold(true)
		}
		// Clocks ahead by 0 to 2 local writes, so that any writer may win,
		// on lamport or (on a tie) on origin. No time passes between these
		// writes: no HELLO evens the clocks out.
		writes := make([]store.Record, 3)
		for i := range writes {
			for j := range rng.IntN(3) {
				if _, err := nodes[i].st.Set(context.Background(), fmt.Sprintf("ahead/%d/%d", i, j), nil, nil); err != nil {
					t.Fatal(err)
				}
			}
		}
		for i := range writes {
			writes[i], _, _ = nodes[i].write(t, key, "from "+nodes[i].name, 0)
		}
		for i := range writes {
			for j := range i {
				if writes[i].VV.Compare(writes[j].VV) != store.Concurrent {
					t.Fatalf("writes not concurrent: %v, %v", writes[i].VV, writes[j].VV)
				}
			}
		}
		win := winner(writes)
		t.Logf("writes %s %s %s; winner %s (%s)", writes[0].LWW, writes[1].LWW, writes[2].LWW, win.LWW, nodes[indexOf(writes, win)].name)

		// Release step by step: at step s every node hears the s-th writer
		// of its order (a writer skips itself), and holds it before the
		// next step.
		for s := range 3 {
			for i, sn := range nodes {
				for _, w := range order[i][s:] {
					if w != i && holdsWrite(sn, writes[w]) {
						t.Fatalf("%s holds the write of %s before its release (order %v, step %d)", sn.name, nodes[w].name, order[i], s)
					}
				}
			}
			for i, h := range hts {
				if w := order[i][s]; w != i {
					// Datagrams are delivered within MaxDelay; an UPDATE still in
					// flight would pass the hold once it ends, so wait for it.
					waitFor(t, 5*simHeartbeat, func() error {
						if h.release(writes[w].Origin) == 0 && !holdsWrite(nodes[i], writes[w]) {
							return fmt.Errorf("%s has not received the write of %s", nodes[i].name, nodes[w].name)
						}
						return nil
					})
				}
			}
			waitFor(t, 5*simHeartbeat, func() error {
				for i, sn := range nodes {
					if w := order[i][s]; !holdsWrite(sn, writes[w]) {
						return fmt.Errorf("%s has not applied the write of %s (order %v, step %d)", sn.name, nodes[w].name, order[i], s)
					}
				}
				return nil
			})
		}
		for i, sn := range nodes {
			r, _, _ := sn.st.Get(key)
			if r.LWW != win.LWW || r.Origin != win.Origin || string(r.Value) != string(win.Value) {
				t.Errorf("%s heard the writes in order %v and holds %q lww %s, want %q lww %s",
					sn.name, order[i], r.Value, r.LWW, win.Value, win.LWW)
			}
			if c := sn.node.Stats().Conflicts; c == 0 {
				t.Errorf("%s resolved concurrent writes but recorded no conflict", sn.name)
			}
		}

		for _, h := range hts {
			h.hold(false)
		}
		waitFor(t, 30*simHeartbeat, func() error { return converged(nodes) })
		final, _, _ := nodes[0].st.Get(key)
		for _, sn := range nodes {
			if err := holds(sn, key, final.Hash()); err != nil {
				t.Error(err)
			}
		}
		if final.LWW != win.LWW || string(final.Value) != string(win.Value) {
			t.Errorf("converged on %q lww %s, want %q lww %s", final.Value, final.LWW, win.Value, win.LWW)
		}
		checkWrites(t, nodes, &history{writes: writes})
	})
}

// winner is the write last-writer-wins keeps among concurrent ones: the
// largest (lww, hash) — with distinct origins, the largest lww.
func winner(writes []store.Record) store.Record {
	w := writes[0]
	for _, r := range writes[1:] {
		if c := r.LWW.Compare(w.LWW); c > 0 || c == 0 && hashLess(w.Hash(), r.Hash()) {
			w = r
		}
	}
	return w
}

func hashLess(a, b store.Hash) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return false
}

func indexOf(writes []store.Record, w store.Record) int {
	for i, r := range writes {
		if r.Origin == w.Origin && r.Lamport == w.Lamport {
			return i
		}
	}
	return -1
}

// holdsWrite reports whether sn's record of w's key descends from w.
func holdsWrite(sn *simNode, w store.Record) bool {
	r, ok, err := sn.st.Get(w.Key)
	return err == nil && ok && r.VV.Dominates(w.VV)
}
