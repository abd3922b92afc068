package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/cloudknowledge/ck/rpc"
	"github.com/cloudknowledge/ck/rpc/rpctest"
)

// TestWorkloads runs every workload against the real API server (with an
// in-memory backend), with either kind of client, and checks the JSON
// results add up.
func TestWorkloads(t *testing.T) {
	for _, client := range []string{"raw", "rpc"} {
		t.Run(client, func(t *testing.T) { testWorkloads(t, client) })
	}
}

func testWorkloads(t *testing.T, client string) {
	b := rpctest.NewBackend()
	sock := rpctest.Start(t, b, rpc.ServerOptions{}).Socket
	var out, errb bytes.Buffer
	code := run(context.Background(), []string{"-socket", sock, "-client", client, "-c", "4", "-n", "200", "-d", "32", "-keys", "50",
		"-t", "set,get,mixed,fresh,fsync,fill", "-dir", t.TempDir(), "-json"}, &out, &errb)
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
	if len(got) != 6 {
		t.Fatalf("want 6 results, got %d:\n%s", len(got), out.String())
	}
	for _, r := range got[:4] {
		if r.Requests != 200 || r.Errors != 0 || r.OpsPerSec <= 0 || r.P50us <= 0 || r.P99us < r.P50us || r.MaxUs < r.P999us {
			t.Errorf("implausible %s result: %+v", r.Test, r)
		}
	}
	if b.Len() != 50 {
		t.Errorf("the keyspace holds %d keys, want 50 (filled before get)", b.Len())
	}
	if f := got[5]; f.Test != "fill" || f.Requests != 50 || f.OpsPerSec <= 0 {
		t.Errorf("fill result: %+v", f)
	}
	if f := got[4]; f.Test != "fsync" || f.Requests != 200 || f.P50us <= 0 {
		t.Errorf("fsync result: %+v", f)
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
