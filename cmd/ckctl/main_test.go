package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/rpctest"
	"github.com/cloudknowledge/ck/rpc"
)

// daemon is a fake ckd: the real rpc server over the in-memory backend.
func daemon(t *testing.T) *rpctest.Server {
	t.Helper()
	return rpctest.Start(t, rpctest.NewBackend(), rpc.ServerOptions{MaxValueSize: 1 << 16})
}

type result struct {
	stdout, stderr string
	code           int
}

// ckctl runs the CLI against s with stdin and args (no --socket is
// added: tests place it themselves, or set CK_SOCKET).
func ckctlIn(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return result{out.String(), errb.String(), code}
}

// ck runs the CLI against s, with --socket first.
func ck(t *testing.T, s *rpctest.Server, args ...string) result {
	t.Helper()
	return ckctlIn(t, "", append([]string{"--socket", s.Socket}, args...)...)
}

func (r result) want(t *testing.T, code int, stdout string) {
	t.Helper()
	if r.code != code || r.stdout != stdout {
		t.Errorf("exit %d stdout %q (stderr %q); want exit %d stdout %q", r.code, r.stdout, r.stderr, code, stdout)
	}
}

func TestSetGet(t *testing.T) {
	s := daemon(t)
	ck(t, s, "set", "app/a", "hello").want(t, 0, "")
	ck(t, s, "get", "app/a").want(t, 0, "hello")
	r := ck(t, s, "get", "app/a", "-v")
	r.want(t, 0, "hello")
	if r.stderr != "version 1\n" {
		t.Errorf("-v stderr = %q", r.stderr)
	}
	// The seed's forms.
	ck(t, s, "-s", "seed", "v1").want(t, 0, "")
	ck(t, s, "-g", "seed").want(t, 0, "v1")
	ckctlIn(t, "", "-s", "--socket", s.Socket, "seed", "v2").want(t, 0, "")
	ckctlIn(t, "", "--socket", s.Socket, "-g", "seed", "-v").want(t, 0, "v2")
}

func TestFlagPlacement(t *testing.T) {
	s := daemon(t)
	ck(t, s, "set", "k", "v1").want(t, 0, "")
	cases := [][]string{
		{"set", "k", "v2", "--if-version", "1"},
		{"set", "--if-version", "2", "k", "v3"},
		{"set", "k", "--if-version=3", "v4"},
		{"set", "-if-version", "4", "k", "v5", "--wait", "0"},
	}
	for _, args := range cases {
		ck(t, s, args...).want(t, 0, "")
	}
	ck(t, s, "get", "k").want(t, 0, "v5")
	// Globals after the command and after the arguments.
	ckctlIn(t, "", "get", "k", "--socket", s.Socket).want(t, 0, "v5")
	ckctlIn(t, "", "get", "--socket="+s.Socket, "k", "-o", "text").want(t, 0, "v5")
	// "--" ends the flags.
	ck(t, s, "set", "neg", "--", "-5").want(t, 0, "")
	ck(t, s, "get", "neg").want(t, 0, "-5")
	ck(t, s, "set", "--", "dash", "--wait").want(t, 0, "")
	ck(t, s, "get", "--", "dash").want(t, 0, "--wait")
	// "-" is an argument (stdin), not a flag.
	ckctlIn(t, "from stdin", "--socket", s.Socket, "set", "in", "-").want(t, 0, "")
	ck(t, s, "get", "in").want(t, 0, "from stdin")
}

func TestCKSocketEnv(t *testing.T) {
	s := daemon(t)
	t.Setenv("CK_SOCKET", s.Socket)
	ckctlIn(t, "", "set", "k", "v").want(t, 0, "")
	ckctlIn(t, "", "get", "k").want(t, 0, "v")
	// --socket wins over the environment.
	r := ckctlIn(t, "", "get", "k", "--connect-timeout", "0", "--socket", filepath.Join(t.TempDir(), "none.sock"))
	if r.code != exitUnreachable {
		t.Errorf("--socket did not win: %+v", r)
	}
}

func TestValuesByteExact(t *testing.T) {
	s := daemon(t)
	values := map[string]string{
		"empty":    "",
		"binary":   "\x00\xff\xfe\x01",
		"newline":  "line\n",
		"newlines": "a\n\nb\r\n",
		"utf8":     "héllo ✓",
	}
	for name, v := range values {
		ckctlIn(t, v, "--socket", s.Socket, "set", name, "-").want(t, 0, "")
		ck(t, s, "get", name).want(t, 0, v)
		ck(t, s, "set", name+"-arg", v).want(t, 0, "")
		ck(t, s, "get", name+"-arg").want(t, 0, v)
	}
	// --file
	f := filepath.Join(t.TempDir(), "v")
	os.WriteFile(f, []byte("\xff file\n"), 0o600)
	ck(t, s, "set", "file", "--file", f).want(t, 0, "")
	ck(t, s, "get", "file").want(t, 0, "\xff file\n")
	ckctlIn(t, "via file -", "--socket", s.Socket, "set", "--file", "-", "stdin2").want(t, 0, "")
	ck(t, s, "get", "stdin2").want(t, 0, "via file -")
	// -o json shows binary as base64.
	r := ck(t, s, "get", "binary", "-o", "json")
	var g struct{ Key, Value, Encoding string }
	if err := json.Unmarshal([]byte(r.stdout), &g); err != nil || g.Encoding != "base64" || g.Value != base64.StdEncoding.EncodeToString([]byte("\x00\xff\xfe\x01")) {
		t.Errorf("json get: %q %v", r.stdout, err)
	}
}

func TestGetTerminalNewline(t *testing.T) {
	s := daemon(t)
	old := isTerminal
	isTerminal = func(any) bool { return true }
	defer func() { isTerminal = old }()
	ck(t, s, "set", "k", "v").want(t, 0, "")
	ck(t, s, "get", "k").want(t, 0, "v\n")
	ck(t, s, "set", "nl", "v\n").want(t, 0, "")
	ck(t, s, "get", "nl").want(t, 0, "v\n")
}

func TestExitStatuses(t *testing.T) {
	s := daemon(t)
	b := s.Backend
	ck(t, s, "set", "k", "v").want(t, 0, "")
	b.Lock()
	b.Peers = 1
	b.Hook = func(key string, v []byte) ([]byte, error) {
		if strings.HasPrefix(key, "guarded/") {
			return nil, rpc.Errorf(rpc.ErrHookRejected, "values must be even")
		}
		if key == "broken" {
			return nil, rpc.Errorf(rpc.ErrHookError, "hooks/x.lua:3: attempt to index nil")
		}
		return v, nil
	}
	b.Unlock()
	tests := []struct {
		name   string
		args   []string
		code   int
		stderr string
	}{
		{"not found", []string{"get", "nope"}, 3, "ckctl: key not found: nope\n"},
		{"not found json", []string{"get", "nope", "-o", "json"}, 3, "ckctl: key not found: nope\n"},
		{"version mismatch", []string{"set", "k", "x", "--if-version", "9"}, 4, "version mismatch"},
		{"create only", []string{"set", "k", "x", "--if-version", "0"}, 4, "version mismatch"},
		{"del version mismatch", []string{"del", "k", "--if-version", "9"}, 4, "version mismatch"},
		{"hook rejected", []string{"set", "guarded/a", "3"}, 5, "ckctl: rejected by hook: values must be even\n"},
		{"wait shortfall", []string{"set", "w", "x", "--wait", "3", "--timeout", "10ms"}, 6, "ckctl: stored, but only 1 of 3 peers acknowledged\n"},
		{"del wait shortfall", []string{"del", "w", "--wait", "2"}, 6, "only 1 of 2 peers"},
		{"hook error", []string{"set", "broken", "x"}, 1, "attempt to index nil"},
		{"bad key", []string{"set", "a//b", "x"}, 1, "ckctl: "},
		{"too large", []string{"set", "big", strings.Repeat("x", 1<<16+1)}, 1, "too large"},
		{"missing file", []string{"set", "k", "--file", "/nonexistent/x"}, 1, "no such file"},
		{"unknown command", []string{"frobnicate"}, 2, "unknown command"},
		{"unknown flag", []string{"get", "k", "--frob"}, 2, "usage: ckctl get"},
		{"too many args", []string{"get", "a", "b"}, 2, "wrong number of arguments"},
		{"too few args", []string{"set"}, 2, "usage: ckctl set"},
		{"value and file", []string{"set", "k", "v", "--file", "f"}, 2, "not both"},
		{"no value", []string{"set", "k"}, 2, "no VALUE"},
		{"bad output", []string{"status", "-o", "yaml"}, 2, "text or json"},
		{"bad if-version", []string{"set", "k", "v", "--if-version", "x"}, 2, "if-version"},
		{"bad wait", []string{"set", "k", "v", "--wait", "-1"}, 2, "--wait"},
		{"bad timeout", []string{"set", "k", "v", "--timeout", "soon"}, 2, "timeout"},
		{"bad since", []string{"watch", "--since", "-1"}, 2, "since"},
		{"both seeds", []string{"-s", "-g", "k"}, 2, "exclude"},
		{"unknown global", []string{"--frob", "status"}, 2, "usage: ckctl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ck(t, s, tt.args...)
			if r.code != tt.code || !strings.Contains(r.stderr, tt.stderr) {
				t.Errorf("exit %d stderr %q; want %d with %q", r.code, r.stderr, tt.code, tt.stderr)
			}
			if !strings.HasPrefix(r.stderr, "ckctl: ") {
				t.Errorf("stderr not prefixed: %q", r.stderr)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q", r.stdout)
			}
		})
	}
	if r, _ := b.Record("w"); !r.Deleted {
		t.Error("a wait shortfall must still apply the write")
	}
	if _, ok := b.Record("big"); ok {
		t.Error("a too large value was stored")
	}
}

func TestUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ckd.sock")
	r := ckctlIn(t, "", "--socket", sock, "--connect-timeout", "0", "get", "k")
	if r.code != exitUnreachable {
		t.Fatalf("exit %d, want 7: %q", r.code, r.stderr)
	}
	for _, want := range []string{"ckctl: cannot reach ckd at " + sock + ": ", "is ckd running? start it with `ckd`, or pass --socket / set CK_SOCKET"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr %q lacks %q", r.stderr, want)
		}
	}
	for _, cmd := range [][]string{{"set", "k", "v"}, {"list"}, {"members"}, {"status"}, {"reload"}, {"export"}, {"watch"}} {
		if r := ckctlIn(t, "", append([]string{"--socket", sock, "--connect-timeout=0"}, cmd...)...); r.code != exitUnreachable {
			t.Errorf("%v: exit %d", cmd, r.code)
		}
	}
}

func TestDel(t *testing.T) {
	s := daemon(t)
	ck(t, s, "set", "k", "v").want(t, 0, "")
	ck(t, s, "del", "k", "--if-version", "1").want(t, 0, "")
	ck(t, s, "get", "k").want(t, 3, "")
	ck(t, s, "del", "k").want(t, 0, "") // missing: fine
	r := ck(t, s, "del", "never", "-o", "json")
	if r.code != 0 || !strings.Contains(r.stdout, `"deleted": true`) {
		t.Errorf("del json: %+v", r)
	}
}

func TestList(t *testing.T) {
	s := daemon(t)
	s.Backend.Lock()
	s.Backend.PageSize = 2
	s.Backend.Unlock()
	for _, kv := range [][2]string{{"app/a", "1"}, {"app/b", "two words"}, {"app/c", "x\ty"}, {"app/d", "\xff"}, {"app/e", `"q"`}, {"other", "o"}} {
		ck(t, s, "set", kv[0], kv[1]).want(t, 0, "")
	}
	ck(t, s, "del", "app/c").want(t, 0, "")
	ck(t, s, "list", "app/").want(t, 0, "app/a\napp/b\napp/d\napp/e\n")
	ck(t, s, "list").want(t, 0, "app/a\napp/b\napp/d\napp/e\nother\n")
	ck(t, s, "list", "--values", "app/").want(t, 0, "app/a\t1\napp/b\ttwo words\napp/d\t\"\\xff\"\napp/e\t\"\\\"q\\\"\"\n")
	ck(t, s, "list", "zzz").want(t, 0, "")
	ck(t, s, "list", "zzz", "-o", "json").want(t, 0, "[]\n")
	r := ck(t, s, "-o", "json", "list", "app/", "--values")
	var recs []rpc.Record
	if err := json.Unmarshal([]byte(r.stdout), &recs); err != nil || len(recs) != 4 || string(recs[3].Value) != `"q"` {
		t.Errorf("list json: %q %v", r.stdout, err)
	}
}

// syncBuffer is a bytes.Buffer safe to read while a command writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestWatch(t *testing.T) {
	s := daemon(t)
	ck(t, s, "set", "app/a", "1").want(t, 0, "")
	ck(t, s, "set", "x", "1").want(t, 0, "")
	ck(t, s, "del", "app/a").want(t, 0, "")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"watch", "app/", "--since", "0"}, "1 set app/a 1\n3 del app/a 3\n4 set app/c 4\n"},
		{[]string{"watch", "--since=2", "-o", "json"}, `{"index":3,"op":"del","key":"app/a","version":3,"origin":"` + rpctest.SelfID + `"}` + "\n"},
	} {
		ctx, cancel := context.WithCancel(context.Background())
		var out, errb syncBuffer
		done := make(chan int, 1)
		go func() {
			done <- run(ctx, append([]string{"--socket", s.Socket}, tc.args...), nil, &out, &errb)
		}()
		if tc.args[1] == "app/" {
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(out.String(), "del app/a") && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			ck(t, s, "set", "app/c", "42").want(t, 0, "")
		}
		deadline := time.Now().Add(5 * time.Second)
		for !strings.HasPrefix(out.String(), tc.want) && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		cancel() // as SIGINT does
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("%v: exit %d, stderr %q", tc.args, code, errb.String())
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%v: watch did not stop when interrupted", tc.args)
		}
		if !strings.HasPrefix(out.String(), tc.want) {
			t.Errorf("%v: stdout %q, want it to start with %q", tc.args, out.String(), tc.want)
		}
	}
	// A compacted since fails at once.
	s.Backend.Lock()
	s.Backend.CompactedBelow = 10
	s.Backend.Unlock()
	if r := ck(t, s, "watch", "--since", "1"); r.code != 1 || !strings.Contains(r.stderr, "ckctl: ") {
		t.Errorf("compacted: %+v", r)
	}
}

func TestMembersStatus(t *testing.T) {
	s := daemon(t)
	now := time.Now()
	s.Backend.Lock()
	s.Backend.MembersList = []rpc.Member{
		{ID: rpctest.SelfID, Name: "a", Addr: "10.0.0.1:7946", State: "alive", Keys: 3, Lamport: 9, Self: true},
		{ID: "fedcba9876543210fedcba9876543210", Name: "b", Addr: "10.0.0.2:7946", State: "suspect", Keys: 2, Lamport: 7,
			LastHeardMS: now.Add(-90 * time.Second).UnixMilli()},
		{ID: "00000000000000000000000000000001", Addr: "10.0.0.3:7946", State: "gone", LastHeardMS: 1500},
	}
	s.Backend.Unlock()
	r := ck(t, s, "members")
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if r.code != 0 || len(lines) != 4 {
		t.Fatalf("members: %+v", r)
	}
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "ID NAME ADDR STATE KEYS LAMPORT LAST-HEARD" {
		t.Errorf("header %q", lines[0])
	}
	if f := strings.Fields(lines[1]); f[0] != rpctest.SelfID+"*" || f[6] != "-" {
		t.Errorf("self row %q", lines[1])
	}
	if f := strings.Fields(lines[2]); f[3] != "suspect" || strings.Join(f[6:], " ") != "1m30s ago" {
		t.Errorf("peer row %q", lines[2])
	}
	if f := strings.Fields(lines[3]); f[1] != "-" || strings.Join(f[6:], " ") != "1.5s ago" {
		t.Errorf("age row %q", lines[3])
	}
	if strings.Index(lines[0], "NAME") != strings.Index(lines[1], "a ") {
		t.Errorf("columns not aligned:\n%s", r.stdout)
	}
	r = ck(t, s, "members", "-o", "json")
	var ms []rpc.Member
	if err := json.Unmarshal([]byte(r.stdout), &ms); err != nil || len(ms) != 3 {
		t.Errorf("members json: %q %v", r.stdout, err)
	}

	r = ck(t, s, "status")
	if r.code != 0 {
		t.Fatalf("status: %+v", r)
	}
	for _, want := range []string{"id:          " + rpctest.SelfID + "\n", "digest root: 00ff\n", "members:     alive=1\n", "sync:        synced\n", "uptime:      2s\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("status lacks %q:\n%s", want, r.stdout)
		}
	}
	r = ck(t, s, "status", "-o", "json")
	var st rpc.Status
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.ID != rpctest.SelfID {
		t.Errorf("status json: %q %v", r.stdout, err)
	}
}

func TestKeygen(t *testing.T) {
	seen := map[string]bool{}
	for range 2 {
		// No daemon needed: the socket does not exist.
		r := ckctlIn(t, "", "--socket", "/nonexistent/ckd.sock", "keygen")
		if r.code != 0 || !strings.HasSuffix(r.stdout, "\n") {
			t.Fatalf("keygen: %+v", r)
		}
		k := strings.TrimSuffix(r.stdout, "\n")
		b, err := base64.StdEncoding.DecodeString(k)
		if err != nil || len(b) != 32 || len(k) != 44 {
			t.Errorf("key %q: %d bytes, %v", k, len(b), err)
		}
		seen[k] = true
	}
	if len(seen) != 2 {
		t.Error("two keys alike")
	}
}

func TestExportImport(t *testing.T) {
	a, b := daemon(t), daemon(t)
	ck(t, a, "set", "app/a", "1").want(t, 0, "")
	ck(t, a, "set", "app/bin", "\xff\x00").want(t, 0, "")
	ck(t, a, "set", "app/gone", "x").want(t, 0, "")
	ck(t, a, "del", "app/gone").want(t, 0, "")
	ck(t, a, "set", "other", "o").want(t, 0, "")
	r := ck(t, a, "export", "app/")
	if r.code != 0 || strings.Count(r.stdout, "\n") != 3 {
		t.Fatalf("export: %+v", r)
	}
	dump := r.stdout
	ckctlIn(t, dump, "--socket", b.Socket, "import").want(t, 0, "imported 3 records, 3 applied\n")
	ck(t, b, "get", "app/bin").want(t, 0, "\xff\x00")
	ck(t, b, "get", "app/gone").want(t, 3, "")
	ck(t, b, "get", "other").want(t, 3, "")
	if ra, _ := a.Backend.Record("app/a"); true {
		if rb, _ := b.Backend.Record("app/a"); rb.Version != ra.Version {
			t.Errorf("version not kept: %d vs %d", rb.Version, ra.Version)
		}
	}
	f := filepath.Join(t.TempDir(), "dump.jsonl")
	os.WriteFile(f, []byte(dump), 0o600)
	ck(t, b, "import", f).want(t, 0, "imported 3 records, 0 applied\n")
	ckctlIn(t, dump, "--socket", b.Socket, "import", "-", "--as-new", "-o", "json").want(t, 0, "{\n  \"records\": 3,\n  \"applied\": 3\n}\n")
	if r := ckctlIn(t, "{bad\n", "--socket", b.Socket, "import"); r.code != 1 || !strings.Contains(r.stderr, "line 1") {
		t.Errorf("bad import: %+v", r)
	}
	if r := ck(t, b, "import", "/nonexistent/dump"); r.code != 1 {
		t.Errorf("missing file: %+v", r)
	}
}

// A node still bootstrapping says so: get, list and export warn on
// stderr that the answer may be incomplete, and print it all the same.
func TestSyncingWarnings(t *testing.T) {
	s := daemon(t)
	ck(t, s, "set", "app/a", "1").want(t, 0, "")
	s.Backend.Lock()
	s.Backend.Syncing = true
	s.Backend.Unlock()
	for _, tc := range []struct {
		args           []string
		stdout, stderr string
	}{
		{[]string{"get", "app/a"}, "1", "ckctl: warning: ckd is still bootstrapping; the answer may be stale\n"},
		{[]string{"list"}, "app/a\n", "ckctl: warning: this node is still syncing: the list may be incomplete\n"},
		{[]string{"list", "-o", "json"}, "", "ckctl: warning: this node is still syncing: the list may be incomplete\n"},
		{[]string{"export"}, "", "ckctl: warning: this node is still syncing: the export may be incomplete\n"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			r := ck(t, s, tc.args...)
			okOut := r.stdout == tc.stdout || tc.stdout == "" && strings.Contains(r.stdout, "app/a")
			if r.code != 0 || r.stderr != tc.stderr || !okOut {
				t.Errorf("exit %d stdout %q stderr %q; want exit 0, stdout %q (or with app/a), stderr %q",
					r.code, r.stdout, r.stderr, tc.stdout, tc.stderr)
			}
		})
	}
	s.Backend.Lock()
	s.Backend.Syncing = false
	s.Backend.Unlock()
	for _, args := range [][]string{{"get", "app/a"}, {"list"}, {"export"}} {
		if r := ck(t, s, args...); r.code != 0 || r.stderr != "" {
			t.Errorf("%v once synced: exit %d stderr %q", args, r.code, r.stderr)
		}
	}
}

func TestImportProgress(t *testing.T) {
	s := daemon(t)
	old := isTerminal
	isTerminal = func(w any) bool { return true }
	defer func() { isTerminal = old }()
	in := `{"key":"a","value":"1","version":1,"origin":"o","vv":{"o":1}}` + "\n"
	r := ckctlIn(t, in, "--socket", s.Socket, "import")
	if r.code != 0 || !strings.Contains(r.stderr, "\rckctl: import: 1 records sent") {
		t.Errorf("progress: %+v", r)
	}
}

func TestReload(t *testing.T) {
	s := daemon(t)
	ck(t, s, "reload").want(t, 0, "")
	ck(t, s, "reload", "-o", "json").want(t, 0, "{\n  \"status\": \"ok\"\n}\n")
	s.Backend.Lock()
	s.Backend.ReloadErr = rpc.Errorf(rpc.ErrHookError, "hooks/a.lua:1: syntax error")
	s.Backend.Unlock()
	if r := ck(t, s, "reload"); r.code != 1 || r.stderr != "ckctl: hooks/a.lua:1: syntax error\n" {
		t.Errorf("reload error: %+v", r)
	}
}

func TestHelpAndVersion(t *testing.T) {
	s := daemon(t)
	for _, args := range [][]string{{"--version"}, {"-version"}, {"get", "--version"}} {
		r := ckctlIn(t, "", append(args, "--socket", s.Socket)...)
		want := "ckctl " + rpc.Version + " (commit unknown)\nckd " + rpc.Version + " (at " + s.Socket + ")\n"
		r.want(t, 0, want) // go test records no commit
	}
	none := filepath.Join(t.TempDir(), "none.sock")
	r := ckctlIn(t, "", "--version", "--socket", none)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "ckctl "+rpc.Version+" (commit unknown)\nckd: no answer (cannot reach ckd at "+none) {
		t.Errorf("--version without a daemon: %+v", r)
	}
	r = ckctlIn(t, "", "--version", "-o", "json", "--socket", s.Socket)
	var v versionInfo
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil || v.Version != rpc.Version || v.Commit != "unknown" || v.Daemon != rpc.Version {
		t.Errorf("--version -o json: %+v %v", r, err)
	}
	for _, args := range [][]string{{"help"}, {"-h"}, {"--help"}} {
		r := ckctlIn(t, "", args...)
		if r.code != 0 || !strings.Contains(r.stdout, "usage: ckctl") || !strings.Contains(r.stdout, "watch") {
			t.Errorf("%v: %+v", args, r)
		}
	}
	for _, c := range commands {
		for _, args := range [][]string{{"help", c.name}, {c.name, "-h"}} {
			r := ckctlIn(t, "", args...)
			if r.code != 0 || !strings.HasPrefix(r.stdout, "usage: ckctl "+c.name) {
				t.Errorf("%v: %+v", args, r)
			}
		}
	}
	if r := ckctlIn(t, ""); r.code != 2 || !strings.Contains(r.stderr, "usage: ckctl") {
		t.Errorf("no args: %+v", r)
	}
	if r := ckctlIn(t, "", "help", "nope"); r.code != 2 {
		t.Errorf("help nope: %+v", r)
	}
	// help is a command like the others, with a usage of its own.
	r = ckctlIn(t, "", "help", "help")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "usage: ckctl help [COMMAND]\n") {
		t.Errorf("help help: %+v", r)
	}
	// A command's usage shows its own flags, and set's --timeout as its own.
	r = ckctlIn(t, "", "help", "set")
	for _, want := range []string{"usage: ckctl set KEY", "  --if-version V\n", "  --timeout D\n      how long --wait waits", "global flags:"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("help set lacks %q:\n%s", want, r.stdout)
		}
	}
	if r = ckctlIn(t, "", "help", "get"); strings.Contains(r.stdout, "--socket PATH\n") || !strings.Contains(r.stdout, "  -v\n") {
		t.Errorf("help get shows the globals as its own, or lacks -v:\n%s", r.stdout)
	}
}

// The CLI must not link the store, the Lua engine, NATS, HCL, Prometheus
// or CBOR, which only the daemon needs: it links the standard library and rpc, nothing
// else, which also keeps its start fast.
func TestDeps(t *testing.T) {
	gobin := goBinary(t)
	out, err := exec.Command(gobin, "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "github.com/cloudknowledge/ck/rpc\n") {
		t.Fatalf("go list -deps did not list rpc:\n%s", out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"go.etcd.io/bbolt", "github.com/yuin/gopher-lua", "github.com/nats-io",
			"github.com/hashicorp/hcl", "github.com/prometheus", "github.com/fxamacker/cbor",
			"github.com/cloudknowledge/ck/store", "github.com/cloudknowledge/ck/daemon", "github.com/cloudknowledge/ck/scripting"} {
			if strings.HasPrefix(dep, banned) {
				t.Errorf("ckctl links %s", dep)
			}
		}
		first, _, _ := strings.Cut(dep, "/")
		if strings.Contains(first, ".") && !strings.HasPrefix(dep, "github.com/cloudknowledge/ck/") {
			t.Errorf("ckctl links a module outside the standard library: %s", dep)
		}
	}
}

// Only rpc and the standard library are imported directly.
func TestImports(t *testing.T) {
	gobin := goBinary(t)
	out, err := exec.Command(gobin, "list", "-f", `{{join .Imports "\n"}}`, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, imp := range strings.Fields(string(out)) {
		if strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") && imp != "github.com/cloudknowledge/ck/rpc" {
			t.Errorf("ckctl imports %s", imp)
		}
	}
}

func TestParseArgs(t *testing.T) {
	tests := []struct {
		args []string
		pos  string
		file string
		v    bool
	}{
		{[]string{"a", "b"}, "a b", "", false},
		{[]string{"a", "-v", "b"}, "a b", "", true},
		{[]string{"-v", "a", "--file", "f", "b"}, "a b", "f", true},
		{[]string{"a", "--file=f", "b", "-v"}, "a b", "f", true},
		{[]string{"a", "--", "-v", "--file", "x"}, "a -v --file x", "", false},
		{[]string{"--file", "--", "a", "-v"}, "a", "--", true}, // "--" as a flag's value
		{[]string{"-v", "--", "--", "a"}, "-- a", "", true},
		{[]string{"-", "-v"}, "-", "", true},
		{[]string{"--file", "-v", "--", "-x"}, "-x", "-v", false},
		{nil, "", "", false},
	}
	for _, tt := range tests {
		var file string
		var v bool
		fs := newTestFlagSet(&file, &v)
		pos, err := parseArgs(fs, tt.args)
		if err != nil {
			t.Errorf("%q: %v", tt.args, err)
			continue
		}
		if strings.Join(pos, " ") != tt.pos || file != tt.file || v != tt.v {
			t.Errorf("%q: pos %q file %q v %v; want %q %q %v", tt.args, pos, file, v, tt.pos, tt.file, tt.v)
		}
	}
}

func newTestFlagSet(file *string, v *bool) *flag.FlagSet {
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(file, "file", "", "")
	fs.BoolVar(v, "v", false, "")
	return fs
}

// goBinary is the go command of the toolchain running the tests (go env
// GOROOT, as runtime.GOROOT is deprecated), for go list.
func goBinary(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		t.Fatalf("go env GOROOT: %v", err)
	}
	return filepath.Join(strings.TrimSpace(string(out)), "bin", "go")
}
