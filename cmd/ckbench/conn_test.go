package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloudknowledge/ck/rpc"
)

// serve answers on a Unix socket with h.
func serve(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return sock
}

// The raw client reads every form of answer whole and keeps or drops the
// connection as told.
func TestRawConn(t *testing.T) {
	sock := serve(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.EscapedPath() {
		case "/v1/kv/chunked":
			w.Write([]byte("part one, "))
			w.(http.Flusher).Flush() // forces chunked encoding
			w.Write([]byte("part two"))
		case "/v1/kv/close":
			w.Header().Set("Connection", "close")
			w.Write([]byte("bye"))
		case "/v1/kv/missing":
			http.Error(w, `{"error":"key not found","code":"not_found"}`, http.StatusNotFound)
		case "/v1/kv/a%20b/c":
			if r.URL.RawQuery != "raw" {
				http.Error(w, "query "+r.URL.RawQuery, http.StatusBadRequest)
			}
		default:
			if r.Method == http.MethodPut && r.ContentLength != 5 {
				http.Error(w, "length", http.StatusBadRequest)
			}
			w.Write([]byte(`{"key":"k"}`))
		}
	})
	cl := &rawConn{socket: sock}
	defer cl.close()
	ctx := context.Background()
	for _, key := range []string{"k", "chunked", "close", "k", "a b/c"} {
		if err := cl.get(ctx, key); err != nil {
			t.Fatalf("get %s: %v", key, err)
		}
	}
	if string(cl.body) != "" {
		t.Errorf("last body %q", cl.body)
	}
	if err := cl.get(ctx, "chunked"); err != nil || string(cl.body) != "part one, part two" {
		t.Fatalf("chunked: %q, %v", cl.body, err)
	}
	if err := cl.set(ctx, "k", []byte("value"), 0); err != nil {
		t.Fatal(err)
	}
	if err := cl.get(ctx, "missing"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("missing: %v", err)
	}
	if err := cl.get(ctx, "k"); err != nil { // a fresh connection after the error
		t.Fatal(err)
	}
}

func TestRawConnUnreachable(t *testing.T) {
	cl := &rawConn{socket: filepath.Join(t.TempDir(), "none.sock")}
	err := cl.get(context.Background(), "k")
	if !errors.Is(err, rpc.ErrUnreachable) {
		t.Fatalf("get: %v, want ErrUnreachable", err)
	}
}
