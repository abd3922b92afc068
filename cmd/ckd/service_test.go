package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/poll"

	"github.com/cloudknowledge/ck/rpc"
)

// TestServiceNotifyAndHealth runs ckd as systemd would run the packaged
// unit (Type=notify): under a NOTIFY_SOCKET of the test's own, as a
// second node joining a node that holds data. While it bootstraps it
// sends STATUS lines and its liveness answers 200 and its readiness 503
// syncing, on the socket and on metrics_addr; READY=1 comes only once it
// holds every key; STOPPING=1 at SIGTERM. metrics_addr answers only its
// documented paths.
func TestServiceNotifyAndHealth(t *testing.T) {
	t.Parallel() // see parallelism in harness_test.go
	if testing.Short() {
		t.Skip("starts real daemons; skipped with -short")
	}
	dir := t.TempDir()
	cfg := loConfig(t, dir, "")
	_, keys := loadedNode(t, dir, cfg)

	notes := listenNotify(t, filepath.Join(dir, "notify"))
	metricsAddr := freeLoopbackAddr(t)
	src, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	bcfg := filepath.Join(dir, "b.hcl")
	if err := os.WriteFile(bcfg, fmt.Appendf(src, "metrics_addr = %q\n", metricsAddr), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	// Started with NOTIFY_SOCKET, as by systemd; up once its socket exists
	// (it may still be bootstrapping).
	b := &ckdProc{dir: dir, name: "b", cfg: bcfg, moreEnv: []string{"NOTIFY_SOCKET=" + filepath.Join(dir, "notify")}, upOnSocket: true}
	b.start(t)
	c := b.c
	tcp := &http.Client{Timeout: 5 * time.Second}
	ctx := context.Background()

	// Until READY: the probes, as a supervisor would send them.
	var statuses []string
	probes := map[string]int{} // "socket" and "tcp": live 200 with ready 503 syncing
	ready := false
	if err := poll.For(30*time.Second, 5*time.Millisecond, func() error {
		if live, rdy := c.Live(ctx), c.Ready(ctx); live == nil && errors.Is(rdy, rpc.ErrSyncing) {
			probes["socket"]++
		}
		if live, _ := tcpGet(tcp, metricsAddr, rpc.PathLive); live == 200 {
			if rdy, body := tcpGet(tcp, metricsAddr, rpc.PathReady); rdy == 503 && strings.Contains(body, `"syncing"`) {
				probes["tcp"]++
			}
		}
		for drained := false; !drained; {
			select {
			case n := <-notes:
				for _, line := range strings.Split(n, "\n") {
					if s, ok := strings.CutPrefix(line, "STATUS="); ok {
						statuses = append(statuses, s)
					}
					ready = ready || line == "READY=1"
				}
			default:
				drained = true
			}
		}
		if !ready {
			return errors.New("no READY=1")
		}
		return nil
	}); err != nil {
		t.Fatalf("%v; STATUS lines %q\n%s", err, statuses, b.log())
	}
	took := time.Since(start)
	// READY means bootstrapped: every key is there, at once.
	st, err := c.Status(ctx)
	if err != nil || st.Sync.State != "synced" || st.Keys != uint64(keys) {
		t.Fatalf("at READY=1: %+v, %v; want synced with %d keys", st, err, keys)
	}
	t.Logf("READY=1 %v after start; STATUS lines %q; live 200 with ready 503 seen %d times on the socket, %d on TCP",
		took.Round(time.Millisecond), statuses, probes["socket"], probes["tcp"])
	if len(statuses) < 2 || !strings.HasPrefix(statuses[0], "bootstrapping: received") || statuses[len(statuses)-1] != "serving" {
		t.Errorf("STATUS lines %q: want bootstrapping: received N first and serving last", statuses)
	}
	if probes["socket"] == 0 || probes["tcp"] == 0 {
		t.Fatalf("no probe saw live 200 with ready 503 during the bootstrap (%v): the test needs more keys", probes)
	}
	if err := c.Ready(ctx); err != nil {
		t.Errorf("ready after READY=1: %v", err)
	}

	// metrics_addr: the metrics, the health paths, and nothing else.
	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{rpc.PathTCPMetrics, 200, "ck_keys"},
		{rpc.PathHealth, 200, `"ok"`},
		{rpc.PathLive, 200, `"ok"`},
		{rpc.PathReady, 200, `"ok"`},
		{"/", 404, "unknown_path"},
		{"/v1/metrics", 404, "unknown_path"},
		{"/v1/kv/k/1", 404, "unknown_path"},
	} {
		if status, body := tcpGet(tcp, metricsAddr, tc.path); status != tc.status || !strings.Contains(body, tc.body) {
			t.Errorf("GET %s on metrics_addr: %d %q, want %d with %q", tc.path, status, body, tc.status, tc.body)
		}
	}

	if err := b.stop(syscall.SIGTERM); err != nil {
		t.Errorf("ckd b exited with %v", err)
	}
	stopping := false
	for drained := false; !drained && !stopping; {
		select {
		case n := <-notes:
			stopping = strings.Contains(n, "STOPPING=1")
		default:
			drained = true
		}
	}
	if !stopping {
		t.Error("no STOPPING=1 at SIGTERM")
	}
}

// listenNotify is the service manager's side of sd_notify: a datagram
// socket whose datagrams come out of the channel.
func listenNotify(t *testing.T, path string) <-chan string {
	t.Helper()
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	out := make(chan string, 1024)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := ln.Read(buf)
			if err != nil {
				return
			}
			out <- string(buf[:n])
		}
	}()
	return out
}

// freeLoopbackAddr is a TCP address on 127.0.0.1 free a moment ago.
func freeLoopbackAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// tcpGet is a GET on addr: the status and body, or 0 when it cannot connect.
func tcpGet(c *http.Client, addr, path string) (int, string) {
	resp, err := c.Get("http://" + addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
