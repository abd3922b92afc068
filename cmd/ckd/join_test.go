package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestJoiningNodeAnswersReads: a node joining a cluster that holds many
// keys answers reads while it bootstraps. A key it has not received yet
// comes from its peers — the value, exit 0, marked Ck-Syncing — rather
// than "not found" (exit 3), which fooled examples/scripts/wait-for-key.sh;
// list and export warn that they may be incomplete, and are complete when
// they do not; once synced, it holds every key and reads are not marked.
func TestJoiningNodeAnswersReads(t *testing.T) {
	t.Parallel() // see parallelism in harness_test.go
	if testing.Short() {
		t.Skip("starts real daemons; skipped with -short")
	}
	ctx := context.Background()
	dir := t.TempDir()
	cfg := loConfig(t, dir, "")
	_, keys := loadedNode(t, dir, cfg)

	b := startLo(t, dir, cfg, "b")
	syncing := 0 // reads answered with the syncing mark
	out, stderr, code := b.ckctl(t, "list", "k/")
	if code != 0 {
		t.Fatalf("list: exit %d: %s", code, stderr)
	}
	if listed := strings.Count(out, "\n"); strings.Contains(stderr, "this node is still syncing: the list may be incomplete") {
		syncing++
		t.Logf("list while syncing: %d of %d keys", listed, keys)
	} else if listed != keys {
		t.Errorf("list without a warning shows %d of %d keys (stderr %q)", listed, keys, stderr)
	}
	out, stderr, code = b.ckctl(t, "export", "k/")
	if exported := strings.Count(out, "\n"); code != 0 {
		t.Fatalf("export: exit %d: %s", code, stderr)
	} else if strings.Contains(stderr, "this node is still syncing: the export may be incomplete") {
		syncing++
	} else if exported != keys {
		t.Errorf("export without a warning has %d of %d records (stderr %q)", exported, keys, stderr)
	}
	// The keys written last first: the least likely to have arrived.
	for i := keys - 1; i >= 0; i -= 997 {
		key, want := fmt.Sprintf("k/%d", i), fmt.Sprintf("v%d", i)
		out, stderr, code := b.ckctl(t, "get", key)
		if code != 0 || out != want {
			t.Fatalf("get %s on the joining node: exit %d, %q (stderr %q); want %q", key, code, out, stderr, want)
		}
		if strings.Contains(stderr, "still bootstrapping") {
			syncing++
		}
		if st, err := b.c.Status(ctx); err != nil || st.Sync.State != "bootstrapping" {
			break
		}
	}
	t.Logf("%d reads answered while b bootstrapped", syncing)
	if syncing == 0 {
		t.Fatalf("b had bootstrapped before the first read: the test needs more keys\n%s", b.log())
	}

	eventually(t, 30*time.Second, "b healthy", healthy(b.c))
	for _, line := range strings.Split(b.log(), "\n") {
		if strings.Contains(line, "bootstrap complete") {
			t.Log(line)
		}
	}
	if st, err := b.c.Status(ctx); err != nil || st.Keys != uint64(keys) {
		t.Fatalf("b after its bootstrap: %+v, %v; want %d keys", st, err, keys)
	}
	value, _, info, err := b.c.GetRaw(ctx, "k/0", false)
	if err != nil || string(value) != "v0" || info.Syncing || info.Fresh {
		t.Errorf("get once synced: %q %+v %v", value, info, err)
	}
	if _, stderr, code := b.ckctl(t, "list", "k/1"); code != 0 || stderr != "" {
		t.Errorf("list once synced: exit %d, stderr %q", code, stderr)
	}
}
