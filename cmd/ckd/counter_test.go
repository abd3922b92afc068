package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// TestCounterExactAcrossNodes: three real ckd on lo with
// examples/hooks/pn_counter.lua on counters/*, two clients per node each
// running `ckctl set counters/x +1` 50 times at once: after convergence
// every node reads the exact sum, 300, and holds each node's part as 100.
// (Compare-and-set, guarded-update.sh, lost 6-17 % of such increments;
// examples.txtar runs counter.sh itself in parallel.)
func TestCounterExactAcrossNodes(t *testing.T) {
	t.Parallel() // see parallelism in harness_test.go
	if testing.Short() {
		t.Skip("starts real daemons; skipped with -short")
	}
	const clientsPerNode, increments = 2, 50
	examples, err := filepath.Abs("../../examples")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cfg := loConfig(t, dir, fmt.Sprintf("hook \"counters/*\" {\n  script = %q\n  timeout = \"2s\"\n}\n", filepath.Join(examples, "hooks/pn_counter.lua"))) // not a timeout test: a loaded -race run can pass 50ms
	var nodes []*ckdProc
	for _, name := range []string{"a", "b", "c"} {
		nodes = append(nodes, startLo(t, dir, cfg, name))
	}
	for _, n := range nodes {
		eventually(t, 20*time.Second, n.name, membersAlive(n.c, len(nodes)))
	}

	start := time.Now()
	var wg sync.WaitGroup
	errs := make(chan error, len(nodes)*clientsPerNode)
	for _, n := range nodes {
		for range clientsPerNode {
			wg.Go(func() {
				for i := range increments {
					if _, stderr, code := n.ckctl(t, "set", "counters/x", "+1"); code != 0 {
						errs <- fmt.Errorf("increment %d on %s: exit %d: %s", i, n.name, code, stderr)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d increments on %d nodes in %v", len(nodes)*clientsPerNode*increments, len(nodes), time.Since(start))

	want := fmt.Sprint(len(nodes) * clientsPerNode * increments)
	for _, n := range nodes {
		eventually(t, 30*time.Second, n.name+" reads the sum", func() error {
			v, _, _, err := n.c.GetRaw(context.Background(), "counters/x", false)
			if err != nil || string(v) != want {
				return fmt.Errorf("reads %q (err %v); want %s", v, err, want)
			}
			return nil
		})
		checkCounterParts(t, n, clientsPerNode*increments)
	}
}

// checkCounterParts checks the stored state on n: each node's part holds
// exactly its own increments, and nothing was decremented.
func checkCounterParts(t *testing.T, n *ckdProc, each int) {
	t.Helper()
	var buf bytes.Buffer
	if err := n.c.Export(context.Background(), "counters/x", &buf); err != nil {
		t.Fatal(err)
	}
	var rec struct{ Value string }
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%s: export %q: %v", n.name, buf.String(), err)
	}
	var st struct{ P, N map[string]int }
	if err := json.Unmarshal([]byte(rec.Value), &st); err != nil {
		t.Fatalf("%s: state %q: %v", n.name, rec.Value, err)
	}
	want := map[string]int{"a": each, "b": each, "c": each}
	if fmt.Sprint(st.P) != fmt.Sprint(want) || len(st.N) != 0 {
		t.Errorf("%s holds %s; want p = %v, no n", n.name, rec.Value, want)
	}
}
