package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/rpc"
)

// TestKeyRotation rotates the cluster key of three running nodes without
// downtime — add the new key everywhere, make it primary, remove the old,
// each step a reload on one node after another — while a writer keeps
// writing with --wait 2:
// every write is acknowledged by both peers and present everywhere.
func TestKeyRotation(t *testing.T) {
	t.Parallel() // see parallelism in harness_test.go
	if testing.Short() {
		t.Skip("starts real daemons; skipped with -short")
	}
	dir := t.TempDir()
	oldKey, newKey := seal.GenerateKey(), seal.GenerateKey()
	cluster, port := fmt.Sprintf("rotate-%08x", rand.Uint32()), 20000+rand.IntN(40000)
	var socks []string
	for i := range 3 {
		name := fmt.Sprintf("n%d", i)
		ring := filepath.Join(dir, name+".keys")
		writeRing(t, ring, oldKey)
		p := &ckdProc{dir: dir, name: name,
			hcl: fmt.Sprintf("cluster {\n  name = %q\n  port = %d\n  keyring_file = %q\n  heartbeat = \"200ms\"\n  dead_after = \"2s\"\n}\n", cluster, port, ring)}
		p.start(t)
		sock := p.sock()
		socks = append(socks, sock)
	}
	clients := make([]*rpc.Client, 3)
	for i, s := range socks {
		clients[i] = rpc.NewClient(s)
	}
	awaitAlive(t, clients, 3)

	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var written, failed atomic.Int64
	var firstErr atomic.Value
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ctx.Err() == nil; i++ {
			_, err := clients[i%3].Put(context.Background(), fmt.Sprintf("r/%d", i), []byte("v"), rpc.WriteOptions{Wait: 2, Timeout: rpc.Duration(time.Second)})
			if err != nil && failed.Add(1) == 1 {
				firstErr.Store(fmt.Sprintf("write %d: %v", i, err))
			}
			written.Add(1)
		}
	}()
	// Nodes reload one after another, 1.5 s apart — longer than a write
	// waits for its acknowledgements — so at every moment some nodes run
	// the old keyring and some the new: a rotation that skipped a step
	// would fail writes here.
	step := func(what string, keys ...string) {
		for i := range socks {
			time.Sleep(1500 * time.Millisecond)
			writeRing(t, filepath.Join(dir, fmt.Sprintf("n%d.keys", i)), keys...)
			if err := clients[i].Reload(context.Background()); err != nil {
				t.Fatalf("%s: reload n%d: %v", what, i, err)
			}
		}
	}
	step("add the new key", oldKey, newKey)
	step("make it primary", newKey, oldKey)
	step("remove the old key", newKey)
	time.Sleep(500 * time.Millisecond)
	stop()
	wg.Wait()
	n := int(written.Load())
	t.Logf("%d writes during the rotation, %d failed", n, failed.Load())
	if failed.Load() > 0 {
		t.Errorf("%d writes failed during the rotation; the first: %v", failed.Load(), firstErr.Load())
	}
	if n < 10 {
		t.Errorf("only %d writes during the rotation", n)
	}
	for i, c := range clients {
		for k := 0; k < n; k++ {
			if _, _, _, err := c.GetRaw(context.Background(), fmt.Sprintf("r/%d", k), false); err != nil {
				t.Errorf("n%d: r/%d: %v", i, k, err)
				break
			}
		}
	}
}

func writeRing(t *testing.T, path string, keys ...string) {
	t.Helper()
	var b []byte
	for _, k := range keys {
		b = append(b, k+"\n"...)
	}
	if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}
