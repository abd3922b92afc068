package cluster

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloudknowledge/ck/daemon/transport"
	"github.com/cloudknowledge/ck/internal/simnet"
	"github.com/cloudknowledge/ck/store"
)

// A crash, as the scenarios below make one. A process killed at an
// instant leaves its files as its last write(2) calls left them (the page
// cache outlives the process; with NoSync there is nothing more to it than
// that) and its sockets reset; everything in its memory is gone: the
// member table, acknowledgements it waits for, sessions half done, the
// peer book not yet saved, and whatever the store had accepted but not yet
// written to its log.
//
// So: synctest.Wait lets every goroutine of the bubble come to rest — no
// commit or flush is then half written, since file I/O does not count as
// durably blocked — and at that instant, before any goroutine runs again,
// the node's store files (the data file and its write-ahead log) are
// copied: that copy is what the crash leaves, and the node restarts from
// it, so its start replays the log as after a real crash. In the same
// instant its transport dies (crashTransport: datagrams stop both ways and
// its open streams break), so nothing it does afterwards reaches a peer;
// no BYE goes out. Its goroutines are then stopped and the original store
// closed and thrown away: what the dead process would have done next
// touches neither the network nor the copy.

// crashTransport is a node's transport that can die at once: crash closes
// the endpoint (no datagram in or out, no new stream) and every stream the
// node has open, as a killed process's sockets are reset.
type crashTransport struct {
	transport.Transport
	in chan net.Conn

	mu    sync.Mutex
	conns []net.Conn
	dead  bool
}

func newCrashTransport(tr transport.Transport) *crashTransport {
	c := &crashTransport{Transport: tr, in: make(chan net.Conn, 64)}
	go func() {
		for conn := range tr.Streams() {
			if c.track(conn) {
				c.in <- conn
			}
		}
		close(c.in)
	}()
	return c
}

func (c *crashTransport) Streams() <-chan net.Conn { return c.in }

func (c *crashTransport) Dial(ctx context.Context, to netip.AddrPort) (net.Conn, error) {
	conn, err := c.Transport.Dial(ctx, to)
	if err != nil || c.track(conn) {
		return conn, err
	}
	return nil, net.ErrClosed
}

// track remembers a stream to break at the crash; after it, it closes it.
func (c *crashTransport) track(conn net.Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dead {
		conn.Close()
		return false
	}
	c.conns = append(c.conns, conn)
	return true
}

func (c *crashTransport) crash() {
	c.mu.Lock()
	c.dead = true
	conns := c.conns
	c.conns = nil
	c.mu.Unlock()
	c.Transport.Close()
	for _, conn := range conns {
		conn.Close()
	}
}

// crashSim is a cluster whose nodes writers use, as clients of the
// daemon would, while the test crashes and restarts them.
type crashSim struct {
	t     *testing.T
	dir   string
	nodes []*simNode
	want  int // acknowledgements each write waits for (--wait)

	mu      sync.Mutex // guards what follows, and the nodes' st and node fields
	trs     []*crashTransport
	up      []bool
	gen     []int                // each node's crashes so far
	ctx     []context.Context    // ends when the node crashes: its clients' calls fail
	cancel  []context.CancelFunc //
	crashed func(i int)          // optional: called at the instant node i crashes
	acked   history              // writes whose caller was answered (with any count of acks)
	durable [][]store.Record     // per node: own writes its store accepted
	full    []store.Record       // writes acknowledged by every peer
}

func startCrashSim(t *testing.T, nw *simnet.Network, n int) *crashSim {
	t.Helper()
	cs := &crashSim{t: t, dir: simDir(t), want: n - 1, trs: make([]*crashTransport, n), up: make([]bool, n),
		gen: make([]int, n), ctx: make([]context.Context, n), cancel: make([]context.CancelFunc, n),
		durable: make([][]store.Record, n)}
	for i := range n {
		sn := newSimNode(t, nw, cs.dir, fmt.Sprintf("n%d", i), nil)
		sn.wrap = func(tr transport.Transport) transport.Transport {
			cs.trs[i] = newCrashTransport(tr)
			return cs.trs[i]
		}
		cs.nodes = append(cs.nodes, sn)
		cs.restart(i, nil)
	}
	t.Cleanup(func() {
		for i, sn := range cs.nodes {
			cs.cancel[i]()
			sn.stop(t)
		}
	})
	waitFor(t, 20*simHeartbeat, func() error {
		if !allSee(cs.nodes, n-1) {
			return errors.New("members did not find each other")
		}
		return nil
	})
	return cs
}

// writer is one client of node i: count writes of shared keys, each
// waiting for acknowledgements, at random intervals. A call to a crashed
// node fails and the client goes on with its next write. Every other
// write goes as the daemon sends it, overlapped with its commit
// (Overlap), the others replicated once committed.
func (cs *crashSim) writer(i int, rng *rand.Rand, count int) {
	for j := range count {
		time.Sleep(time.Duration(rng.IntN(400)) * time.Millisecond)
		cs.write(i, fmt.Sprintf("k%d", rng.IntN(8)), fmt.Sprintf("%s-%d", cs.nodes[i].name, j), j%2 == 0)
	}
}

// write is one write of a client of node i, waiting for cs.want ACKs;
// overlapped, it is sent while it commits. It returns the write and
// whether its caller was answered before any crash of the node.
func (cs *crashSim) write(i int, key, value string, overlapped bool) (store.Record, bool) {
	cs.mu.Lock()
	up, gen, ctx, st, node := cs.up[i], cs.gen[i], cs.ctx[i], cs.nodes[i].st, cs.nodes[i].node
	cs.mu.Unlock()
	if !up {
		return store.Record{}, false
	}
	if overlapped {
		ctx = Overlap(ctx, cs.want)
	}
	rec, err := st.Set(ctx, key, []byte(value), nil)
	if err != nil {
		return store.Record{}, false // the store closed under the call: the node crashed
	}
	if !cs.record(i, gen, func() { cs.durable[i] = append(cs.durable[i], rec) }) {
		return rec, false
	}
	var n int
	if overlapped {
		n, _ = node.ReplicateWait(ctx, rec, cs.want, 5*time.Second)
	} else {
		node.Replicate(rec)
		n, _ = node.WaitAcks(ctx, rec, cs.want, 5*time.Second)
	}
	return rec, cs.record(i, gen, func() {
		cs.acked.writes = append(cs.acked.writes, rec)
		if n >= cs.want {
			cs.full = append(cs.full, rec)
		}
	})
}

// record runs fn if node i has not crashed since generation gen: what a
// call returned after the crash was never returned to its caller.
func (cs *crashSim) record(i, gen int, fn func()) bool {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.gen[i] != gen {
		return false
	}
	fn()
	return true
}

// crash kills node i now (see the comment at the top of the file) and
// returns the writes its restarted store must hold: those it accepted
// itself, and those every peer acknowledged, as it did, before the crash.
func (cs *crashSim) crash(i int) []store.Record {
	t := cs.t
	t.Helper()
	synctest.Wait() // every goroutine at rest: the instant of the crash
	cs.mu.Lock()
	sn := cs.nodes[i]
	cs.gen[i]++
	to := filepath.Join(cs.dir, fmt.Sprintf("%s-c%d.db", sn.name, cs.gen[i]))
	moved := copyStoreFiles(t, sn.path, to)
	cs.trs[i].crash()
	if cs.crashed != nil {
		cs.crashed(i)
	}
	cs.cancel[i]()
	cs.up[i] = false
	must := append([]store.Record(nil), cs.durable[i]...)
	for _, w := range cs.full {
		if w.Origin != sn.st.NodeID() {
			must = append(must, w)
		}
	}
	cs.mu.Unlock()

	// The dead process's goroutines: stopped, and its store thrown away.
	sn.cancel()
	<-sn.done
	sn.cancel = nil
	cs.mu.Lock()
	old := sn.st
	sn.st, sn.path = nil, to
	cs.mu.Unlock()
	old.Close()
	for _, name := range moved {
		os.Remove(filepath.Join(cs.dir, name))
	}
	return must
}

// restart starts node i on what its crash left, after checking that the
// store holds every write in must, and that its clock did not go back.
func (cs *crashSim) restart(i int, must []store.Record) {
	t := cs.t
	t.Helper()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	sn := cs.nodes[i]
	sn.open(t)
	var clock uint64
	for _, w := range must {
		if r, ok, err := sn.st.Get(w.Key); err != nil || !ok || !r.VV.Dominates(w.VV) {
			t.Errorf("%s lost in its crash the write %s@%d by %s, which it had accepted or acknowledged: holds vv %v (%v), want %v",
				sn.name, w.Key, w.Lamport, w.Origin, r.VV, err, w.VV)
		}
		if w.Origin == sn.st.NodeID() {
			clock = max(clock, w.Lamport)
		}
	}
	if l := sn.st.Lamport(); l < clock {
		t.Errorf("%s restarted with its clock at %d, below its own write at %d", sn.name, l, clock)
	}
	sn.start(t)
	cs.up[i] = true
	cs.ctx[i], cs.cancel[i] = context.WithCancel(context.Background())
}

// copyStoreFiles copies the files of the store at from — the data file
// and whatever the store keeps beside it under its name (its log) — to
// the same names under to's, and returns the names it copied.
func copyStoreFiles(t *testing.T, from, to string) []string {
	t.Helper()
	dir, base := filepath.Dir(from), filepath.Base(from)
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), base) {
			continue
		}
		names = append(names, e.Name())
		src, err := os.Open(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		dst, err := os.OpenFile(to+strings.TrimPrefix(e.Name(), base), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err == nil {
			_, err = io.Copy(dst, src)
			err = errors.Join(err, dst.Close())
		}
		src.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	return names
}

// TestSimCrashMidWrite: clients write shared keys on every node, each
// write waiting for every peer's acknowledgement, over a network that
// loses, duplicates and reorders 20% of datagrams, while one node, then
// maybe another, is killed at a random instant — no BYE, sessions and
// waits cut short, its store left as the crash leaves it — and restarted
// from that after a random time, short enough at times for its peers not
// to notice. The restarted store holds every write it had accepted and
// every write it had acknowledged, its clock has not gone back, and once
// the clients are done every node converges, holding every write whose
// caller was answered (or a version that descends from it).
func TestSimCrashMidWrite(t *testing.T) {
	forSeedsDiv(t, 2, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 40))
		nw := lossy(seed)
		n := 3 + rng.IntN(2)
		cs := startCrashSim(t, nw, n)
		var wg sync.WaitGroup
		for i := range n {
			wrng := rand.New(rand.NewPCG(seed, uint64(100+i)))
			wg.Go(func() { cs.writer(i, wrng, 25) })
		}
		t.Cleanup(func() { // on a failure: no client outlives the nodes
			cs.mu.Lock()
			for _, cancel := range cs.cancel {
				cancel()
			}
			cs.mu.Unlock()
			wg.Wait()
		})
		crashes := 1 + rng.IntN(2)
		for range crashes {
			time.Sleep(time.Duration(rng.IntN(3000)) * time.Millisecond)
			i := rng.IntN(n)
			must := cs.crash(i)
			time.Sleep(time.Duration(rng.IntN(6000)) * time.Millisecond)
			cs.restart(i, must)
		}
		wg.Wait()
		waitFor(t, 60*simHeartbeat, func() error {
			if err := synced(cs.nodes); err != nil {
				return err
			}
			return converged(cs.nodes)
		})
		checkWrites(t, cs.nodes, &cs.acked)
		waitFor(t, 20*simHeartbeat, func() error {
			if !allSee(cs.nodes, n-1) {
				return errors.New("the members do not all see each other alive")
			}
			return nil
		})
		t.Logf("%d nodes, %d crashes; %d writes answered, %d acknowledged by every peer; network %+v",
			n, crashes, len(cs.acked.writes), len(cs.full), nw.Stats())
	})
}
