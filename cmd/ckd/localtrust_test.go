package main

// Local trust end to end (docs/ARCHITECTURE.md, "Local trust"): another
// user of the host, a real second uid (nobody, through setpriv), starts a
// daemon on the default cluster's group and port, or puts a listener of
// their own at a socket path in /tmp, and gets nothing.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/poll"

	"github.com/cloudknowledge/ck/rpc"
)

// otherUID is the second user the tests act as: nobody.
const otherUID = 65534

// needOtherUser skips unless the test can run programs as otherUID.
func needOtherUser(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("starts real daemons; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot run a program as a second uid (setpriv --reuid needs root)")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) is missing: cannot run a program as a second uid")
	}
	if out, err := asOther("true").CombinedOutput(); err != nil {
		t.Skipf("setpriv cannot switch to uid %d here: %v %s", otherUID, err, out)
	}
}

// asOther runs a program as otherUID, with no supplementary groups.
func asOther(name string, args ...string) *exec.Cmd {
	prefix := asOtherPrefix()
	return exec.Command(prefix[0], append(append(prefix[1:], name), args...)...)
}

// asOtherPrefix is the command that runs the rest of its arguments as
// otherUID, with no supplementary groups.
func asOtherPrefix() []string {
	id := fmt.Sprint(otherUID)
	return []string{"setpriv", "--reuid=" + id, "--regid=" + id, "--clear-groups", "--"}
}

// sharedBase is a directory every user may traverse and read (the
// binaries' and the config's), removed at the end of the test.
func sharedBase(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "ck-trust-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// otherHome is a directory of otherUID's own (0700) under base.
func otherHome(t *testing.T, base string) string {
	t.Helper()
	dir := filepath.Join(base, "other")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, otherUID, otherUID); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestOtherUserLearnsNothing: with no key configured, a second user's ckd
// on the same cluster name, group and port as ours (what the default
// config gives every user of a host) shares no key with ours, so its
// frames are refused: it never appears among our members, learns none of
// our keys, and its writes never reach us.
func TestOtherUserLearnsNothing(t *testing.T) {
	t.Parallel() // see parallelism in harness_test.go
	needOtherUser(t)
	base := sharedBase(t)
	cfg := filepath.Join(base, "cluster.hcl")
	hcl := fmt.Sprintf("cluster {\n  name = %q\n  port = %d\n  heartbeat = \"200ms\"\n}\n",
		fmt.Sprintf("trust-%08x", rand.Uint32()), 20000+rand.IntN(40000))
	if err := os.WriteFile(cfg, []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}

	// Our node: no key configured.
	mine := t.TempDir()
	ours := &ckdProc{dir: mine, name: "a", cfg: cfg, moreEnv: []string{"XDG_CONFIG_HOME=" + filepath.Join(mine, "config")}}
	ours.start(t)
	a := ours.c
	ctx := context.Background()
	if _, err := a.Put(ctx, "db/password", []byte("s3cret"), rpc.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	myKey := filepath.Join(mine, "config", "ckd", "cluster.key")
	if st, err := a.Status(ctx); err != nil || st.KeySource != "default key file "+myKey {
		t.Fatalf("key source %q (err %v), want the default key file %s", st.KeySource, err, myKey)
	}
	before := scrape(t, a)[`ck_datagrams_dropped_total{reason="key"}`]

	// The other user's node, as the reproduction: ckd -node-name
	// evil -data-dir D -socket S, on the same cluster.
	home := otherHome(t, base)
	evilSock := filepath.Join(home, "evil.sock")
	start := time.Now()
	theirs := &ckdProc{dir: home, name: "evil", cfg: cfg, data: filepath.Join(home, "data"), socket: evilSock,
		logf: filepath.Join(base, "evil.log"), prefix: asOtherPrefix(), moreEnv: []string{"XDG_CONFIG_HOME=" + filepath.Join(home, "config")}}
	theirs.start(t)
	evil := theirs.c
	st, err := evil.Status(ctx)
	evilKey := filepath.Join(home, "config", "ckd", "cluster.key")
	if err != nil || st.KeySource != "default key file "+evilKey {
		t.Fatalf("the other node's key source %q (err %v), want its own default key file", st.KeySource, err)
	}
	if k1, k2 := readFile(t, myKey), readFile(t, evilKey); k1 == k2 {
		t.Fatal("both users got the same key")
	}
	// It writes through its own ckctl (which trusts its own daemon).
	if out, err := asOther(filepath.Join(binDir, "ckctl"), "--socket", evilSock, "set", "bla", "pwned").CombinedOutput(); err != nil {
		t.Fatalf("the other user's ckctl set: %v\n%s", err, out)
	}
	wrote := time.Now()

	// Its frames do reach our node, and are refused for their key: wait
	// until our node has refused more than 5 heartbeats' worth sent after
	// its write, checking the whole time that it never joins.
	var dropped float64
	if err := poll.For(15*time.Second, 100*time.Millisecond, func() error {
		checkNotMember(t, a, "evil")
		dropped = scrape(t, a)[`ck_datagrams_dropped_total{reason="key"}`]
		if dropped-before >= 5 && time.Since(wrote) > 1500*time.Millisecond {
			return nil
		}
		return fmt.Errorf("%.0f frames refused for their key", dropped-before)
	}); err != nil {
		t.Fatalf("%v: the other node's traffic does not reach our node, so this test proves nothing", err)
	}
	t.Logf("our node refused %.0f frames under an unknown key in %s", dropped-before, time.Since(start).Round(time.Millisecond))
	if _, _, _, err := a.GetRaw(ctx, "bla", false); !errors.Is(err, rpc.ErrNotFound) {
		t.Errorf("the other user's write reached our node: get bla = %v", err)
	}
	if _, _, _, err := a.GetRaw(ctx, "bla", true); !errors.Is(err, rpc.ErrNotFound) {
		t.Errorf("a fresh read found the other user's write: %v", err)
	}
	var keys []string
	if err := evil.ListAll(ctx, "", false, func(r rpc.Record) error { keys = append(keys, r.Key); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "bla" {
		t.Errorf("the other node holds %q, want only its own bla", keys)
	}
	if _, _, _, err := evil.GetRaw(ctx, "db/password", true); !errors.Is(err, rpc.ErrNotFound) {
		t.Errorf("the other node read our db/password with a fresh read: %v", err)
	}
	ms, err := evil.Members(ctx)
	if err != nil || len(ms) != 1 {
		t.Errorf("the other node's members: %+v (err %v), want only itself", ms, err)
	}
}

// checkNotMember fails the test if node c lists a member named name.
func checkNotMember(t *testing.T, c *rpc.Client, name string) {
	t.Helper()
	ms, err := c.Members(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Name == name {
			t.Fatalf("%s appears among our members: %+v", name, m)
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSocketImpostor: another user creates a listener first at the socket
// path we use in a sticky, world-writable directory (the README's
// /tmp/ckd-beta.sock). ckctl connects, sees from the kernel who serves the
// socket, and refuses before it writes a byte; ckd refuses to start there.
func TestSocketImpostor(t *testing.T) {
	t.Parallel() // see parallelism in harness_test.go
	needOtherUser(t)
	base := sharedBase(t)
	tmp := filepath.Join(base, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tmp, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(tmp, "ckd-beta.sock")
	home := otherHome(t, base)
	record := filepath.Join(home, "received")

	// The impostor is this test binary, copied where nobody can run it
	// (by TestMain, before any test forks).
	imp := asOther(filepath.Join(binDir, impostorBin), "-test.run=^$")
	imp.Env = append(os.Environ(), impostorEnv+"="+sock, impostorRecordEnv+"="+record)
	var out bytes.Buffer
	imp.Stdout, imp.Stderr = &out, &out
	if err := imp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { imp.Process.Kill(); imp.Wait() })
	awaitFile(t, record+".ready", &out)

	for _, args := range [][]string{{"set", "db/password", "s3cret"}, {"get", "db/password"}, {"status"}} {
		cmd := exec.Command(filepath.Join(binDir, "ckctl"), append([]string{"--socket", sock}, args...)...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		err := cmd.Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 7 {
			t.Errorf("ckctl %s: %v, want exit status 7\n%s", args[0], err, stderr.String())
		}
		if msg := stderr.String(); !strings.Contains(msg, fmt.Sprintf("uid %d", otherUID)) || !strings.Contains(msg, "refusing") {
			t.Errorf("ckctl %s: the message does not name the uid found: %s", args[0], msg)
		}
	}
	// ckctl did connect (so the check was made on a real connection), and
	// the impostor received nothing on any connection.
	awaitFile(t, record+".accepted3", &out)
	got, err := os.ReadFile(record)
	if err != nil || len(got) != 0 {
		t.Errorf("the impostor received %q (err %v), want nothing", got, err)
	}

	// Our ckd will not serve there either: the path is another user's.
	mine := t.TempDir()
	beta := &ckdProc{dir: mine, name: "beta", data: filepath.Join(mine, "data"), socket: sock,
		hcl: ownCluster("trust"), moreEnv: []string{"XDG_CONFIG_HOME=" + filepath.Join(mine, "config")}}
	if err := beta.launch(); err != nil {
		t.Fatal(err)
	}
	beta.killAtCleanup(t)
	exited, err := beta.waitExited(10 * time.Second)
	if msg := beta.log(); !exited || err == nil || !strings.Contains(msg, fmt.Sprintf("uid %d", otherUID)) {
		t.Errorf("ckd on the impostor's path: exited %v (%v), want a refusal naming uid %d\n%s", exited, err, otherUID, msg)
	}
	if b, _ := os.ReadFile(record); len(b) != len(got) {
		t.Errorf("the impostor received %q from ckd's probe", b[len(got):])
	}
}

// impostorBin is the name of the copy of this test binary in binDir.
const impostorBin = "impostor.test"

// copyImpostor copies this test binary to path, executable by everyone.
func copyImpostor(path string) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	src, err := os.Open(self)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	return dst.Close()
}

// awaitFile waits (at most 15 s) until path exists.
func awaitFile(t *testing.T, path string, out *bytes.Buffer) {
	t.Helper()
	if err := poll.For(15*time.Second, 20*time.Millisecond, func() error {
		_, err := os.Stat(path)
		return err
	}); err != nil {
		t.Fatalf("%s did not appear: %v; impostor output:\n%s", path, err, out)
	}
}

// The impostor's environment: the socket path it takes, and the file it
// records what it receives in.
const (
	impostorEnv       = "CK_E2E_IMPOSTOR_SOCKET"
	impostorRecordEnv = "CK_E2E_IMPOSTOR_RECORD"
)

// runImpostor is what the test binary does when started as the impostor:
// listen at the socket path, answer every connection with a forged
// success, and append every byte received to the record file. It marks
// RECORD.ready once listening and RECORD.acceptedN after N connections.
func runImpostor(sock, record string) int {
	rec, err := os.OpenFile(record, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "impostor:", err)
		return 1
	}
	ln, err := net.Listen("unix", sock)
	if err != nil {
		fmt.Fprintln(os.Stderr, "impostor:", err)
		return 1
	}
	os.Chmod(sock, 0o777) // anyone may connect, as to a real ckd
	if err := os.WriteFile(record+".ready", nil, 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "impostor:", err)
		return 1
	}
	var mu sync.Mutex
	for n := 1; ; n++ {
		c, err := ln.Accept()
		if err != nil {
			fmt.Fprintln(os.Stderr, "impostor:", err)
			return 1
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 4096)
			for {
				k, err := c.Read(buf)
				if k > 0 {
					mu.Lock()
					rec.Write(buf[:k])
					mu.Unlock()
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
				}
				if err != nil {
					return
				}
			}
		}()
		os.WriteFile(fmt.Sprintf("%s.accepted%d", record, n), nil, 0o644)
	}
}
