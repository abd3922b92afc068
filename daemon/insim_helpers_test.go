package daemon

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/poll"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/internal/simnet"
	"github.com/cloudknowledge/ck/rpc"
)

// The in-process tier (docs/ARCHITECTURE.md, "The daemon"): whole
// daemons — config, store, hooks, API server, protocol node — in this
// process, on the simulated network (internal/simnet) instead of UDP,
// each driven through the real rpc.Client over its own Unix socket. What
// needs no real process (the backend, the hook glue, rejoin, --wait, the
// order of a stop) is tested here, in seconds; cmd/ckd keeps what only
// real binaries show (the CLI, signals, kill -9, namespaces).

// simCluster is a cluster of in-process daemons on one simulated network:
// one cluster name and key, and fast timers.
type simCluster struct {
	t    *testing.T
	nw   *simnet.Network
	name string
	key  string
}

// newSimCluster makes a quiet simulated network (no loss: what these
// tests check is the daemon, the protocol's faults are daemon/cluster's)
// from a seed it logs.
func newSimCluster(t *testing.T) *simCluster {
	t.Helper()
	seed := rand.Uint64()
	t.Logf("simnet seed %d", seed)
	return &simCluster{
		t:    t,
		nw:   simnet.New(seed, simnet.Options{}),
		name: fmt.Sprintf("insim-%08x", rand.Uint32()),
		key:  seal.GenerateKey(),
	}
}

// simDaemon is one whole daemon of a simCluster, with its own directory:
// ckd.hcl, data/, ckd.log, and its socket in a short directory (socket
// paths are limited to about 100 bytes, which t.TempDir can exceed).
type simDaemon struct {
	sc   *simCluster
	name string
	dir  string
	sock string
	// extra is more of ckd.hcl: top-level lines (hook blocks).
	extra string

	log  *os.File // ckd.log, across restarts
	d    *Daemon
	c    *rpc.Client
	stop context.CancelFunc
	done chan error
	// ep is the daemon's current cluster endpoint (a rejoin opens another).
	ep atomic.Pointer[simnet.Endpoint]
}

// start writes name's config (extra: more top-level HCL, such as hook
// blocks; files it names are relative to the node's dir) and starts it.
func (sc *simCluster) start(name, extra string) *simDaemon {
	sc.t.Helper()
	dir := sc.t.TempDir()
	sockDir, err := os.MkdirTemp("", "ckinsim")
	if err != nil {
		sc.t.Fatal(err)
	}
	sc.t.Cleanup(func() { os.RemoveAll(sockDir) })
	n := &simDaemon{sc: sc, name: name, dir: dir, sock: filepath.Join(sockDir, "ckd.sock"), extra: extra}
	if n.log, err = os.Create(filepath.Join(dir, "ckd.log")); err != nil {
		sc.t.Fatal(err)
	}
	n.begin()
	sc.t.Cleanup(func() {
		if n.d != nil {
			n.shutdown()
		}
		n.log.Close()
		if sc.t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "ckd.log"))
			sc.t.Logf("%s's log:\n%s", name, b)
		}
	})
	return n
}

// config is the node's ckd.hcl: tombstone_ttl and purge_log_ttl at
// their minimum, so that a separation of two seconds is a long one; fast
// heartbeats, but a dead_after that a loaded -race run does not reach
// by a stall (a stopped node says BYE: nothing waits on dead_after).
func (n *simDaemon) config() string {
	return fmt.Sprintf(`node_name = %q
data_dir = %q
socket = %q
log_level = "debug"
%s
cluster {
  name          = %q
  encrypt       = %q
  heartbeat     = "100ms"
  dead_after    = "5s"
  query_timeout = "500ms"
  sync_interval = "200ms"
  tombstone_ttl = "1s"
  purge_log_ttl = "1s"
}
`, n.name, filepath.Join(n.dir, "data"), n.sock, n.extra, n.sc.name, n.sc.key)
}

// begin starts the daemon on its data dir (again, after shutdown), on a
// fresh simnet endpoint at each start and rejoin, with its API on a
// listener it hands to New.
func (n *simDaemon) begin() {
	t := n.sc.t
	t.Helper()
	path := filepath.Join(n.dir, "ckd.hcl")
	if err := os.WriteFile(path, []byte(n.config()), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := ParseConfig(path, []byte(n.config()))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := rpc.Listen(n.sock, 0o600, "")
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(cfg, Options{
		Logger:     hclog.New(&hclog.LoggerOptions{Name: n.name, Level: hclog.Debug, Output: n.log}),
		LoadConfig: func() (Config, error) { return LoadConfig(path) },
		Transport: func() (ClusterTransport, error) {
			ep := n.sc.nw.Endpoint()
			n.ep.Store(ep)
			return ep, nil
		},
		Listener: ln,
		// A stop or rejoin held by a stuck client would take a minute:
		// far from what a loaded -race run takes unheld (insim_test.go).
		StreamWriteTimeout: heldCost,
		ShutdownTimeout:    heldCost,
	})
	if err != nil {
		ln.Close()
		t.Fatalf("starting %s: %v", n.name, err)
	}
	ctx, stop := context.WithCancel(context.Background())
	n.d, n.stop, n.done = d, stop, make(chan error, 1)
	go func() { n.done <- d.Run(ctx) }()
	n.c = rpc.NewClient(n.sock)
}

// heldCost is what a stop or a rejoin held by a stuck client would take
// in these daemons: their stream write deadline and shutdown grace.
const heldCost = time.Minute

// shutdown stops the daemon as SIGTERM does (Run's context ends) and
// returns how long Run took to return.
func (n *simDaemon) shutdown() time.Duration {
	t := n.sc.t
	t.Helper()
	start := time.Now()
	n.stop()
	select {
	case err := <-n.done:
		if err != nil {
			t.Errorf("%s: run: %v", n.name, err)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: still stopping after 30 s", n.name)
	}
	took := time.Since(start)
	n.c.Close()
	n.d = nil
	return took
}

// eventually polls cond every 20 ms until it returns nil, failing the
// test with cond's last error after within.
func eventually(t *testing.T, within time.Duration, cond func() error) {
	t.Helper()
	poll.Until(t, within, 20*time.Millisecond, cond)
}

// awaitMembers waits until n sees want members (itself included) in
// state.
func (n *simDaemon) awaitMembers(state string, want int) {
	n.sc.t.Helper()
	eventually(n.sc.t, 20*time.Second, func() error {
		ms, err := n.c.Members(context.Background())
		if err != nil {
			return err
		}
		got := 0
		for _, m := range ms {
			if m.State == state {
				got++
			}
		}
		if got != want {
			return fmt.Errorf("%s sees %d members %s, want %d: %+v", n.name, got, state, want, ms)
		}
		return nil
	})
}

// awaitState waits until n sees the peer named peer in state.
func (n *simDaemon) awaitState(peer, state string) {
	n.sc.t.Helper()
	eventually(n.sc.t, 20*time.Second, func() error {
		ms, err := n.c.Members(context.Background())
		if err != nil {
			return err
		}
		for _, m := range ms {
			if m.Name == peer && m.State == state {
				return nil
			}
		}
		return fmt.Errorf("%s does not see %s %s: %+v", n.name, peer, state, ms)
	})
}

// awaitValue waits until a read on n answers value for key.
func (n *simDaemon) awaitValue(key, value string) {
	n.sc.t.Helper()
	eventually(n.sc.t, 20*time.Second, func() error {
		v, _, _, err := n.c.GetRaw(context.Background(), key, false)
		if err != nil {
			return err
		}
		if string(v) != value {
			return fmt.Errorf("%s: %s = %q, want %q", n.name, key, v, value)
		}
		return nil
	})
}

// awaitMissing waits until n answers not found for key.
func (n *simDaemon) awaitMissing(key string) {
	n.sc.t.Helper()
	eventually(n.sc.t, 20*time.Second, func() error {
		_, _, _, err := n.c.GetRaw(context.Background(), key, false)
		if errors.Is(err, rpc.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("%s: %s: %v, want not found", n.name, key, err)
	})
}

// set writes key on n, failing the test on error.
func (n *simDaemon) set(key, value string, opts rpc.WriteOptions) rpc.Record {
	n.sc.t.Helper()
	rec, err := n.c.Put(context.Background(), key, []byte(value), opts)
	if err != nil {
		n.sc.t.Fatalf("%s: set %s: %v", n.name, key, err)
	}
	return rec
}

// inSyncSince waits until n has been in sync with a peer after since
// (a HELLO carrying the same digest root): the peer book's mark that a
// later separation is measured from.
func (n *simDaemon) inSyncSince(since time.Time) {
	n.sc.t.Helper()
	eventually(n.sc.t, 20*time.Second, func() error {
		inst := n.d.slot.peek()
		if inst == nil || !inst.node.LatestInSync().After(since) {
			return fmt.Errorf("%s: not in sync with a peer since %s", n.name, since.Format(time.RFC3339Nano))
		}
		return nil
	})
}

// quarantinedPair starts a and b, has them in sync, stops b, writes
// during/a on a and keeps b away for longer than purge_log_ttl: started
// again, each quarantines the other (docs/PROTOCOL.md, Long separations).
func (sc *simCluster) quarantinedPair() (a, b *simDaemon) {
	sc.t.Helper()
	a, b = sc.start("a", ""), sc.start("b", "")
	a.awaitMembers("alive", 2)
	b.awaitMembers("alive", 2)
	mark := time.Now()
	a.set("before", "v0", rpc.WriteOptions{Wait: 1, Timeout: rpc.Duration(10 * time.Second)})
	a.inSyncSince(mark)
	b.inSyncSince(mark)
	b.shutdown()
	a.set("during/a", "x", rpc.WriteOptions{})
	// The separation itself: real time on the nodes' clocks, past
	// purge_log_ttl (1 s).
	time.Sleep(2 * time.Second)
	b.begin()
	a.awaitState("b", "quarantined")
	b.awaitState("a", "quarantined")
	return a, b
}

// stuckWatcher opens a watch on sock from the start of the change log
// and reads nothing after its status line: a client a rejoin or a stop
// must not wait for.
func stuckWatcher(t *testing.T, sock string) net.Conn {
	t.Helper()
	c, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.(*net.UnixConn).SetReadBuffer(4096)
	if _, err := io.WriteString(c, "GET /v1/watch?since=0 HTTP/1.1\r\nHost: ckd\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReaderSize(c, 16).ReadString('\n')
	if err != nil || !strings.Contains(line, "200") {
		t.Fatalf("watch: %q %v", line, err)
	}
	return c
}

// manyChanges writes count records with long keys in one import: 800
// make 0.8 MB of change events, several times what the socket buffers of
// a watcher that reads nothing hold (a rejoin then re-applies them all).
func (n *simDaemon) manyChanges(prefix string, count int) {
	n.sc.t.Helper()
	var b strings.Builder
	long := strings.Repeat("x", 900)
	for i := range count {
		fmt.Fprintf(&b, "{\"key\":\"%s/%s/%05d\",\"value\":\"dg==\"}\n", prefix, long, i)
	}
	if _, err := n.c.Import(context.Background(), strings.NewReader(b.String()), true); err != nil {
		n.sc.t.Fatalf("%s: import: %v", n.name, err)
	}
}
