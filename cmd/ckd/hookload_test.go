package main

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/rpc"
)

// TestHookUnderManyClients: 64 clients writing at once through a config/*
// hook (examples/hooks/json_validate.lua) on a real ckd: every write is
// stored, and the daemon counts no hook error and no exhausted pool — the
// calls queue for a Lua state first come first served. (The pool that woke
// every waiter at once refused some of them: scripting's
// TestPoolManyClientsFastHook measures it.)
//
// The hook's timeout is 1 s rather than the README's 50 ms: under the race
// detector on a shared machine a whole process can stall for tens of
// milliseconds, which fails a call whatever the pool does.
func TestHookUnderManyClients(t *testing.T) {
	t.Parallel() // see parallelism in harness_test.go
	if testing.Short() {
		t.Skip("starts a real daemon; skipped with -short")
	}
	const clients, each = 64, 80
	examples, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := loConfig(t, dir, fmt.Sprintf("hook \"config/*\" {\n  script  = %q\n  timeout = \"1s\"\n}\n",
		filepath.Join(examples, "hooks/json_validate.lua")))
	n := startLo(t, dir, cfg, "a")

	start := time.Now()
	var failed atomic.Int64
	var first atomic.Value
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			c := rpc.NewClient(n.sock())
			defer c.Close()
			for j := range each {
				key := fmt.Sprintf("config/c%d/%d", i, j)
				if _, err := c.Put(context.Background(), key, fmt.Appendf(nil, `{"client":%d,"write":%d}`, i, j), rpc.WriteOptions{}); err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err)
				}
			}
		})
	}
	wg.Wait()
	m := hookEvents(t, n.c)
	t.Logf("%d writes from %d clients in %v: %d failed; hook events %v",
		clients*each, clients, time.Since(start), failed.Load(), m)
	if k := failed.Load(); k > 0 {
		t.Fatalf("%d of %d writes failed; first: %v", k, clients*each, first.Load())
	}
	if m["call"] != clients*each || m["error"] != 0 || m["pool_exhausted"] != 0 {
		t.Errorf("hook events %v; want %d calls, no error, no pool_exhausted", m, clients*each)
	}
	if st, err := n.c.Status(context.Background()); err != nil || st.Keys != clients*each {
		t.Errorf("status: %d keys, %v; want %d", st.Keys, err, clients*each)
	}
}

var hookEventLine = regexp.MustCompile(`(?m)^ck_hook_events_total\{event="(\w+)"\} (\S+)$`)

// hookEvents reads the daemon's ck_hook_events_total counters, by event.
func hookEvents(t *testing.T, c *rpc.Client) map[string]float64 {
	t.Helper()
	text, err := c.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, m := range hookEventLine.FindAllStringSubmatch(text, -1) {
		out[m[1]], _ = strconv.ParseFloat(m[2], 64)
	}
	if len(out) == 0 {
		t.Fatalf("no ck_hook_events_total in the metrics:\n%s", text)
	}
	return out
}
