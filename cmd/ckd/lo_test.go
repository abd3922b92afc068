package main

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
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/rpc"
)

// Helpers of the Go end-to-end tests that run several real ckd on lo
// multicast, in a cluster of the test's own (a random name and port), and
// drive them through rpc clients and the real ckctl.

// loNode is one ckd of such a test.
type loNode struct {
	name, dir, cfg string
	cmd            *exec.Cmd
	exited         chan error
	c              *rpc.Client
}

// loConfig writes a config file for a cluster of the test's own, with
// extra HCL after the cluster block (hooks, say), and returns its path.
func loConfig(t *testing.T, dir, extra string) string {
	t.Helper()
	cfg := filepath.Join(dir, "ckd.hcl")
	hcl := fmt.Sprintf("cluster {\n  name = \"lo-%08x\"\n  port = %d\n}\n%s", rand.Uint32(), 20000+rand.IntN(40000), extra)
	if err := os.WriteFile(cfg, []byte(hcl), 0o644); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// startLo starts ckd NAME with the config and waits until its API answers
// (it may still be bootstrapping). The test's cleanup kills it.
func startLo(t *testing.T, dir, cfg, name string) *loNode {
	t.Helper()
	n := &loNode{name: name, dir: dir, cfg: cfg}
	n.cmd = exec.Command(filepath.Join(binDir, "ckd"), "-config", cfg, "-node-name", name,
		"-data-dir", filepath.Join(dir, name), "-socket", n.sock())
	logf, err := os.OpenFile(filepath.Join(dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	n.cmd.Stdout, n.cmd.Stderr = logf, logf
	if err := n.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	n.exited = exited
	cmd := n.cmd
	go func() { exited <- cmd.Wait(); logf.Close() }()
	t.Cleanup(func() { cmd.Process.Kill(); err := <-exited; exited <- err })
	if err := awaitHealthy(n.sock(), exited, 15*time.Second); err != nil {
		t.Fatalf("ckd %s: %v\n%s", name, err, n.log())
	}
	n.c = rpc.NewClient(n.sock())
	t.Cleanup(func() { n.c.Close() })
	return n
}

func (n *loNode) sock() string { return filepath.Join(n.dir, n.name+".sock") }

func (n *loNode) log() string {
	b, _ := os.ReadFile(filepath.Join(n.dir, n.name+".log"))
	return string(b)
}

// ckctl runs the real ckctl against the node and returns its output and
// exit status.
func (n *loNode) ckctl(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binDir, "ckctl"), append([]string{"--socket", n.sock()}, args...)...)
	cmd.Env = append(os.Environ(), "GORACE=atexit_sleep_ms=0")
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

// fillKeys writes keys prefix0..prefix(n-1), value "v<i>", from 32
// concurrent clients (their writes share commits): a node holding many
// keys, written as users would.
func fillKeys(t *testing.T, sock, prefix string, n int) {
	t.Helper()
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := rpc.NewClient(sock)
			defer c.Close()
			for i := next.Add(1) - 1; i < int64(n); i = next.Add(1) - 1 {
				if _, err := c.Put(context.Background(), fmt.Sprintf("%s%d", prefix, i), fmt.Appendf(nil, "v%d", i), rpc.WriteOptions{}); err != nil {
					failed.CompareAndSwap(nil, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		t.Fatalf("filling %s: %v", sock, err)
	}
}
