package main

// One real ckd process, shared by the Go end-to-end tests and the
// testscript ckd-start/ckd-stop commands, and the one polling helper they
// all use. A test sets the fields that differ (config, node name, files,
// environment, a command prefix) and calls start; the cleanup kills only
// that process, by its pid.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/poll"

	"github.com/cloudknowledge/ck/rpc"
)

// ckdProc is one ckd a test starts, restartable on its data dir: start may
// be called again after stop or kill.
type ckdProc struct {
	dir    string // where its files live unless set below (default: a t.TempDir)
	name   string // -node-name, and the stem of its files; "" means ckd's own name, files ckd.*
	cfg    string // config file (default dir/NAME.hcl)
	hcl    string // config text, written to cfg at start (default, with no cfg: a cluster of its own)
	data   string // -data-dir (default dir/NAME, or dir/data without a name)
	socket string // -socket (default dir/NAME.sock)
	logf   string // stdout and stderr, appended (default dir/NAME.log)
	wd     string // its working directory (default the test's)

	args    []string                                    // more ckd flags
	env     []string                                    // the environment (default os.Environ()) ...
	moreEnv []string                                    // ... plus these
	prefix  []string                                    // a command that execs the rest: prlimit, setpriv
	command func(name string, args ...string) *exec.Cmd // builds the command (default exec.Command)
	timeout time.Duration                               // for the API to answer (default 15 s)
	// upOnSocket: start returns as soon as the socket exists (polled every
	// 2 ms), for tests that watch the start itself.
	upOnSocket bool

	cmd    *exec.Cmd
	exited chan error // receives Wait's result once; whoever takes it puts it back
	c      *rpc.Client
}

// stem is the base name of the node's files.
func (p *ckdProc) stem() string {
	if p.name == "" {
		return "ckd"
	}
	return p.name
}

func (p *ckdProc) sock() string {
	if p.socket == "" {
		p.socket = filepath.Join(p.dir, p.stem()+".sock")
	}
	return p.socket
}

func (p *ckdProc) logPath() string {
	if p.logf == "" {
		p.logf = filepath.Join(p.dir, p.stem()+".log")
	}
	return p.logf
}

// log is what the process wrote so far.
func (p *ckdProc) log() string {
	b, _ := os.ReadFile(p.logPath())
	return string(b)
}

func (p *ckdProc) pid() int { return p.cmd.Process.Pid }

// ownCluster is a config for a cluster of its own, a random name and
// port, so that tests running in parallel never join each other.
func ownCluster(prefix string) string {
	return fmt.Sprintf("cluster {\n  name = \"%s-%08x\"\n  port = %d\n}\n", prefix, rand.Uint32(), 20000+rand.IntN(40000))
}

// launch starts the process without waiting for its API; a goroutine
// waits for its exit.
func (p *ckdProc) launch() error {
	if p.cfg == "" || p.hcl != "" {
		if p.hcl == "" {
			p.hcl = ownCluster("e2e")
		}
		if p.cfg == "" {
			p.cfg = filepath.Join(p.dir, p.stem()+".hcl")
		}
		if err := os.WriteFile(p.cfg, []byte(p.hcl), 0o644); err != nil {
			return err
		}
	}
	if p.data == "" {
		p.data = filepath.Join(p.dir, p.name)
		if p.name == "" {
			p.data = filepath.Join(p.dir, "data")
		}
	}
	args := []string{"-config", p.cfg, "-data-dir", p.data, "-socket", p.sock()}
	if p.name != "" {
		args = append(args, "-node-name", p.name)
	}
	args = append(append(append([]string{}, p.prefix...), filepath.Join(binDir, "ckd")), append(args, p.args...)...)
	command := p.command
	if command == nil {
		command = exec.Command
	}
	cmd := command(args[0], args[1:]...)
	if p.env != nil {
		cmd.Env = append(cmd.Env, p.env...)
	} else if cmd.Env == nil {
		cmd.Env = os.Environ()
	}
	cmd.Env = append(cmd.Env, p.moreEnv...)
	cmd.Dir = p.wd
	logf, err := os.OpenFile(p.logPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logf.Close() }()
	p.cmd, p.exited = cmd, exited
	return nil
}

// awaitUp polls until the API answers, the process exits or the timeout
// passes. It asks for the status, not the health: a node serves reads and
// writes while it bootstraps (health answers 503 syncing for its first
// heartbeats), and tests check health themselves.
func (p *ckdProc) awaitUp() error {
	timeout := p.timeout
	if timeout == 0 {
		timeout = 15 * time.Second
	}
	c := rpc.NewClient(p.sock())
	defer c.Close()
	exitedErr := errors.New("exited")
	every := 20 * time.Millisecond
	if p.upOnSocket {
		every = 2 * time.Millisecond
	}
	err := poll.For(timeout, every, func() error {
		select {
		case err := <-p.exited:
			p.exited <- err
			return fmt.Errorf("%w during start: %v", exitedErr, err)
		default:
		}
		if p.upOnSocket {
			_, err := os.Stat(p.sock())
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err := c.Status(ctx)
		return err
	}, exitedErr)
	if err != nil {
		return fmt.Errorf("not up: %w", err)
	}
	return nil
}

// start launches ckd and waits until its API answers (it may still be
// bootstrapping); a ckd that exits first fails the test at once, with its
// log. The test's cleanup kills this process and closes p.c, a new client
// of its API.
func (p *ckdProc) start(t testing.TB) {
	t.Helper()
	if p.dir == "" {
		p.dir = t.TempDir()
	}
	if err := p.launch(); err != nil {
		t.Fatalf("ckd %s: %v", p.stem(), err)
	}
	p.killAtCleanup(t)
	if err := p.awaitUp(); err != nil {
		t.Fatalf("ckd %s: %v\nlog:\n%s", p.stem(), err, p.log())
	}
	c := rpc.NewClient(p.sock())
	p.c = c
	t.Cleanup(func() { c.Close() })
}

// client is a client of the API of the process last started.
func (p *ckdProc) client() *rpc.Client { return p.c }

// killAtCleanup kills the process now running, by its pid, when the test
// ends, and waits for it.
func (p *ckdProc) killAtCleanup(t testing.TB) {
	cmd, exited := p.cmd, p.exited
	t.Cleanup(func() { stopProcess(cmd, exited, syscall.SIGKILL) })
}

// stop sends sig and waits (at most 15 s, then kills it) for the exit; it
// returns the exit error (nil for status 0).
func (p *ckdProc) stop(sig syscall.Signal) error {
	return stopProcess(p.cmd, p.exited, sig)
}

// kill stops the process with SIGKILL and waits for it.
func (p *ckdProc) kill() { _ = p.stop(syscall.SIGKILL) }

// waitExited waits at most timeout for the process to exit on its own;
// it reports whether it did, and its exit error.
func (p *ckdProc) waitExited(timeout time.Duration) (exited bool, err error) {
	select {
	case err := <-p.exited:
		p.exited <- err
		return true, err
	case <-time.After(timeout):
		return false, nil
	}
}

func stopProcess(cmd *exec.Cmd, exited chan error, sig syscall.Signal) error {
	select {
	case err := <-exited: // already gone
		exited <- err
		return err
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case err := <-exited:
		exited <- err
		return err
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		err := <-exited
		exited <- err
		return fmt.Errorf("did not exit within 15s of %v", sig)
	}
}

// ckctlIn runs the real ckctl against the node, with stdin, and returns its
// output and exit status.
func (p *ckdProc) ckctlIn(t testing.TB, stdin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "ckctl"), append([]string{"--socket", p.sock()}, args...)...)
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("ckctl %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errb.String(), code
}

// ckctl is ckctlIn without stdin.
func (p *ckdProc) ckctl(t testing.TB, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	return p.ckctlIn(t, "", args...)
}

// mustCkctl runs ckctl with stdin, fails the test unless it exits 0, and
// returns its stdout.
func (p *ckdProc) mustCkctl(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	out, errOut, code := p.ckctlIn(t, stdin, args...)
	if code != 0 {
		t.Fatalf("ckctl %s on %s: exit status %d\n%s", strings.Join(args, " "), p.stem(), code, errOut)
	}
	return out
}

// eventually polls f (every 50 ms) until it returns nil and fails the test
// with what and f's last error if that takes longer than timeout.
func eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	if err := poll.For(timeout, 50*time.Millisecond, f); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// healthy is a condition for eventually: the node's /v1/health answers 200
// (it has bootstrapped).
func healthy(c *rpc.Client) func() error {
	return func() error { return c.Health(context.Background()) }
}

// shutdown stops the process with SIGTERM and fails the test unless it
// exits 0 within the bound of stop.
func (p *ckdProc) shutdown(t testing.TB) {
	t.Helper()
	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("ckd %s exited with %v", p.stem(), err)
	}
}

// valueIs is a condition for eventually: key holds want on the node.
func valueIs(c *rpc.Client, key, want string) func() error {
	return func() error {
		v, _, _, err := c.GetRaw(context.Background(), key, false)
		if err == nil && string(v) == want {
			return nil
		}
		return fmt.Errorf("%s = %.40q (%v), want %.40q", key, v, err, want)
	}
}

// memberIs is a condition for eventually: the node shows the member
// named name in state.
func memberIs(c *rpc.Client, name, state string) func() error {
	return func() error {
		ms, err := c.Members(context.Background())
		for _, m := range ms {
			if m.Name == name && m.State == state {
				return nil
			}
		}
		return fmt.Errorf("member %s is not %s: %+v (%v)", name, state, ms, err)
	}
}

// membersAlive is a condition for eventually: the node sees want members
// alive, itself included.
func membersAlive(c *rpc.Client, want int) func() error {
	return func() error {
		ms, err := c.Members(context.Background())
		alive := 0
		for _, m := range ms {
			if m.State == "alive" {
				alive++
			}
		}
		if err == nil && alive == want {
			return nil
		}
		return fmt.Errorf("%d members alive, want %d (err %v): %+v", alive, want, err, ms)
	}
}
