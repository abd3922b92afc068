package daemon

import (
	"fmt"
	"math/rand/v2"
	"net"
	"path/filepath"
	"testing"
	"time"
)

// TestNotifier: the sd_notify datagram reaches a socket named by a path
// and one in the abstract namespace ("@name"), byte for byte; forms ckd
// does not speak are refused, and no socket means no notifier.
func TestNotifier(t *testing.T) {
	abstract := fmt.Sprintf("@ck-notify-test-%08x", rand.Uint32())
	tests := []struct {
		name   string
		socket string // "" with listen: a path in a temp dir
		listen bool
	}{
		{"path", "", true},
		{"abstract", abstract, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			socket := tt.socket
			if socket == "" {
				socket = filepath.Join(t.TempDir(), "notify")
			}
			ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: socket, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			n, err := newNotifier(socket)
			if err != nil || n == nil {
				t.Fatalf("newNotifier(%q) = %v, %v", socket, n, err)
			}
			const msg = "READY=1\nSTATUS=serving"
			if err := n.send(msg); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 4096)
			ln.SetReadDeadline(time.Now().Add(5 * time.Second))
			k, err := ln.Read(buf)
			if err != nil || string(buf[:k]) != msg {
				t.Fatalf("received %q, %v; want %q", buf[:k], err, msg)
			}
		})
	}
	for _, socket := range []string{"relative/path", "vsock:2:1234", "@"} {
		if n, err := newNotifier(socket); err == nil || n != nil {
			t.Errorf("newNotifier(%q) = %v, %v; want an error", socket, n, err)
		}
	}
	if n, err := newNotifier(""); err != nil || n != nil {
		t.Errorf("newNotifier(\"\") = %v, %v; want nil, nil", n, err)
	}
	// A manager that is gone: the send fails, it does not block.
	n, _ := newNotifier(filepath.Join(t.TempDir(), "gone"))
	if err := n.send("READY=1"); err == nil {
		t.Error("send to a missing socket succeeded")
	}
}
