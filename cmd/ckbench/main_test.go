package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/rpctest"
	"github.com/cloudknowledge/ck/rpc"
)

// TestWorkloads runs every workload against the real API server (with an
// in-memory backend), with either kind of client, and checks the JSON
// results add up.
func TestWorkloads(t *testing.T) {
	for _, client := range []string{"raw", "loop", "rpc"} {
		t.Run(client, func(t *testing.T) { testWorkloads(t, client) })
	}
}

func testWorkloads(t *testing.T, client string) {
	b := rpctest.NewBackend()
	sock := rpctest.Start(t, b, rpc.ServerOptions{}).Socket
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"-socket", sock, "-client", client, "-c", "4", "-n", "200", "-d", "32", "-keys", "50",
		"-t", "set,get,mixed,fresh,fsync,fill,import", "-dir", t.TempDir(), "-json"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var got []result
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var r result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("bad JSON line %q: %v", sc.Text(), err)
		}
		got = append(got, r)
	}
	if len(got) != 7 {
		t.Fatalf("want 7 results, got %d:\n%s", len(got), out.String())
	}
	for _, r := range got[:4] {
		if r.Requests != 200 || r.Errors != 0 || r.OpsPerSec <= 0 || r.P50us <= 0 || r.P99us < r.P50us || r.MaxUs < r.P999us {
			t.Errorf("implausible %s result: %+v", r.Test, r)
		}
	}
	if b.Len() != 50+200 {
		t.Errorf("the store holds %d keys, want 50 (filled before get) and 200 imported", b.Len())
	}
	if im := got[6]; im.Test != "import" || im.Requests != 200 || im.OpsPerSec <= 0 {
		t.Errorf("import result: %+v", im)
	}
	if f := got[5]; f.Test != "fill" || f.Requests != 50 || f.OpsPerSec <= 0 {
		t.Errorf("fill result: %+v", f)
	}
	if f := got[4]; f.Test != "fsync" || f.Requests != 200 || f.P50us <= 0 {
		t.Errorf("fsync result: %+v", f)
	}
}

// TestLoopRefusedSets: the loop client counts answers that are not 2xx
// as errors, and a run where every request failed fails with the first
// one's status.
func TestLoopRefusedSets(t *testing.T) {
	sock := rpctest.Start(t, rpctest.NewBackend(), rpc.ServerOptions{MaxValueSize: 32}).Socket
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"-socket", sock, "-client", "loop", "-c", "3", "-n", "30", "-d", "64", "-t", "set"}, &out, &errb)
	if code != 1 || !strings.Contains(errb.String(), "status 413") {
		t.Fatalf("exit %d, stderr %q, stdout %q: want 1 and the 413", code, errb.String(), out.String())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"-c", "0"}, {"-t", "nope"}, {"-read-pct", "101"}, {"-bogus"}, {"-client", "curl"}} {
		var out, errb bytes.Buffer
		if code := run(context.Background(), append([]string{"-socket", "/nonexistent"}, args...), &out, &errb); code != 2 {
			t.Errorf("%v: exit %d, want 2 (%s)", args, code, errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"-socket", "/nonexistent/ckd.sock", "-n", "1", "-t", "set"}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "cannot reach ckd") {
		t.Errorf("unreachable daemon: exit %d, %q", code, errb.String())
	}
}

// The converge test waits until both nodes hold as many keys under the
// same root, and gives up after -timeout.
func TestConverge(t *testing.T) {
	a, b := rpctest.NewBackend(), rpctest.NewBackend()
	sa := rpctest.Start(t, a, rpc.ServerOptions{}).Socket
	sb := rpctest.Start(t, b, rpc.ServerOptions{}).Socket
	if _, err := b.Put(context.Background(), "k", []byte("v"), rpc.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if code := run(context.Background(), []string{"-socket", sa, "-peer", sb, "-t", "converge", "-timeout", "200ms"}, &out, &errb); code != 1 ||
		!strings.Contains(errb.String(), "not converged after 200ms: 0 keys against 1") {
		t.Errorf("diverged nodes: exit %d, %q", code, errb.String())
	}
	go func() {
		time.Sleep(100 * time.Millisecond)
		a.Put(context.Background(), "k", []byte("v"), rpc.WriteOptions{})
	}()
	out.Reset()
	errb.Reset()
	if code := run(context.Background(), []string{"-socket", sa, "-peer", sb, "-t", "converge", "-json"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	var r result
	if err := json.Unmarshal(out.Bytes(), &r); err != nil || r.Test != "converge" || r.Keys != 1 || r.Seconds < 0.05 {
		t.Errorf("converge result %+v (%v)", r, err)
	}
}
