package natsbridge_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/poll"

	"github.com/hashicorp/go-hclog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/cloudknowledge/ck/daemon/natsbridge"
	"github.com/cloudknowledge/ck/rpc"
	"github.com/cloudknowledge/ck/store"
)

// startServer runs an embedded nats-server on a random loopback port with
// JetStream (its store in a temporary directory); opts adjust its options.
func startServer(t testing.TB, opts ...func(*server.Options)) *server.Server {
	t.Helper()
	o := &server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true,
		JetStream: true, StoreDir: t.TempDir()}
	for _, f := range opts {
		f(o)
	}
	return runServer(t, o)
}

func runServer(t testing.TB, o *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// serverPort is the port a running server listens on.
func serverPort(s *server.Server) int { return s.Addr().(*net.TCPAddr).Port }

// restartServer starts a server on port (where one was shut down).
func restartServer(t testing.TB, port int, opts ...func(*server.Options)) *server.Server {
	t.Helper()
	return startServer(t, append(opts, func(o *server.Options) { o.Port = port })...)
}

// openStore opens a store in a temporary directory, without fsync.
func openStore(t testing.TB) *store.Store {
	t.Helper()
	s, err := store.Open(filepath.Join(t.TempDir(), "ck.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// storeWriter is the daemon's write path reduced to the store: what the
// bridge's inbound side calls in these tests.
type storeWriter struct{ s *store.Store }

func (w storeWriter) Put(ctx context.Context, key string, value []byte, _ rpc.WriteOptions) (rpc.Record, error) {
	rec, err := w.s.Set(ctx, key, value, nil)
	return toRPC(rec), apiErr(err)
}

func (w storeWriter) Delete(ctx context.Context, key string, _ rpc.WriteOptions) (rpc.Record, error) {
	rec, err := w.s.Delete(ctx, key, nil)
	return toRPC(rec), apiErr(err)
}

func apiErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, store.ErrBadKey):
		return rpc.Errorf(rpc.ErrBadRequest, "%v", err)
	case errors.Is(err, store.ErrTooLarge):
		return rpc.Errorf(rpc.ErrTooLarge, "%v", err)
	}
	return err
}

func toRPC(r store.Record) rpc.Record {
	vv := map[string]uint64{}
	for id, l := range r.VV {
		vv[id.String()] = l
	}
	return rpc.Record{Key: r.Key, Value: r.Value, Version: r.Lamport, Origin: r.Origin.String(), VV: vv, Deleted: r.Deleted}
}

// testLogger logs through t when -v is given.
func testLogger(t testing.TB) hclog.Logger {
	if !testing.Verbose() {
		return hclog.NewNullLogger()
	}
	return hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Debug, Output: testWriter{t}})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) { w.t.Log(string(p)); return len(p), nil }

// startBridge creates and runs a bridge; it is stopped (and waited for)
// when the test ends, or by the returned function.
func startBridge(t testing.TB, cfg natsbridge.Config, src natsbridge.Source, w natsbridge.Writer) (*natsbridge.Bridge, func()) {
	t.Helper()
	if cfg.NodeName == "" {
		cfg.NodeName = "test"
	}
	if cfg.ClusterName == "" {
		cfg.ClusterName = "c1"
	}
	if cfg.ReconnectWait == 0 {
		cfg.ReconnectWait = 50 * time.Millisecond
	}
	b, err := natsbridge.New(cfg, src, w, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return b, stop
}

// checkFor polls f every every until it returns nil, failing the test with
// f's last error after wait.
func checkFor(t testing.TB, wait, every time.Duration, f func() error) {
	t.Helper()
	poll.Until(t, wait, every, f)
}

func waitState(t testing.TB, b *natsbridge.Bridge, want string) {
	t.Helper()
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if s := b.State(); s != want {
			return fmt.Errorf("bridge state %q, want %q", s, want)
		}
		return nil
	})
}

// connect opens a client connection closed when the test ends.
func connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// collector gathers the messages of a subscription.
type collector struct {
	mu   sync.Mutex
	msgs []*nats.Msg
	ids  map[string]int // Nats-Msg-Id → times seen
}

func collect(t testing.TB, nc *nats.Conn, subject string) *collector {
	t.Helper()
	c := &collector{ids: map[string]int{}}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		c.mu.Lock()
		c.msgs = append(c.msgs, m)
		c.ids[m.Header.Get("Nats-Msg-Id")]++
		c.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	sub.SetPendingLimits(-1, -1)
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return c
}

func (c *collector) all() []*nats.Msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*nats.Msg(nil), c.msgs...)
}

// unique is the number of distinct Nats-Msg-Ids received.
func (c *collector) unique() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ids)
}

func (c *collector) waitN(t testing.TB, n int) []*nats.Msg {
	t.Helper()
	checkFor(t, 10*time.Second, 5*time.Millisecond, func() error {
		if got := len(c.all()); got < n {
			return fmt.Errorf("%d messages received, want %d", got, n)
		}
		return nil
	})
	return c.all()
}

// proxy is a TCP relay to a NATS server that can be taken down (every
// connection cut mid-stream, new ones refused) and brought back on the same
// address: NATS going away as the bridge sees it, while clients connected
// to the server directly stay connected.
type proxy struct {
	t      testing.TB
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]bool
	paused bool
	cond   *sync.Cond // signals the end of a pause
}

func startProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{t: t, addr: ln.Addr().String(), target: target, conns: map[net.Conn]bool{}}
	p.cond = sync.NewCond(&p.mu)
	p.serve(ln)
	t.Cleanup(p.down)
	return p
}

func (p *proxy) url() string { return "nats://" + p.addr }

func (p *proxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[u] = true, true
			p.mu.Unlock()
			go p.pipe(u, c)
			go p.pipe(c, u)
		}
	}()
}

// pipe relays src to dst, holding what it read while paused.
func (p *proxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			for p.paused {
				p.cond.Wait()
			}
			p.mu.Unlock()
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// pause stops relaying, in both directions, without closing anything:
// what is sent meanwhile is in flight.
func (p *proxy) pause() {
	p.mu.Lock()
	p.paused = true
	p.mu.Unlock()
}

// down cuts every relayed connection and stops accepting; what was in
// flight is lost.
func (p *proxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	defer p.cond.Broadcast()
	p.paused = false
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0) // reset: what is in flight is lost
		}
		c.Close()
		delete(p.conns, c)
	}
}

// up accepts again on the same address.
func (p *proxy) up() {
	var ln net.Listener
	var err error
	for range 100 { // the port may take a moment to be free again
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatal(err)
	}
	p.serve(ln)
}

func key(i int) string { return "k/" + strconv.Itoa(i) }
