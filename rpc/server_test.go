package rpc_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/cloudknowledge/ck/internal/rpctest"
	"github.com/cloudknowledge/ck/rpc"
)

// raw is a plain HTTP client of a socket, to see exactly what the server
// answers, as curl --unix-socket would.
type raw struct {
	t  *testing.T
	hc *http.Client
}

func newRaw(t *testing.T, socket string) *raw {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return &raw{t: t, hc: &http.Client{Transport: tr}}
}

// do sends target (an escaped path and query) verbatim.
func (r *raw) do(method, target, body string) (*http.Response, string) {
	r.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://ckd"+target, rd)
	if err != nil {
		r.t.Fatal(err)
	}
	resp, err := r.hc.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	return resp, string(b)
}

// seed fills a backend with the records the route tests read.
func seed(t *testing.T, b *rpctest.Backend) {
	t.Helper()
	ctx := context.Background()
	for _, kv := range [][2]string{{"app/a", "1"}, {"app/b", "2"}, {"app/c", "3"}, {"other", "x"}, {"bin", "\xff\x00\xfe"}} {
		if _, err := b.Put(ctx, kv[0], []byte(kv[1]), rpc.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

type routeCase struct {
	name         string
	setup        func(b *rpctest.Backend)
	method       string
	target       string
	body         string
	status       int
	code         string            // for errors
	headers      map[string]string // exact values; "" means absent
	bodyContains []string
	check        func(t *testing.T, b *rpctest.Backend, body string)
}

func TestRoutes(t *testing.T) {
	rejectHook := func(b *rpctest.Backend) {
		b.Hook = func(key string, v []byte) ([]byte, error) {
			if strings.HasPrefix(key, "hook/") {
				return nil, rpc.Errorf(rpc.ErrHookRejected, "rejected by hook hook/*: no")
			}
			return v, nil
		}
	}
	absent := func(key string) func(t *testing.T, b *rpctest.Backend, body string) {
		return func(t *testing.T, b *rpctest.Backend, body string) {
			if r, ok := b.Record(key); ok && !r.Deleted {
				t.Errorf("%s was stored: %+v", key, r)
			}
		}
	}
	tests := []routeCase{
		{name: "get json", method: "GET", target: "/v1/kv/app/a", status: 200,
			headers:      map[string]string{"Content-Type": "application/json", "Ck-Version": "1", "Ck-Answered": "", "Ck-Syncing": ""},
			bodyContains: []string{`"key":"app/a"`, `"value":"1"`, `"version":1`, `"vv":{`, `"deleted":false`}},
		{name: "get raw", method: "GET", target: "/v1/kv/bin?raw", status: 200,
			headers: map[string]string{"Content-Type": "application/octet-stream", "Ck-Version": "5"},
			check: func(t *testing.T, _ *rpctest.Backend, body string) {
				if body != "\xff\x00\xfe" {
					t.Errorf("raw body = %q", body)
				}
			}},
		{name: "get base64", method: "GET", target: "/v1/kv/bin", status: 200,
			bodyContains: []string{`"value":"/wD+"`, `"encoding":"base64"`}},
		{name: "get fresh", method: "GET", target: "/v1/kv/app/a?fresh", status: 200,
			setup:        func(b *rpctest.Backend) { b.Peers = 2 },
			headers:      map[string]string{"Ck-Answered": "3", "Ck-Alive": "3", "Ck-Asked": "3"},
			bodyContains: []string{`"answered":3`, `"alive":3`, `"asked":3`}},
		{name: "get syncing", method: "GET", target: "/v1/kv/app/a", status: 200,
			setup: func(b *rpctest.Backend) { b.Syncing = true }, headers: map[string]string{"Ck-Syncing": "true"}},
		{name: "get missing", method: "GET", target: "/v1/kv/nope", status: 404, code: "not_found",
			headers: map[string]string{"Content-Type": "application/json", "Ck-Version": ""}},
		{name: "get missing raw", method: "GET", target: "/v1/kv/nope?raw", status: 404, code: "not_found"},
		{name: "get missing syncing", method: "GET", target: "/v1/kv/nope?raw", status: 404, code: "not_found",
			setup: func(b *rpctest.Backend) { b.Syncing = true }, headers: map[string]string{"Ck-Syncing": "true"}},
		{name: "dotdot reaches backend", method: "GET", target: "/v1/kv/a/../b", status: 400, code: "bad_request",
			bodyContains: []string{`a/../b`}},
		{name: "double slash reaches backend", method: "GET", target: "/v1/kv/a//b", status: 400, code: "bad_request",
			bodyContains: []string{`a//b`}},
		{name: "escaped slash is part of key", method: "PUT", target: "/v1/kv/a%2Fb", body: "v", status: 200,
			bodyContains: []string{`"key":"a/b"`}},
		{name: "empty key", method: "GET", target: "/v1/kv/", status: 400, code: "bad_request"},
		{name: "put", method: "PUT", target: "/v1/kv/new/k", body: "hello", status: 200,
			bodyContains: []string{`"key":"new/k"`, `"value":"hello"`, `"version":6`},
			check: func(t *testing.T, b *rpctest.Backend, _ string) {
				if r, _ := b.Record("new/k"); string(r.Value) != "hello" {
					t.Errorf("stored %q", r.Value)
				}
			}},
		{name: "put empty", method: "PUT", target: "/v1/kv/empty", status: 200, bodyContains: []string{`"value":""`}},
		{name: "put if_version ok", method: "PUT", target: "/v1/kv/app/a?if_version=1", body: "n", status: 200},
		{name: "put if_version 0 absent", method: "PUT", target: "/v1/kv/fresh?if_version=0", body: "n", status: 200},
		{name: "put if_version mismatch", method: "PUT", target: "/v1/kv/app/a?if_version=7", body: "n", status: 409, code: "version_mismatch"},
		{name: "put bad if_version", method: "PUT", target: "/v1/kv/k?if_version=abc", body: "n", status: 400, code: "bad_request",
			bodyContains: []string{"if_version"}, check: absent("k")},
		{name: "put bad wait", method: "PUT", target: "/v1/kv/k?wait=x", body: "n", status: 400, code: "bad_request", bodyContains: []string{"wait"}},
		{name: "put negative wait", method: "PUT", target: "/v1/kv/k?wait=-1", body: "n", status: 400, code: "bad_request", bodyContains: []string{"wait"}},
		{name: "put bad timeout", method: "PUT", target: "/v1/kv/k?timeout=soon", body: "n", status: 400, code: "bad_request", bodyContains: []string{"timeout"}},
		{name: "put bad query", method: "PUT", target: "/v1/kv/k?a=%zz", body: "n", status: 400, code: "bad_request"},
		{name: "put wait ok", method: "PUT", target: "/v1/kv/k?wait=2&timeout=1s", body: "n", status: 200,
			setup: func(b *rpctest.Backend) { b.Peers = 2 }},
		{name: "put wait shortfall", method: "PUT", target: "/v1/kv/k?wait=3", body: "n", status: 504, code: "wait_timeout",
			setup: func(b *rpctest.Backend) { b.Peers = 1 }, bodyContains: []string{`"acked":1`, `"wanted":3`}},
		{name: "put hook rejected", method: "PUT", target: "/v1/kv/hook/x", body: "n", status: 422, code: "hook_rejected",
			setup: rejectHook, bodyContains: []string{"no"}, check: absent("hook/x")},
		{name: "put hook error", method: "PUT", target: "/v1/kv/k", body: "n", status: 500, code: "hook_error",
			setup: func(b *rpctest.Backend) {
				b.Hook = func(string, []byte) ([]byte, error) { return nil, rpc.ErrHookError }
			}},
		{name: "put disk full", method: "PUT", target: "/v1/kv/k", body: "n", status: 507, code: "disk_full",
			setup: func(b *rpctest.Backend) { b.WriteErr = rpc.ErrDiskFull }},
		{name: "put shutting down", method: "PUT", target: "/v1/kv/k", body: "n", status: 503, code: "shutting_down",
			setup: func(b *rpctest.Backend) { b.WriteErr = rpc.ErrShuttingDown }},
		{name: "put internal", method: "PUT", target: "/v1/kv/k", body: "n", status: 500, code: "internal",
			setup: func(b *rpctest.Backend) { b.WriteErr = io.ErrClosedPipe }},
		{name: "put too large", method: "PUT", target: "/v1/kv/big", body: strings.Repeat("x", 1025), status: 413, code: "too_large",
			check: absent("big")},
		{name: "put at limit", method: "PUT", target: "/v1/kv/big", body: strings.Repeat("x", 1024), status: 200},
		{name: "put bad key", method: "PUT", target: "/v1/kv/a/./b", body: "n", status: 400, code: "bad_request"},
		{name: "delete", method: "DELETE", target: "/v1/kv/app/a", status: 200, bodyContains: []string{`"deleted":true`},
			check: func(t *testing.T, b *rpctest.Backend, _ string) {
				if r, _ := b.Record("app/a"); !r.Deleted {
					t.Error("not deleted")
				}
			}},
		{name: "delete missing", method: "DELETE", target: "/v1/kv/nope", status: 200},
		{name: "delete if_version mismatch", method: "DELETE", target: "/v1/kv/app/a?if_version=3", status: 409, code: "version_mismatch"},
		{name: "delete bad wait", method: "DELETE", target: "/v1/kv/app/a?wait=many", status: 400, bodyContains: []string{"wait"}},
		{name: "list", method: "GET", target: "/v1/kv?prefix=app/", status: 200,
			bodyContains: []string{`"key":"app/a"`, `"key":"app/c"`, `"next":""`},
			check: func(t *testing.T, _ *rpctest.Backend, body string) {
				if strings.Contains(body, `"value":"1"`) || strings.Contains(body, "other") {
					t.Errorf("values or other keys listed: %s", body)
				}
			}},
		{name: "list values", method: "GET", target: "/v1/kv?prefix=app/&values", status: 200, bodyContains: []string{`"value":"1"`}},
		{name: "list page", method: "GET", target: "/v1/kv?limit=2&after=app/a", status: 200,
			bodyContains: []string{`"key":"app/b"`, `"key":"app/c"`, `"next":"app/c"`}},
		{name: "list empty", method: "GET", target: "/v1/kv?prefix=zzz", status: 200, bodyContains: []string{`"items":[]`},
			headers: map[string]string{"Ck-Syncing": ""}},
		{name: "list syncing", method: "GET", target: "/v1/kv?prefix=app/", status: 200, bodyContains: []string{`"key":"app/a"`},
			setup: func(b *rpctest.Backend) { b.Syncing = true }, headers: map[string]string{"Ck-Syncing": "true"}},
		{name: "export syncing", method: "GET", target: "/v1/export?prefix=app/", status: 200, bodyContains: []string{`"key":"app/a"`},
			setup: func(b *rpctest.Backend) { b.Syncing = true }, headers: map[string]string{"Ck-Syncing": "true"}},
		{name: "list bad limit", method: "GET", target: "/v1/kv?limit=lots", status: 400, code: "bad_request", bodyContains: []string{"limit"}},
		{name: "members", method: "GET", target: "/v1/members", status: 200,
			bodyContains: []string{`"id":"` + rpctest.SelfID, `"self":true`, `"last_heard_ms":`}},
		{name: "status", method: "GET", target: "/v1/status", status: 200,
			bodyContains: []string{`"id":"` + rpctest.SelfID, `"digest_root":`, `"sync":{"state":"synced"}`}},
		{name: "health", method: "GET", target: "/v1/health", status: 200, bodyContains: []string{`{"status":"ok"}`}},
		{name: "health syncing", method: "GET", target: "/v1/health", status: 503, code: "syncing",
			setup: func(b *rpctest.Backend) { b.HealthErr = rpc.ErrSyncing }},
		{name: "live", method: "GET", target: "/v1/health/live", status: 200, bodyContains: []string{`{"status":"ok"}`}},
		{name: "live while syncing", method: "GET", target: "/v1/health/live", status: 200, bodyContains: []string{`{"status":"ok"}`},
			setup: func(b *rpctest.Backend) { b.HealthErr = rpc.ErrSyncing }},
		{name: "live on a full disk", method: "GET", target: "/v1/health/live", status: 200,
			setup: func(b *rpctest.Backend) { b.HealthErr = diskFullHealth() }},
		{name: "ready", method: "GET", target: "/v1/health/ready", status: 200, bodyContains: []string{`{"status":"ok"}`}},
		{name: "ready syncing", method: "GET", target: "/v1/health/ready", status: 503, code: "syncing",
			setup: func(b *rpctest.Backend) { b.HealthErr = rpc.ErrSyncing }},
		{name: "ready on a full disk", method: "GET", target: "/v1/health/ready", status: 503, code: "disk_full",
			setup: func(b *rpctest.Backend) { b.HealthErr = diskFullHealth() }},
		{name: "ready shutting down", method: "GET", target: "/v1/health/ready", status: 503, code: "shutting_down",
			setup: func(b *rpctest.Backend) { b.HealthErr = rpc.ErrShuttingDown }},
		{name: "post live", method: "POST", target: "/v1/health/live", status: 405, headers: map[string]string{"Allow": "GET"}},
		{name: "metrics", method: "GET", target: "/v1/metrics", status: 200, bodyContains: []string{"ck_keys 5"}},
		{name: "reload", method: "POST", target: "/v1/reload", status: 200,
			check: func(t *testing.T, b *rpctest.Backend, _ string) {
				b.Lock()
				defer b.Unlock()
				if b.Reloads != 1 {
					t.Errorf("reloads = %d", b.Reloads)
				}
			}},
		{name: "reload error", method: "POST", target: "/v1/reload", status: 500, code: "hook_error",
			setup: func(b *rpctest.Backend) { b.ReloadErr = rpc.Errorf(rpc.ErrHookError, "hooks/x.lua:3: syntax") }},
		{name: "unknown path", method: "GET", target: "/v1/nope", status: 404, code: "unknown_path"},
		{name: "root", method: "GET", target: "/", status: 404, code: "unknown_path"},
		{name: "kv needs v1", method: "GET", target: "/v2/kv/app/a", status: 404, code: "unknown_path"},
		{name: "trailing slash", method: "GET", target: "/v1/status/", status: 404, code: "unknown_path"},
		{name: "post key", method: "POST", target: "/v1/kv/app/a", status: 405, code: "method_not_allowed",
			headers: map[string]string{"Allow": "GET, PUT, DELETE"}},
		{name: "put list", method: "PUT", target: "/v1/kv", status: 405, code: "method_not_allowed", headers: map[string]string{"Allow": "GET"}},
		{name: "get reload", method: "GET", target: "/v1/reload", status: 405, code: "method_not_allowed", headers: map[string]string{"Allow": "POST"}},
		{name: "get import", method: "GET", target: "/v1/import", status: 405, headers: map[string]string{"Allow": "POST"}},
		{name: "post watch", method: "POST", target: "/v1/watch", status: 405, headers: map[string]string{"Allow": "GET"}},
		{name: "watch bad since", method: "GET", target: "/v1/watch?since=x", status: 400, code: "bad_request", bodyContains: []string{"since"}},
		{name: "watch compacted", method: "GET", target: "/v1/watch?since=1", status: 410, code: "compacted",
			setup: func(b *rpctest.Backend) { b.CompactedBelow = 4 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := rpctest.NewBackend()
			seed(t, b)
			if tt.setup != nil {
				tt.setup(b)
			}
			s := rpctest.Start(t, b, rpc.ServerOptions{MaxValueSize: 1024})
			resp, body := newRaw(t, s.Socket).do(tt.method, tt.target, tt.body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status = %d, want %d; body %s", resp.StatusCode, tt.status, body)
			}
			if tt.code != "" || tt.status >= 400 {
				var e struct{ Error, Code string }
				if err := json.Unmarshal([]byte(body), &e); err != nil || e.Error == "" {
					t.Fatalf("error body %q: %v", body, err)
				}
				if tt.code != "" && e.Code != tt.code {
					t.Errorf("code = %q, want %q", e.Code, tt.code)
				}
				if !strings.HasPrefix(body, `{"error":`) {
					t.Errorf("error body does not start with error: %s", body)
				}
			}
			for k, want := range tt.headers {
				if got := resp.Header.Get(k); got != want {
					t.Errorf("header %s = %q, want %q", k, got, want)
				}
			}
			for _, want := range tt.bodyContains {
				if !strings.Contains(body, want) {
					t.Errorf("body lacks %q: %s", want, body)
				}
			}
			if tt.check != nil {
				tt.check(t, b, body)
			}
		})
	}
}

// A body of unknown length (chunked) is cut at the limit, not read whole.
func TestPutChunkedTooLarge(t *testing.T) {
	b := rpctest.NewBackend()
	s := rpctest.Start(t, b, rpc.ServerOptions{MaxValueSize: 1024})
	r := newRaw(t, s.Socket)
	for _, tc := range []struct {
		n      int
		status int
	}{{1024, 200}, {1025, 413}, {1 << 20, 413}} {
		body := io.MultiReader(strings.NewReader(strings.Repeat("x", tc.n))) // hides the length
		req, _ := http.NewRequest("PUT", "http://ckd/v1/kv/chunked", body)
		resp, err := r.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%d bytes: status %d, want %d", tc.n, resp.StatusCode, tc.status)
		}
		if rec, _ := b.Record("chunked"); tc.status == 413 && len(rec.Value) != 1024 {
			t.Errorf("%d bytes: stored %d bytes", tc.n, len(rec.Value))
		}
	}
}

// Handler serves without a socket, and every request is logged at debug.
func TestHandlerLogs(t *testing.T) {
	var logs bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Debug})
	srv := rpc.NewServer(rpctest.NewBackend(), log, rpc.ServerOptions{})
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/v1/kv/some%20key", nil))
	if rec.Code != 404 {
		t.Errorf("status %d", rec.Code)
	}
	for _, want := range []string{"[DEBUG]", "request", "method=GET", `path="/v1/kv/some%20key"`, "status=404"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q: %s", want, logs.String())
		}
	}
}

// Above debug level the request log is skipped (it costs allocations on
// every request), and the answer is the same.
func TestHandlerQuietAboveDebug(t *testing.T) {
	var logs bytes.Buffer
	log := hclog.New(&hclog.LoggerOptions{Output: &logs, Level: hclog.Info})
	srv := rpc.NewServer(rpctest.NewBackend(), log, rpc.ServerOptions{})
	rec := httptest.NewRecorder()
	srv.Handler().ServeHTTP(rec, httptest.NewRequest("PUT", "/v1/kv/k", strings.NewReader("v")))
	if rec.Code != 200 || !strings.HasPrefix(rec.Body.String(), `{"key":"k","value":"v",`) || rec.Header().Get("Content-Type") != "application/json" {
		t.Errorf("status %d, %s, %v", rec.Code, rec.Body.String(), rec.Header())
	}
	if logs.Len() != 0 {
		t.Errorf("logged at info level: %s", logs.String())
	}
}
