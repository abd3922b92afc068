package daemon

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudknowledge/ck/rpc"
)

// runTestDaemon runs a loopback node (its own cluster name and port) in
// this process until the test ends, and returns it with a client of its
// socket.
func runTestDaemon(tb testing.TB) (*Daemon, *rpc.Client) {
	tb.Helper()
	tb.Setenv("XDG_CONFIG_HOME", tb.TempDir())
	dir := tb.TempDir()
	cfg, err := ParseConfig(filepath.Join(dir, "ckd.hcl"), []byte(checkBase(dir, "||")))
	if err != nil {
		tb.Fatal(err)
	}
	d, err := New(cfg, Options{Logger: hclog.NewNullLogger()})
	if err != nil {
		tb.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	c := rpc.NewClient(cfg.Socket)
	tb.Cleanup(func() {
		c.Close()
		stop()
		if err := <-done; err != nil {
			tb.Errorf("run: %v", err)
		}
	})
	return d, c
}
