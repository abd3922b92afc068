package main

// End-to-end harness: TestMain builds the real ckd and ckctl binaries once;
// the testscript files in testdata/script drive them as a person or a shell
// script would, with a few commands of our own to start and stop daemons.

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/poll"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/cloudknowledge/ck/rpc"
)

// binDir holds the ckd and ckctl binaries built for this test run.
var binDir string

func TestMain(m *testing.M) {
	if sock := os.Getenv(impostorEnv); sock != "" { // TestSocketImpostor's other user
		os.Exit(runImpostor(sock, os.Getenv(impostorRecordEnv)))
	}
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	setParallelism()
	dir, err := os.MkdirTemp("", "ck-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	// Readable and executable by every user: the local-trust tests run
	// them as another uid.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	// A ckd with no key configured makes its user's default key file in
	// $XDG_CONFIG_HOME/ckd (else /etc/ckd as root): every ckd a test starts
	// inherits this, so that no test ever writes /etc/ckd or ~/.config.
	// Scripts get a directory of their own (setupScript).
	config, err := os.MkdirTemp("", "ck-e2e-config-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_CONFIG_HOME", config)
	args := []string{"build", "-o", dir}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, "github.com/cloudknowledge/ck/cmd/ckd", "github.com/cloudknowledge/ck/cmd/ckctl")...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building ckd and ckctl:", err)
		os.Exit(1)
	}
	// TestSocketImpostor runs this test binary as another user. It is
	// copied here, before any test runs: a copy written while parallel
	// tests fork children can be held open for writing by one of them
	// until it execs, and exec then fails with "text file busy".
	if err := copyImpostor(filepath.Join(dir, impostorBin)); err != nil {
		fmt.Fprintln(os.Stderr, "copying the test binary:", err)
		os.Exit(1)
	}
	if err := writeFakeNATS(dir); err != nil {
		fmt.Fprintln(os.Stderr, "writing the nats stand-in:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.RemoveAll(config)
	os.Exit(code)
}

// e2eParallel is how many end-to-end tests (scripts and the Go tests that
// call t.Parallel) run at once unless -parallel says otherwise. They spend
// most of their time waiting on heartbeats, timeouts and fsyncs, not on
// the CPU, so more of them than CPUs (go test's default) keeps the
// package's wall time a third of what it would be. The tests whose bounds
// are about time or memory under load (TestFlood, TestConnectionFlood,
// TestConcurrentLargePuts) do not call t.Parallel: Go runs them alone,
// before the parallel ones start.
const e2eParallel = 4

func setParallelism() {
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		flag.Set("test.parallel", strconv.Itoa(max(e2eParallel, runtime.GOMAXPROCS(0))))
	}
}

func TestScripts(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end scripts build and run the real binaries; skipped with -short")
	}
	testscript.Run(t, testscript.Params{
		Dir:   "testdata/script",
		Setup: setupScript,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"ckd-start":     cmdStart,
			"ckd-stop":      cmdStop,
			"fill":          cmdFill,
			"exits":         cmdExits,
			"capture":       cmdCapture,
			"waitfor":       cmdWaitFor,
			"bytes":         cmdBytes,
			"members-alive": cmdMembersAlive,
			"await-value":   cmdAwaitValue,
			"rss-below":     cmdRSSBelow,
			"await-healthy": cmdAwaitHealthy,
			"await-state":   cmdAwaitState,
			"await-missing": cmdAwaitMissing,
			"await-same":    cmdAwaitSame,
			"records":       cmdRecords,
		},
		RequireExplicitExec: true,
	})
}

// setupScript gives each script its own HOME, config (the default key
// file, shared by the script's nodes), data and runtime dirs, the binaries
// on PATH, and a random cluster name and port so that scripts running in
// parallel never join each other's clusters.
func setupScript(env *testscript.Env) error {
	work := env.WorkDir
	env.Setenv("PATH", binDir+string(os.PathListSeparator)+env.Getenv("PATH"))
	env.Setenv("HOME", filepath.Join(work, "home"))
	env.Setenv("XDG_CONFIG_HOME", filepath.Join(work, "config"))
	env.Setenv("XDG_STATE_HOME", filepath.Join(work, "state"))
	env.Setenv("XDG_RUNTIME_DIR", filepath.Join(work, "run"))
	env.Setenv("CK_CLUSTER", fmt.Sprintf("e2e-%08x", rand.Uint32()))
	env.Setenv("CK_PORT", strconv.Itoa(20000+rand.IntN(40000)))
	env.Values[daemonsKey{}] = daemons{}
	examples, err := filepath.Abs("../../examples")
	if err != nil {
		return err
	}
	env.Setenv("EXAMPLES", examples)
	return nil
}

// daemons tracks the ckd processes a script started, by node name.
type daemons map[string]*ckdProc

type daemonsKey struct{}

func daemonTable(ts *testscript.TestScript) daemons {
	return ts.Value(daemonsKey{}).(daemons)
}

// cmdStart: ckd-start NAME [ckd flags...] starts ckd with data dir
// $WORK/NAME, socket $WORK/NAME.sock and log $WORK/NAME.log, waits until its
// API answers, and points CK_SOCKET at it. With !, ckd must fail to start.
func cmdStart(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 {
		ts.Fatalf("usage: ckd-start NAME [flags]")
	}
	name := args[0]
	cfg, flags := clusterConfig(ts, name, args[1:])
	p := &ckdProc{
		dir: ts.MkAbs("."), name: name, cfg: cfg, args: flags,
		data: ts.MkAbs(name), socket: ts.MkAbs(name + ".sock"), logf: ts.MkAbs(name + ".log"),
		wd: ts.MkAbs("."), env: scriptEnv(ts),
	}
	ts.Check(p.launch())
	ts.Defer(p.kill)
	if neg {
		// A refused start exits within 2 s (docs/PROTOCOL.md, Local API).
		if exited, _ := p.waitExited(3 * time.Second); !exited {
			ts.Fatalf("ckd %s kept running, but it should have refused to start", name)
		}
		return
	}
	daemonTable(ts)[name] = p
	ts.Setenv("CK_SOCKET", p.sock())
	if err := p.awaitUp(); err != nil {
		ts.Fatalf("ckd %s: %v\nlog:\n%s", name, err, p.log())
	}
}

// clusterConfig keeps every daemon a script starts in the script's own
// cluster (a random name and port), so that scripts running in parallel
// never join each other's clusters. Without -config it writes NAME.hcl with
// just that; with -config FILE it expands ${CK_CLUSTER} and ${CK_PORT} in
// FILE into NAME.hcl. It returns that file and the other flags.
func clusterConfig(ts *testscript.TestScript, name string, flags []string) (string, []string) {
	out := ts.MkAbs(name + ".hcl")
	src := "cluster {\n  name = \"${CK_CLUSTER}\"\n  port = ${CK_PORT}\n}\n"
	flags = slices.Clone(flags)
	if at := slices.Index(flags, "-config"); at >= 0 && at+1 < len(flags) {
		src = ts.ReadFile(flags[at+1])
		flags = slices.Delete(flags, at, at+2)
	}
	expanded := os.Expand(src, func(v string) string {
		if v == "CK_CLUSTER" || v == "CK_PORT" {
			return ts.Getenv(v)
		}
		return "$" + v
	})
	ts.Check(os.WriteFile(out, []byte(expanded), 0o644))
	return out, flags
}

// cmdStop: ckd-stop NAME [TERM|INT|KILL] stops a daemon and waits for it;
// after TERM or INT (the default is TERM) it must have exited 0.
func cmdStop(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: ckd-stop NAME [TERM|INT|KILL]")
	}
	p := daemonTable(ts)[args[0]]
	if p == nil {
		ts.Fatalf("no daemon %q", args[0])
	}
	sigs := map[string]syscall.Signal{"TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "KILL": syscall.SIGKILL}
	sig := syscall.SIGTERM
	if len(args) == 2 {
		var ok bool
		if sig, ok = sigs[args[1]]; !ok {
			ts.Fatalf("unknown signal %q", args[1])
		}
	}
	err := p.stop(sig)
	if sig != syscall.SIGKILL && err != nil && !neg {
		ts.Fatalf("ckd %s exited with %v\nlog:\n%s", args[0], err, ts.ReadFile(args[0]+".log"))
	}
	delete(daemonTable(ts), args[0])
}

// cmdExits: exits N PROG [ARGS...] runs PROG like exec and checks that it
// exits with status N; stdout and stderr are kept for the checks after it.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || neg {
		ts.Fatalf("usage: exits STATUS PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("%s: %v", args[1], err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("%s exited with status %d, want %d", args[1], got, want)
	}
}

// cmdCapture: capture VAR REGEXP sets $VAR to the first submatch of REGEXP
// in the last command's stdout, for values a script must reuse (versions).
func cmdCapture(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: capture VAR REGEXP")
	}
	m := regexp.MustCompile(args[1]).FindStringSubmatch(ts.ReadFile("stdout"))
	if len(m) < 2 {
		ts.Fatalf("capture: %q not in stdout", args[1])
	}
	ts.Setenv(args[0], m[1])
}

// cmdWaitFor: waitfor FILE REGEXP polls until FILE (written by a
// background command) matches REGEXP, for at most 10 seconds.
func cmdWaitFor(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: waitfor FILE REGEXP")
	}
	re := regexp.MustCompile(args[1])
	var b []byte
	if err := poll.For(10*time.Second, 20*time.Millisecond, func() error {
		b, _ = os.ReadFile(ts.MkAbs(args[0]))
		if !re.Match(b) {
			return fmt.Errorf("%s does not match %q", args[0], args[1])
		}
		return nil
	}); err != nil {
		ts.Fatalf("waitfor: %v; it holds:\n%s", err, b)
	}
}

// cmdBytes: bytes FILE writes every byte value 0..255 twice: a value that
// is not UTF-8 and holds NUL, CR and LF.
func cmdBytes(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: bytes FILE")
	}
	b := make([]byte, 512)
	for i := range b {
		b[i] = byte(i)
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), b, 0o644))
}

// cmdMembersAlive: members-alive NAME N waits (at most 15 s) until node
// NAME sees N members alive, itself included.
func cmdMembersAlive(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: members-alive NAME N")
	}
	want, err := strconv.Atoi(args[1])
	ts.Check(err)
	c := rpc.NewClient(ts.MkAbs(args[0] + ".sock"))
	defer c.Close()
	if err := poll.For(15*time.Second, 50*time.Millisecond, membersAlive(c, want)); err != nil {
		ts.Fatalf("%s: %v", args[0], err)
	}
}

// awaitAlive waits until every client's node sees want members alive.
func awaitAlive(t *testing.T, clients []*rpc.Client, want int) {
	t.Helper()
	for _, c := range clients {
		eventually(t, 20*time.Second, c.Socket(), membersAlive(c, want))
	}
}

// cmdAwaitValue: await-value NAME KEY VALUE polls node NAME (at most 15 s)
// until KEY holds VALUE there: for what arrives by replication or sync.
func cmdAwaitValue(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 || neg {
		ts.Fatalf("usage: await-value NAME KEY VALUE")
	}
	c := rpc.NewClient(ts.MkAbs(args[0] + ".sock"))
	defer c.Close()
	if err := poll.For(15*time.Second, 50*time.Millisecond, valueIs(c, args[1], args[2])); err != nil {
		ts.Fatalf("%s: %v", args[0], err)
	}
}

// cmdRSSBelow: rss-below NAME BYTES checks the daemon's peak resident
// memory since it started (VmHWM in /proc/PID/status), not just the
// current one, so a spike that came and went still counts.
func cmdRSSBelow(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: rss-below NAME BYTES")
	}
	limit, err := strconv.ParseInt(args[1], 10, 64)
	ts.Check(err)
	p := daemonTable(ts)[args[0]]
	if p == nil {
		ts.Fatalf("no daemon %q", args[0])
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid()))
	ts.Check(err)
	m := regexp.MustCompile(`(?m)^VmHWM:\s+(\d+) kB$`).FindSubmatch(status)
	if m == nil {
		ts.Fatalf("no VmHWM in /proc/%d/status", p.pid())
	}
	kb, err := strconv.ParseInt(string(m[1]), 10, 64)
	ts.Check(err)
	ts.Logf("%s: peak resident memory %d MiB", args[0], kb>>10)
	if kb<<10 >= limit {
		ts.Fatalf("%s: peak resident memory %d bytes, want below %d", args[0], kb<<10, limit)
	}
}

// cmdAwaitHealthy: await-healthy NAME waits (at most 15 s) until the node's
// /v1/health answers 200: it has finished bootstrapping.
func cmdAwaitHealthy(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 || neg {
		ts.Fatalf("usage: await-healthy NAME")
	}
	c := rpc.NewClient(ts.MkAbs(args[0] + ".sock"))
	defer c.Close()
	if err := poll.For(15*time.Second, 50*time.Millisecond, func() error {
		return c.Health(context.Background())
	}); err != nil {
		ts.Fatalf("%s not healthy: %v", args[0], err)
	}
}

// cmdAwaitState: await-state NAME PEER STATE waits (at most 15 s) until
// node NAME shows the member named PEER in STATE (quarantined, say).
func cmdAwaitState(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 || neg {
		ts.Fatalf("usage: await-state NAME PEER STATE")
	}
	c := rpc.NewClient(ts.MkAbs(args[0] + ".sock"))
	defer c.Close()
	if err := poll.For(15*time.Second, 50*time.Millisecond, memberIs(c, args[1], args[2])); err != nil {
		ts.Fatalf("%s: %v", args[0], err)
	}
}

// cmdAwaitMissing: await-missing NAME KEY polls node NAME (at most 15 s)
// until KEY is not found there: for a delete that arrives by replication.
func cmdAwaitMissing(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 || neg {
		ts.Fatalf("usage: await-missing NAME KEY")
	}
	c := rpc.NewClient(ts.MkAbs(args[0] + ".sock"))
	defer c.Close()
	if err := poll.For(15*time.Second, 50*time.Millisecond, func() error {
		_, _, _, err := c.GetRaw(context.Background(), args[1], false)
		if errors.Is(err, rpc.ErrNotFound) {
			return nil
		}
		return fmt.Errorf("%s is still there (err %v)", args[1], err)
	}); err != nil {
		ts.Fatalf("%s: %v", args[0], err)
	}
}

// cmdAwaitSame: await-same NAME NAME... polls the nodes (at most 15 s)
// until they all show the same key count and digest root: converged.
func cmdAwaitSame(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 || neg {
		ts.Fatalf("usage: await-same NAME NAME...")
	}
	if err := poll.For(15*time.Second, 50*time.Millisecond, func() error {
		var seen []string
		first, same := "", true
		for _, name := range args {
			c := rpc.NewClient(ts.MkAbs(name + ".sock"))
			st, err := c.Status(context.Background())
			c.Close()
			if err != nil {
				ts.Fatalf("%s: %v", name, err)
			}
			state := fmt.Sprintf("%d keys, root %s", st.Keys, st.DigestRoot)
			if first == "" {
				first = state
			}
			same = same && state == first
			seen = append(seen, name+": "+state)
		}
		if !same {
			return fmt.Errorf("not converged:\n%s", strings.Join(seen, "\n"))
		}
		return nil
	}); err != nil {
		ts.Fatalf("await-same: %v", err)
	}
}

// cmdRecords: records FILE PREFIX N writes N records PREFIX0001... with
// values v1... as JSON lines, for ckctl import (--as-new: as writes).
func cmdRecords(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 || neg {
		ts.Fatalf("usage: records FILE PREFIX N")
	}
	n, err := strconv.Atoi(args[2])
	ts.Check(err)
	var b strings.Builder
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "{\"key\":%q,\"value\":\"v%d\"}\n", fmt.Sprintf("%s%04d", args[1], i), i)
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), []byte(b.String()), 0o644))
}

// cmdFill: fill FILE N writes N bytes of a repeating pattern, for large values.
func cmdFill(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: fill FILE BYTES")
	}
	n, err := strconv.Atoi(args[1])
	ts.Check(err)
	b := make([]byte, n)
	for i := range b {
		b[i] = "0123456789abcdef"[i%16]
	}
	ts.Check(os.WriteFile(ts.MkAbs(args[0]), b, 0o644))
}

func scriptEnv(ts *testscript.TestScript) []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_RUNTIME_DIR", "CK_CLUSTER", "CK_PORT", "TMPDIR"} {
		env = append(env, k+"="+ts.Getenv(k))
	}
	return env
}
