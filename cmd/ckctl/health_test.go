package main

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudknowledge/ck/internal/rpctest"
	"github.com/cloudknowledge/ck/rpc"
)

// TestHealth: ckctl health's output and exit status for each check, on a
// node that is healthy, bootstrapping, on a full disk, and unreachable.
func TestHealth(t *testing.T) {
	diskFull := rpc.Errorf(rpc.ErrDiskFull, "disk full: flushes fail")
	diskFull.Status = http.StatusServiceUnavailable
	tests := []struct {
		name        string
		healthErr   error
		args        []string
		code        int
		stdout      string
		stderrHas   string
		unreachable bool
	}{
		{"healthy", nil, nil, 0, "ok\n", "", false},
		{"healthy ready", nil, []string{"--ready"}, 0, "ok\n", "", false},
		{"healthy live", nil, []string{"--live"}, 0, "ok\n", "", false},
		{"healthy json", nil, []string{"-o", "json"}, 0, "{\n  \"status\": \"ok\"\n}\n", "", false},
		{"syncing", rpc.ErrSyncing, nil, 1, "", "not ready: the node is still bootstrapping (syncing)", false},
		{"syncing ready", rpc.ErrSyncing, []string{"--ready"}, 1, "", "(syncing)", false},
		{"syncing live", rpc.ErrSyncing, []string{"--live"}, 0, "ok\n", "", false},
		{"syncing json", rpc.ErrSyncing, []string{"--ready", "-o", "json"}, 1,
			"{\n  \"error\": \"the node is still bootstrapping\",\n  \"code\": \"syncing\"\n}\n", "(syncing)", false},
		{"disk full", diskFull, nil, 1, "", "not ready: disk full: flushes fail (disk_full)", false},
		{"disk full live", diskFull, []string{"--live"}, 0, "ok\n", "", false},
		{"shutting down", rpc.ErrShuttingDown, []string{"--ready"}, 1, "", "(shutting_down)", false},
		{"both flags", nil, []string{"--live", "--ready"}, 2, "", "exclude each other", false},
		{"unreachable", nil, nil, 7, "", "cannot reach ckd", true},
		{"unreachable live", nil, []string{"--live"}, 7, "", "cannot reach ckd", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			socket := filepath.Join(t.TempDir(), "absent.sock")
			if !tt.unreachable {
				b := rpctest.NewBackend()
				b.HealthErr = tt.healthErr
				socket = rpctest.Start(t, b, rpc.ServerOptions{}).Socket
			}
			r := ckctlIn(t, "", append([]string{"--socket", socket, "health"}, tt.args...)...)
			r.want(t, tt.code, tt.stdout)
			if !strings.Contains(r.stderr, tt.stderrHas) || tt.stderrHas == "" && r.stderr != "" {
				t.Errorf("stderr %q, want it to hold %q", r.stderr, tt.stderrHas)
			}
		})
	}
}
