package rpctest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/rpc"
)

// Server is an rpc.Server answering with a Backend on a Unix socket.
type Server struct {
	Backend *Backend
	Socket  string
	Client  *rpc.Client
	Server  *rpc.Server
}

// Start serves b on a socket in a fresh short directory (socket paths are
// limited to about 100 bytes, which t.TempDir can exceed) and stops it
// when the test ends.
func Start(t testing.TB, b *Backend, opts rpc.ServerOptions) *Server {
	t.Helper()
	s := Serve(t, b, opts)
	s.Backend = b
	return s
}

// Serve is Start for any rpc.Backend; the result's Backend field is nil.
func Serve(t testing.TB, b rpc.Backend, opts rpc.ServerOptions) *Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "ckrpc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "ckd.sock")
	ln, err := rpc.Listen(sock, 0o600, "")
	if err != nil {
		t.Fatal(err)
	}
	srv := rpc.NewServer(b, nil, opts)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	c := rpc.NewClient(sock)
	t.Cleanup(func() {
		c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return &Server{Socket: sock, Client: c, Server: srv}
}
