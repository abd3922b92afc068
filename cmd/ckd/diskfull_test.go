//go:build linux

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/tmpfs"
	"github.com/cloudknowledge/ck/rpc"
)

// TestDiskFullEndToEnd runs a real ckd on a tmpfs filled to the last byte:
// health says disk_full, writes that grow the store are refused with 507,
// deletes succeed and make room for writes again; killed with kill -9 on
// the full disk, ckd restarts and serves every acknowledged write; once
// space is freed, health recovers.
func TestDiskFullEndToEnd(t *testing.T) {
	t.Parallel() // see parallelism in harness_test.go
	if testing.Short() {
		t.Skip("starts and kills a real daemon; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs for the data dir (the test fills a file system to the last byte)")
	}
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	// The log's ring (32 MiB) and the space reserve (32 MiB) are
	// allocated at start; the reserve is allocated again once twice its
	// size is free.
	tmpfs.Mount(t, data, "160m")
	p := &ckdProc{dir: dir, hcl: ownCluster("disk")}
	p.start(t)
	sock := p.sock()
	c := rpc.NewClient(sock)
	ctx := t.Context()
	acked := map[string]ack{}
	put := func(key string, value []byte) error {
		rec, err := c.Put(ctx, key, value, rpc.WriteOptions{})
		if err == nil {
			acked[key] = ack{string(value), rec.Version}
		}
		return err
	}
	value := func(key string, n int) []byte { return []byte(key + strings.Repeat(".", n-len(key))) }
	const size = 512 << 10
	for i := range 8 {
		k := fmt.Sprintf("old/%d", i)
		if err := put(k, value(k, size)); err != nil {
			t.Fatal(err)
		}
	}
	filler := filepath.Join(data, "filler")
	tmpfs.Fill(t, filler)

	// Writes that grow the store: accepted while the reserve lasts, then
	// refused with disk_full.
	var refused error
	start := time.Now()
	for i := 0; i < 100 && refused == nil; i++ {
		k := fmt.Sprintf("new/%d", i)
		refused = put(k, value(k, size))
	}
	if !errors.Is(refused, rpc.ErrDiskFull) {
		t.Fatalf("write on a full disk: %v, want disk_full", refused)
	}
	t.Logf("refused after %s", time.Since(start))
	awaitDiskHealth(t, c, true)
	if code, body := healthStatus(t, sock); code != http.StatusServiceUnavailable || !strings.Contains(body, `"disk_full"`) {
		t.Fatalf("GET /v1/health on a full disk: %d %s", code, body)
	}
	if out, err := exec.Command(filepath.Join(binDir, "ckctl"), "-socket", sock, "status").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "disk:") || strings.Contains(string(out), "disk:        ok") {
		t.Fatalf("ckctl status on a full disk (%v):\n%s", err, out)
	}

	// Deletes and smaller overwrites succeed, and free space for writes.
	for i := range 4 {
		k := fmt.Sprintf("old/%d", i)
		if _, err := c.Delete(ctx, k, rpc.WriteOptions{}); err != nil {
			t.Fatalf("delete on a full disk: %v", err)
		}
		delete(acked, k)
	}
	if err := put("old/4", []byte("small")); err != nil {
		t.Fatalf("smaller overwrite on a full disk: %v", err)
	}
	eventually(t, 20*time.Second, "a write after deletes", func() error { return put("after/deletes", value("after/deletes", size)) })
	t.Logf("write after deletes at %s", time.Since(start))

	// kill -9 on the full disk; the restart replays the log without space.
	p.kill()
	p.start(t)
	checkAcked(t, c, acked)
	for i := range 4 {
		if _, _, err := c.Get(ctx, fmt.Sprintf("old/%d", i), rpc.GetOptions{}); !errors.Is(err, rpc.ErrNotFound) {
			t.Fatalf("deleted old/%d after the restart: %v", i, err)
		}
	}
	awaitDiskHealth(t, c, true)
	t.Logf("restarted at %s", time.Since(start))

	// Space returns: health recovers and writes are accepted again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	awaitDiskHealth(t, c, false)
	t.Logf("healthy at %s", time.Since(start))
	if err := put("after/filler", value("after/filler", size)); err != nil {
		t.Fatal(err)
	}
	checkAcked(t, c, acked)
	if err := p.stop(syscall.SIGTERM); err != nil {
		t.Fatalf("ckd stop: %v", err)
	}
}

// awaitDiskHealth waits until health answers 503 disk_full (full) or 200.
func awaitDiskHealth(t *testing.T, c *rpc.Client, full bool) {
	t.Helper()
	eventually(t, 20*time.Second, fmt.Sprintf("health with disk full %v", full), func() error {
		err := c.Health(t.Context())
		switch {
		case full && errors.Is(err, rpc.ErrDiskFull), !full && err == nil:
			return nil
		case err == nil:
			return errors.New("200 ok")
		}
		return err
	})
}

// healthStatus returns GET /v1/health's status code and body.
func healthStatus(t *testing.T, sock string) (int, string) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}}
	resp, err := hc.Get("http://ckd/v1/health")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
