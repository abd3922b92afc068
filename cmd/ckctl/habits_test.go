package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/poll"
	"github.com/cloudknowledge/ck/internal/rpctest"
	"github.com/cloudknowledge/ck/rpc"
)

// serveAt serves b on sock until stop is called or the test ends: a
// daemon that can be stopped and started again at the same path.
func serveAt(t *testing.T, sock string, b rpc.Backend) (stop func()) {
	t.Helper()
	ln, err := rpc.Listen(sock, 0o600, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewServer(b, nil, rpc.ServerOptions{})
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				t.Errorf("shutdown: %v", err)
			}
			<-done
		})
	}
	t.Cleanup(stop)
	return stop
}

// eventually polls cond for up to 10 seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	poll.Until(t, 10*time.Second, 5*time.Millisecond, func() error {
		if !cond() {
			return errors.New(what)
		}
		return nil
	})
}

// background runs ckctl until the returned stop is called (as SIGINT
// does), and returns its output and exit status then.
func background(t *testing.T, args ...string) (out, errb *syncBuffer, stop func() int, exited <-chan int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out, errb = &syncBuffer{}, &syncBuffer{}
	done := make(chan int, 1)
	go func() { done <- run(ctx, args, nil, out, errb) }()
	code := -1
	stop = func() int {
		cancel()
		select {
		case code = <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("ckctl %v did not stop when interrupted", args)
		}
		return code
	}
	t.Cleanup(func() { cancel() })
	return out, errb, stop, done
}

// `ckd & ckctl set` works at once: ckctl dials a missing socket again
// until the daemon listens, for up to --connect-timeout.
func TestConnectWait(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ckd.sock")
	b := rpctest.NewBackend()
	go func() {
		time.Sleep(300 * time.Millisecond) // the daemon starting
		serveAt(t, sock, b)
	}()
	start := time.Now()
	ckctlIn(t, "", "--socket", sock, "set", "bla", "blub").want(t, 0, "")
	if el := time.Since(start); el < 250*time.Millisecond {
		t.Errorf("set answered after %v, before the daemon listened", el)
	}
	ckctlIn(t, "", "--socket", sock, "get", "bla").want(t, 0, "blub")

	// No daemon: exit 7 once --connect-timeout has passed, not before.
	none := filepath.Join(t.TempDir(), "none.sock")
	for _, tc := range []struct {
		args     []string
		min, max time.Duration
	}{
		{[]string{"--connect-timeout", "400ms"}, 350 * time.Millisecond, 3 * time.Second},
		{[]string{"--connect-timeout", "0"}, 0, time.Second},
	} {
		start := time.Now()
		r := ckctlIn(t, "", append(append([]string{"--socket", none}, tc.args...), "get", "k")...)
		el := time.Since(start)
		if r.code != exitUnreachable || !strings.Contains(r.stderr, "cannot reach ckd at "+none) {
			t.Errorf("%v: %+v", tc.args, r)
		}
		if el < tc.min || el > tc.max {
			t.Errorf("%v: exit after %v, want within [%v, %v]", tc.args, el, tc.min, tc.max)
		}
	}
}

// silentDaemon accepts connections and never answers, as a daemon stopped
// with SIGSTOP (the kernel still accepts on its socket).
func silentDaemon(t *testing.T) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "ckd.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return sock
}

// A daemon that takes the request but never answers: exit 7 "no answer in
// D" within --timeout (or CK_TIMEOUT); watch waits as long as it lasts.
func TestNoAnswer(t *testing.T) {
	sock := silentDaemon(t)
	for _, tc := range []struct {
		name string
		env  string
		args []string
		want string
	}{
		{"get", "", []string{"--timeout", "300ms", "get", "k"}, "no answer in 300ms from ckd at " + sock},
		{"status after", "", []string{"status", "--timeout=300ms"}, "no answer in 300ms"},
		{"env", "300ms", []string{"list"}, "no answer in 300ms"},
		{"flag over env", "1h", []string{"members", "--timeout", "300ms"}, "no answer in 300ms"},
		{"export", "300ms", []string{"export"}, "no answer in 300ms"},
		{"set without wait", "300ms", []string{"set", "k", "v"}, "no answer in 300ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CK_TIMEOUT", tc.env)
			start := time.Now()
			r := ckctlIn(t, "", append([]string{"--socket", sock}, tc.args...)...)
			el := time.Since(start)
			if r.code != exitUnreachable || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d stderr %q; want 7 with %q", r.code, r.stderr, tc.want)
			}
			if el < 250*time.Millisecond || el > 3*time.Second {
				t.Errorf("exit after %v, want about 300ms", el)
			}
		})
	}
	t.Run("bad CK_TIMEOUT", func(t *testing.T) {
		t.Setenv("CK_TIMEOUT", "soon")
		if r := ckctlIn(t, "", "--socket", sock, "get", "k"); r.code != exitUsage || !strings.Contains(r.stderr, "CK_TIMEOUT") {
			t.Errorf("%+v", r)
		}
	})
	t.Run("watch is not bounded", func(t *testing.T) {
		_, errb, stop, exited := background(t, "--socket", sock, "--timeout", "100ms", "watch")
		select {
		case code := <-exited:
			t.Fatalf("watch exited %d within 600ms of a 100ms --timeout: %q", code, errb.String())
		case <-time.After(600 * time.Millisecond):
		}
		if code := stop(); code != 0 {
			t.Errorf("interrupted watch: exit %d %q", code, errb.String())
		}
	})
}

// --wait's shortfall says why, and -o json prints the API's error object
// with acked (0 too) and wanted.
func TestWaitShortfall(t *testing.T) {
	s := daemon(t)
	e := rpc.Errorf(rpc.ErrWaitTimeout, "stored, but only 0 of 2 peers acknowledged (only 0 peers are alive)")
	e.Acked, e.Wanted = 0, 2
	s.Backend.Lock()
	s.Backend.WriteErr = e
	s.Backend.Unlock()
	r := ck(t, s, "set", "k", "v", "--wait", "2")
	r.want(t, exitWaitShortfall, "")
	if r.stderr != "ckctl: stored, but only 0 of 2 peers acknowledged (only 0 peers are alive)\n" {
		t.Errorf("stderr %q", r.stderr)
	}
	r = ck(t, s, "set", "k", "v", "--wait", "2", "-o", "json")
	var body map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &body); err != nil || r.code != exitWaitShortfall ||
		body["acked"] != 0.0 || body["wanted"] != 2.0 || body["code"] != "wait_timeout" {
		t.Errorf("-o json: %+v (%v)", r, err)
	}
}

func TestDelPrefix(t *testing.T) {
	s := daemon(t)
	s.Backend.Lock()
	s.Backend.PageSize = 2 // deletes across pages
	s.Backend.Unlock()
	for _, k := range []string{"app/a", "app/b", "app/c", "apple", "other"} {
		ck(t, s, "set", k, "v").want(t, 0, "")
	}
	ck(t, s, "del", "--prefix", "app/").want(t, 0, "deleted 3 keys\n")
	ck(t, s, "list").want(t, 0, "apple\nother\n")
	ck(t, s, "del", "--prefix", "app/").want(t, 0, "deleted 0 keys\n")
	ck(t, s, "del", "--prefix=app", "-o", "json").want(t, 0, "{\n  \"deleted\": 1\n}\n")
	for _, args := range [][]string{
		{"del"}, {"del", "--prefix", ""}, {"del", "k", "--prefix", "a"}, {"del", "k", "--all"},
		{"del", "--all", "--prefix", "a"}, {"del", "--prefix", "a", "--if-version", "1"},
	} {
		if r := ck(t, s, args...); r.code != exitUsage || !strings.Contains(r.stderr, "usage: ckctl del") {
			t.Errorf("%v: %+v", args, r)
		}
	}
	if s.Backend.Len() != 1 {
		t.Fatalf("a refused del deleted keys: %d left", s.Backend.Len())
	}
	// --wait per key: a shortfall deletes all the same and exits 6.
	ck(t, s, "set", "x/1", "v").want(t, 0, "")
	s.Backend.Lock()
	s.Backend.Peers = 0
	s.Backend.Unlock()
	r := ck(t, s, "del", "--all", "--wait", "1", "-o", "json")
	r.want(t, exitWaitShortfall, "{\n  \"deleted\": 2,\n  \"short\": 2\n}\n")
	if !strings.Contains(r.stderr, "2 of the 2 deleted keys had fewer acknowledgements than --wait") {
		t.Errorf("stderr %q", r.stderr)
	}
	if s.Backend.Len() != 0 {
		t.Errorf("--all left %d keys", s.Backend.Len())
	}
}

func TestWatchFormat(t *testing.T) {
	s := daemon(t)
	for _, kv := range [][2]string{{"app/a", "hello world"}, {"app/with space", "1"}, {"app/e", ""},
		{"app/bin", "\xff"}, {`app/"q`, `"v`}, {"app/over", "old"}, {"app/over", "new"}} {
		ck(t, s, "set", kv[0], kv[1]).want(t, 0, "")
	}
	ck(t, s, "del", "app/e").want(t, 0, "")
	want := "1 set app/a 1\n2 set \"app/with space\" 2\n3 set app/e 3\n4 set app/bin 4\n" +
		"5 set app/\"q 5\n6 set app/over 6\n7 set app/over 7\n8 del app/e 8\n"
	wantValues := "1 set app/a 1 \"hello world\"\n2 set \"app/with space\" 2 1\n3 set app/e 3\n" +
		"4 set app/bin 4 \"\\xff\"\n5 set app/\"q 5 \"\\\"v\"\n6 set app/over 6\n7 set app/over 7 new\n8 del app/e 8\n"
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"watch", "app/", "--since", "0"}, want},
		{[]string{"watch", "app/", "--since", "0", "--values"}, wantValues},
	} {
		out, errb, stop, _ := background(t, append([]string{"--socket", s.Socket}, tc.args...)...)
		eventually(t, "watch printed the log", func() bool { return strings.Count(out.String(), "\n") >= 8 })
		if code := stop(); code != 0 || out.String() != tc.want {
			t.Errorf("%v: exit %d stdout\n%s\nwant\n%s\nstderr %q", tc.args, code, out.String(), tc.want, errb.String())
		}
	}
	out, _, stop, _ := background(t, "--socket", s.Socket, "watch", "app/", "--since", "3", "--values", "-o", "json")
	eventually(t, "watch -o json printed the log", func() bool { return strings.Count(out.String(), "\n") >= 5 })
	stop()
	lines := strings.Split(out.String(), "\n")
	type event struct {
		Index    uint64
		Key      string
		Value    *string
		Encoding string
	}
	var ev event
	if err := json.Unmarshal([]byte(lines[0]), &ev); err != nil || ev.Index != 4 || ev.Value == nil || *ev.Value != "/w==" || ev.Encoding != "base64" {
		t.Errorf("json line %q: %+v %v", lines[0], ev, err)
	}
	ev = event{}
	if err := json.Unmarshal([]byte(lines[2]), &ev); err != nil || ev.Index != 6 || ev.Value != nil {
		t.Errorf("json line of an overwritten set %q: %+v %v", lines[2], ev, err)
	}
}

// The daemon restarts under a watch: it resumes after the last index it
// saw, with no event lost or repeated, whether it had seen one or not.
func TestWatchResume(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ckd.sock")
	b := rpctest.NewBackend() // the data dir: it outlives the daemon
	stop := serveAt(t, sock, b)
	c := rpc.NewClient(sock)
	t.Cleanup(func() { c.Close() })
	set := func(k string) {
		t.Helper()
		if _, err := c.Put(context.Background(), k, []byte("v"), rpc.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	set("before") // index 1: before the watches, not shown
	seen, seenErr, stopSeen, _ := background(t, "--socket", sock, "watch", "app/")
	quiet, _, stopQuiet, _ := background(t, "--socket", sock, "watch", "app/x")
	eventually(t, "watches connected", func() bool { return watchers(b) == 2 })
	set("app/a")
	eventually(t, "app/a seen", func() bool { return strings.Contains(seen.String(), "app/a") })

	stop() // the daemon goes away: shutting_down ends the streams
	eventually(t, "the watch noticed", func() bool { return strings.Contains(seenErr.String(), "lost the daemon") })
	stop = serveAt(t, sock, b)
	set("app/b")
	set("app/x1")
	eventually(t, "app/x1 seen: "+seen.String()+seenErr.String()+quiet.String(), func() bool {
		return strings.Contains(seen.String(), "app/x1") && strings.Contains(quiet.String(), "app/x1")
	})
	// Once more: events are not repeated by a second resume either.
	stop()
	stop = serveAt(t, sock, b)
	set("app/c")
	eventually(t, "app/c seen", func() bool { return strings.Contains(seen.String(), "app/c") })
	if code := stopSeen(); code != 0 {
		t.Errorf("watch exit %d: %q", code, seenErr.String())
	}
	stopQuiet()
	if want := "2 set app/a 2\n3 set app/b 3\n4 set app/x1 4\n5 set app/c 5\n"; seen.String() != want {
		t.Errorf("watch across restarts printed\n%s\nwant\n%s", seen.String(), want)
	}
	if want := "4 set app/x1 4\n"; quiet.String() != want {
		t.Errorf("a watch that had seen nothing before the restart printed %q, want %q", quiet.String(), want)
	}
	if !strings.Contains(seenErr.String(), "ckctl: watch: resumed after index 2\n") {
		t.Errorf("stderr %q", seenErr.String())
	}

	// The log compacted meanwhile: reported, exit 1.
	_, errb, _, exited := background(t, "--socket", sock, "watch")
	eventually(t, "watch connected", func() bool { return watchers(b) == 1 })
	stop()
	b.Lock()
	b.CompactedBelow = 100
	b.Unlock()
	serveAt(t, sock, b)
	select {
	case code := <-exited:
		if code != exitFailure || !strings.Contains(errb.String(), "no longer holds the changes after index 5") {
			t.Errorf("compacted on resume: exit %d %q", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not end on a compacted log")
	}
}

// A daemon whose log is behind the watch (a new data dir) ends it.
func TestWatchResumeOtherLog(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "ckd.sock")
	b := rpctest.NewBackend()
	stop := serveAt(t, sock, b)
	c := rpc.NewClient(sock)
	t.Cleanup(func() { c.Close() })
	for _, k := range []string{"a", "b"} {
		if _, err := c.Put(context.Background(), k, nil, rpc.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	_, errb, _, exited := background(t, "--socket", sock, "watch")
	eventually(t, "watch connected", func() bool { return watchers(b) == 1 })
	stop()
	serveAt(t, sock, rpctest.NewBackend())
	select {
	case code := <-exited:
		if code != exitFailure || !strings.Contains(errb.String(), "change log ends at index 0, before this watch's 2") {
			t.Errorf("exit %d %q", code, errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("watch did not end on another log")
	}
}

// watchers is how many watches b serves now.
func watchers(b *rpctest.Backend) int { return b.Watchers() }

func TestCompletionBash(t *testing.T) {
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("bash is needed to test its completion: ", err)
	}
	r := ckctlIn(t, "", "completion", "bash")
	if r.code != 0 {
		t.Fatalf("%+v", r)
	}
	script := filepath.Join(t.TempDir(), "ckctl.bash")
	os.WriteFile(script, []byte(r.stdout), 0o600)
	// complete WORDS...: what _ckctl offers for the last word.
	prog := `source "$1"; shift
complete -p ckctl
COMP_WORDS=("$@"); COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 )); COMPREPLY=()
_ckctl
printf '%s\n' "${COMPREPLY[@]}"`
	for _, tc := range []struct {
		words []string
		want  []string // among the candidates
		not   []string
	}{
		{[]string{"ckctl", ""}, []string{"set", "get", "del", "watch", "completion", "help"}, nil},
		{[]string{"ckctl", "se"}, []string{"set"}, []string{"get"}},
		{[]string{"ckctl", "-"}, []string{"--socket", "--timeout", "--connect-timeout", "--version", "-o"}, []string{"--values"}},
		{[]string{"ckctl", "set", "k", "--"}, []string{"--file", "--if-version", "--wait", "--timeout", "--socket"}, []string{"--values"}},
		{[]string{"ckctl", "--socket", "/x", "watch", "--v"}, []string{"--values", "--version"}, []string{"--file"}},
		{[]string{"ckctl", "del", "--p"}, []string{"--prefix"}, nil},
		{[]string{"ckctl", "-o", ""}, []string{"text", "json"}, []string{"set"}},
		{[]string{"ckctl", "get", "-o", "j"}, []string{"json"}, nil},
		{[]string{"ckctl", "help", "wa"}, []string{"watch"}, nil},
		{[]string{"ckctl", "completion", ""}, []string{"bash", "zsh", "fish"}, nil},
		{[]string{"ckctl", "set", "--wait", ""}, nil, []string{"set", "--file"}},
	} {
		out, err := exec.Command(bash, append([]string{"--norc", "--noprofile", "-c", prog, "bash", script}, tc.words...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("%q: %v\n%s", tc.words, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if lines[0] != "complete -F _ckctl ckctl" {
			t.Errorf("complete -p: %q", lines[0])
		}
		got := map[string]bool{}
		for _, l := range lines[1:] {
			got[l] = true
		}
		for _, w := range tc.want {
			if !got[w] {
				t.Errorf("%q: %q not offered (got %q)", tc.words, w, lines[1:])
			}
		}
		for _, w := range tc.not {
			if got[w] {
				t.Errorf("%q: %q offered (got %q)", tc.words, w, lines[1:])
			}
		}
	}
}

// Every shell's script names every command and every flag; where the
// shell is installed, it parses the script.
func TestCompletionShells(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		t.Run(sh, func(t *testing.T) {
			r := ckctlIn(t, "", "completion", sh)
			if r.code != 0 {
				t.Fatalf("%+v", r)
			}
			e := &env{g: &globals{}}
			for _, c := range commands {
				if !strings.Contains(r.stdout, c.name) {
					t.Errorf("no command %s", c.name)
				}
				fs, _ := e.newFlagSet(c)
				for _, f := range ownFlags(fs) {
					if !strings.Contains(r.stdout, strings.TrimLeft(dashed(f.Name), "-")) {
						t.Errorf("%s: no flag %s", c.name, f.Name)
					}
				}
			}
			if path, err := exec.LookPath(sh); err == nil {
				f := filepath.Join(t.TempDir(), "ckctl."+sh)
				os.WriteFile(f, []byte(r.stdout), 0o600)
				if out, err := exec.Command(path, "-n", f).CombinedOutput(); err != nil {
					t.Errorf("%s -n: %v\n%s", sh, err, out)
				}
			}
		})
	}
	if r := ckctlIn(t, "", "completion", "tcsh"); r.code != exitUsage {
		t.Errorf("tcsh: %+v", r)
	}
}
