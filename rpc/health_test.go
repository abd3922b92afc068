package rpc_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/cloudknowledge/ck/internal/rpctest"
	"github.com/cloudknowledge/ck/rpc"
)

// diskFullHealth is the daemon's health answer on a full disk: disk_full
// with status 503 (not a write's 507).
func diskFullHealth() error {
	e := rpc.Errorf(rpc.ErrDiskFull, "disk full")
	e.Status = http.StatusServiceUnavailable
	return e
}

// TestProbeHandler: what metrics_addr serves over TCP. Only the metrics
// and the health paths answer; every other path, the API's included, is
// 404 unknown_path; the health paths answer as on the socket.
func TestProbeHandler(t *testing.T) {
	tests := []struct {
		name, method, path string
		healthErr          error
		status             int
		code               string
		body               string
	}{
		{"metrics", "GET", "/metrics", nil, 200, "", "ck_keys 5"},
		{"health", "GET", "/v1/health", nil, 200, "", `{"status":"ok"}`},
		{"live", "GET", "/v1/health/live", nil, 200, "", `{"status":"ok"}`},
		{"ready", "GET", "/v1/health/ready", nil, 200, "", `{"status":"ok"}`},
		{"health syncing", "GET", "/v1/health", rpc.ErrSyncing, 503, "syncing", ""},
		{"live syncing", "GET", "/v1/health/live", rpc.ErrSyncing, 200, "", `{"status":"ok"}`},
		{"ready syncing", "GET", "/v1/health/ready", rpc.ErrSyncing, 503, "syncing", ""},
		{"ready disk full", "GET", "/v1/health/ready", diskFullHealth(), 503, "disk_full", ""},
		{"root", "GET", "/", nil, 404, "unknown_path", "/metrics"},
		{"metrics elsewhere", "GET", "/metrics/x", nil, 404, "unknown_path", ""},
		{"socket metrics path", "GET", "/v1/metrics", nil, 404, "unknown_path", ""},
		{"api", "GET", "/v1/kv/app/a", nil, 404, "unknown_path", ""},
		{"status", "GET", "/v1/status", nil, 404, "unknown_path", ""},
		{"post metrics", "POST", "/metrics", nil, 405, "method_not_allowed", ""},
		{"put ready", "PUT", "/v1/health/ready", nil, 405, "method_not_allowed", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := rpctest.NewBackend()
			seed(t, b)
			b.HealthErr = tt.healthErr
			srv := rpc.NewServer(b, nil, rpc.ServerOptions{})
			ts := httptest.NewServer(srv.ProbeHandler(b.Metrics()))
			t.Cleanup(ts.Close)
			req, err := http.NewRequest(tt.method, ts.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := ts.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("%s %s: status %d, want %d: %s", tt.method, tt.path, resp.StatusCode, tt.status, body)
			}
			if tt.code != "" {
				var e struct{ Error, Code string }
				if err := json.Unmarshal(body, &e); err != nil || e.Code != tt.code || e.Error == "" {
					t.Errorf("body %s (%v), want code %q", body, err, tt.code)
				}
			}
			if !strings.Contains(string(body), tt.body) {
				t.Errorf("body lacks %q: %s", tt.body, body)
			}
		})
	}
}

// TestClientLiveReady: the client's two checks, through a real socket.
func TestClientLiveReady(t *testing.T) {
	b := rpctest.NewBackend()
	s := rpctest.Start(t, b, rpc.ServerOptions{})
	c := rpc.NewClient(s.Socket)
	t.Cleanup(func() { c.Close() })
	ctx := context.Background()
	if err := c.Live(ctx); err != nil {
		t.Errorf("live: %v", err)
	}
	if err := c.Ready(ctx); err != nil {
		t.Errorf("ready: %v", err)
	}
	b.Lock()
	b.HealthErr = rpc.ErrSyncing
	b.Unlock()
	if err := c.Live(ctx); err != nil {
		t.Errorf("live while syncing: %v", err)
	}
	if err := c.Ready(ctx); !errors.Is(err, rpc.ErrSyncing) {
		t.Errorf("ready while syncing: %v, want syncing", err)
	}
}
