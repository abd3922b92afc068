package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/rpc"
)

// Helpers of the Go end-to-end tests that run several real ckd on lo
// multicast, in a cluster of the test's own (a random name and port), and
// drive them through rpc clients and the real ckctl.

// loConfig writes a config file for a cluster of the test's own, with
// extra HCL after the cluster block (hooks, say), and returns its path.
func loConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	cfg := filepath.Join(dir, "ckd.hcl")
	if err := os.WriteFile(cfg, []byte(ownCluster("lo")+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startLo starts ckd NAME with the config, its files in dir, and waits
// until its API answers (it may still be bootstrapping). The test's
// cleanup kills it.
func startLo(t *testing.T, dir, cfg, name string) *ckdProc {
	t.Helper()
	n := &ckdProc{dir: dir, name: name, cfg: cfg}
	n.start(t)
	return n
}

// fillKeys writes keys prefix0..prefix(n-1), value "v<i>", from 32
// concurrent clients (their writes share commits): a node holding many
// keys, written as users would.
func fillKeys(t *testing.T, sock, prefix string, n int) {
	t.Helper()
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := rpc.NewClient(sock)
			defer c.Close()
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				if _, err := c.Put(context.Background(), fmt.Sprintf("%s%d", prefix, i), fmt.Appendf(nil, "v%d", i), rpc.WriteOptions{}); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatalf("filling %s: %v", sock, err)
	}
}

// loadedNode starts node "a" with enough keys (k/0...) that a node joining
// it bootstraps for a few hundred milliseconds even on a fast machine
// (~100,000 keys/s; ~12,000 under the race detector), so that what a test
// does right after the joiner starts happens while it bootstraps.
func loadedNode(t *testing.T, dir, cfg string) (a *ckdProc, keys int) {
	t.Helper()
	keys = 10000
	if raceEnabled {
		keys = 4000
	}
	a = startLo(t, dir, cfg, "a")
	eventually(t, 15*time.Second, "a healthy", healthy(a.c))
	start := time.Now()
	fillKeys(t, a.sock(), "k/", keys)
	t.Logf("%d keys written on a in %v", keys, time.Since(start))
	return a, keys
}

// quarantinedPair makes the long separation of docs/PROTOCOL.md (Long
// separations) with two nodes on cfg, whose purge_log_ttl must be shorter
// than away: a and b in sync, b stopped while a takes a write, b started
// again after away; both must then hold the other quarantined.
func quarantinedPair(t *testing.T, dir, cfg string, away time.Duration) (a, b *ckdProc, ca, cb *rpc.Client) {
	t.Helper()
	a = &ckdProc{name: "a", dir: dir, cfg: cfg}
	b = &ckdProc{name: "b", dir: dir, cfg: cfg}
	a.start(t)
	b.start(t)
	ca, cb = rpc.NewClient(a.sock()), rpc.NewClient(b.sock())
	awaitAlive(t, []*rpc.Client{ca, cb}, 2)
	a.mustCkctl(t, "", "set", "--wait", "1", "before", "v0")
	time.Sleep(time.Second) // HELLOs carrying the same root: in sync
	b.shutdown(t)
	a.mustCkctl(t, "", "set", "during/a", "x")
	time.Sleep(away)
	b.start(t)
	awaitState(t, ca, "b", "quarantined")
	awaitState(t, cb, "a", "quarantined")
	return a, b, ca, cb
}
