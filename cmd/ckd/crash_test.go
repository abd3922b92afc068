package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/rpc"
	"github.com/cloudknowledge/ck/store"
)

var (
	crashCycles = flag.Int("crash-cycles", 3, "kill -9 / restart cycles in TestCrashKeepsAcknowledgedWrites")
	crashSeed   = flag.Uint64("crash-seed", 0, "seed for TestCrashKeepsAcknowledgedWrites (0: random)")
)

// ack is what a writer was told: key holds value at version.
type ack struct {
	value   string
	version uint64
}

// TestCrashKeepsAcknowledgedWrites kills a real ckd with SIGKILL at random
// moments while writers run, restarts it, and checks that every
// acknowledged write is there, versions never go back, and the store's
// consistency check passes.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	t.Parallel() // see parallelism in harness_test.go
	if testing.Short() {
		t.Skip("starts and kills real daemons; skipped with -short")
	}
	seed := *crashSeed
	if seed == 0 {
		seed = rand.Uint64()
	}
	t.Logf("seed %d (replay with -crash-seed %d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	// A cluster of its own (random name and port), so that parallel tests
	// never join it; the same files in dir every cycle.
	p := &ckdProc{dir: dir, hcl: ownCluster("crash")}
	acked := map[string]ack{}
	var maxVersion uint64
	for cycle := 0; cycle < *crashCycles; cycle++ {
		p.start(t)
		client := rpc.NewClient(p.sock())
		checkAcked(t, client, acked)
		// A new write after the restart gets a version above every one before.
		rec, err := client.Put(context.Background(), "probe", []byte(strconv.Itoa(cycle)), rpc.WriteOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if rec.Version <= maxVersion {
			t.Fatalf("cycle %d: version went back: %d after %d", cycle, rec.Version, maxVersion)
		}
		acked["probe"] = ack{strconv.Itoa(cycle), rec.Version}
		maxVersion = rec.Version
		got := runWritersUntilKilled(t, client, p, cycle, rng.IntN(250)+50)
		for k, a := range got {
			acked[k] = a
			maxVersion = max(maxVersion, a.version)
		}
		t.Logf("cycle %d: %d writes acknowledged before the kill", cycle, len(got))
	}
	// Finally the store file itself: open it and run its consistency check.
	s, err := store.Open(filepath.Join(dir, "data", "ckd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		t.Fatalf("store check after crashes: %v", err)
	}
	for k, a := range acked {
		r, ok, err := s.Get(k)
		if err != nil || !ok || lost(string(r.Value), r.Lamport, a) {
			t.Errorf("acknowledged %s=%q@%d, store holds %q@%d (found %v, err %v)", k, a.value, a.version, r.Value, r.Lamport, ok, err)
		}
	}
}

// runWritersUntilKilled runs 8 writers against the daemon, kills it with
// SIGKILL after killAfterMS, and returns the writes acknowledged before.
func runWritersUntilKilled(t *testing.T, c *rpc.Client, p *ckdProc, cycle, killAfterMS int) map[string]ack {
	var mu sync.Mutex
	got := map[string]ack{}
	var wg sync.WaitGroup
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				// Unique keys, plus a per-writer key overwritten every time.
				for _, k := range []string{fmt.Sprintf("c%d/w%d/k%d", cycle, w, i), fmt.Sprintf("last/w%d", w)} {
					v := fmt.Sprintf("%d-%d", cycle, i)
					rec, err := c.Put(ctx, k, []byte(v), rpc.WriteOptions{})
					if err != nil {
						return // the daemon is gone
					}
					mu.Lock()
					got[k] = ack{v, rec.Version}
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(time.Duration(killAfterMS) * time.Millisecond)
	p.kill()
	cancel()
	wg.Wait()
	return got
}

func checkAcked(t *testing.T, c *rpc.Client, acked map[string]ack) {
	t.Helper()
	for k, a := range acked {
		got, _, err := c.Get(context.Background(), k, rpc.GetOptions{})
		if errors.Is(err, rpc.ErrNotFound) {
			t.Fatalf("acknowledged write %s=%q@%d lost", k, a.value, a.version)
		}
		if err != nil {
			t.Fatal(err)
		}
		if lost(string(got.Value), got.Version, a) {
			t.Fatalf("acknowledged %s=%q@%d, now %q@%d", k, a.value, a.version, got.Value, got.Version)
		}
	}
}

// lost reports whether value@version fails to hold the acknowledged write:
// it must be that write, or a later one (a write in flight at the kill may
// have landed without its acknowledgement).
func lost(value string, version uint64, a ack) bool {
	return version < a.version || (version == a.version && value != a.value)
}
