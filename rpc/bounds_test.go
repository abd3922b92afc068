package rpc_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/rpctest"
	"github.com/cloudknowledge/ck/rpc"
)

// heldPut is a backend whose Puts wait for release: the bodies they were
// handed stay in the server's budget meanwhile.
type heldPut struct {
	*rpctest.Backend
	inPut   atomic.Int32
	release chan struct{}
}

func (h *heldPut) Put(ctx context.Context, key string, value []byte, opts rpc.WriteOptions) (rpc.Record, error) {
	h.inPut.Add(1)
	defer h.inPut.Add(-1)
	select {
	case <-h.release:
	case <-ctx.Done():
		return rpc.Record{}, ctx.Err()
	}
	return h.Backend.Put(ctx, key, value, opts)
}

// rawPut sends a PUT of n bytes, hiding its length (chunked) if asked,
// and returns the status, the error code and Retry-After.
func rawPut(t *testing.T, r *raw, key string, n int, chunked bool) (int, string, string) {
	t.Helper()
	var body io.Reader = strings.NewReader(strings.Repeat("v", n))
	if chunked {
		body = io.MultiReader(body)
	}
	req, _ := http.NewRequest("PUT", "http://ckd/v1/kv/"+key, body)
	resp, err := r.hc.Do(req)
	if err != nil {
		t.Fatalf("PUT %s: %v", key, err)
	}
	defer resp.Body.Close()
	var e struct{ Code string }
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		if err := json.Unmarshal(b, &e); err != nil {
			t.Fatalf("PUT %s: %d %q", key, resp.StatusCode, b)
		}
	}
	return resp.StatusCode, e.Code, resp.Header.Get("Retry-After")
}

// Request bodies in flight share one budget: past it a PUT, of known
// length or chunked, is answered 503 busy with Retry-After, the body
// unread into memory; room comes back as requests finish, and the Go
// client resends a busy write until it gets through.
func TestBodyBudget(t *testing.T) {
	h := &heldPut{Backend: rpctest.NewBackend(), release: make(chan struct{})}
	s := rpctest.Serve(t, h, rpc.ServerOptions{MaxValueSize: 1024, MaxRequestBytes: 2048})
	r := newRaw(t, s.Socket)
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if status, code, _ := rawPut(t, r, fmt.Sprintf("held%d", i), 1024, false); status != 200 {
				t.Errorf("held PUT: %d %s", status, code)
			}
		}()
	}
	waitFor(t, func() bool { return h.inPut.Load() == 2 })

	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("chunked=%v", chunked), func(t *testing.T) {
			status, code, retry := rawPut(t, r, "over", 1000, chunked)
			if status != http.StatusServiceUnavailable || code != "busy" || retry != "1" {
				t.Errorf("PUT over the budget: %d %q Retry-After %q, want 503 busy 1", status, code, retry)
			}
		})
	}

	// The Go client resends: its Put gets through once room is freed.
	done := make(chan error, 1)
	go func() {
		_, err := s.Client.Put(context.Background(), "retried", []byte("x"), rpc.WriteOptions{})
		done <- err
	}()
	time.Sleep(300 * time.Millisecond) // long enough for a first busy answer
	close(h.release)
	wg.Wait()
	if err := <-done; err != nil {
		t.Fatalf("Put after room was freed: %v", err)
	}
	if _, ok := h.Record("retried"); !ok {
		t.Error("the retried Put is not stored")
	}
}

// A body that stops arriving is answered within the body timeout, and
// the handler does not wait for it any longer: a PUT's whole value must
// arrive within it, an import must keep sending.
func TestBodyTimeout(t *testing.T) {
	s := rpctest.Start(t, rpctest.NewBackend(), rpc.ServerOptions{BodyTimeout: 300 * time.Millisecond})
	for _, tc := range []struct{ name, head, part string }{
		{"put", "PUT /v1/kv/slow HTTP/1.1\r\nHost: ckd\r\nContent-Length: 100\r\n\r\n", "abc"},
		{"import", "POST /v1/import HTTP/1.1\r\nHost: ckd\r\nTransfer-Encoding: chunked\r\n\r\n", "5\r\n{\"key\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("unix", s.Socket)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			start := time.Now()
			if _, err := io.WriteString(c, tc.head+tc.part); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatalf("no answer to a stalled body: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "request body") {
				t.Errorf("stalled body: %d %s", resp.StatusCode, b)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("answered after %s, want about the 300ms timeout", d)
			}
		})
	}
}

// At the connection cap, new connections answer health and status only,
// a few at a time; past the reserve they are closed at once. A full
// connection that closes frees its slot.
func TestConnectionCap(t *testing.T) {
	s := rpctest.Start(t, rpctest.NewBackend(), rpc.ServerOptions{MaxConnections: 4})
	dial := func() net.Conn {
		t.Helper()
		c, err := net.Dial("unix", s.Socket)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ask := func(c net.Conn, path string) (int, error) {
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: ckd\r\n\r\n"); err != nil {
			return 0, err
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	full := make([]net.Conn, 4)
	for i := range full {
		full[i] = dial()
	}
	// The kernel queues connections in order; a served one proves the
	// four before it were taken.
	if status, err := ask(full[3], "/v1/kv/anything"); err != nil || status != http.StatusNotFound {
		t.Fatalf("a connection under the cap: %d %v", status, err)
	}
	for _, tc := range []struct {
		path   string
		status int
	}{{"/v1/health", 200}, {"/v1/health/live", 200}, {"/v1/health/ready", 200}, {"/v1/status", 200},
		{"/v1/kv/k", 503}, {"/v1/members", 503}} {
		if status, err := ask(dial(), tc.path); err != nil || status != tc.status {
			t.Errorf("at the cap, %s: %d %v, want %d", tc.path, status, err, tc.status)
		}
	}
	// Fill the reserve with silent connections: the next is closed at
	// once, until the reserve's connections reach their end of life.
	for range rpc.StatusReserve {
		dial()
	}
	waitFor(t, func() bool {
		_, err := ask(dial(), "/v1/health")
		return err != nil
	})
	start := time.Now()
	waitFor(t, func() bool {
		status, err := ask(dial(), "/v1/health")
		return err == nil && status == 200
	})
	t.Logf("health answered again after %s", time.Since(start))
	// A full connection closed: its slot serves everything again.
	full[0].Close()
	waitFor(t, func() bool {
		status, err := ask(dial(), "/v1/kv/k")
		return err == nil && status == http.StatusNotFound
	})
}

// countingBackend counts the watches and imports running.
type countingBackend struct {
	*rpctest.Backend
	watches atomic.Int32
}

func (c *countingBackend) Watch(ctx context.Context, prefix string, since uint64, fromNow bool, fn func(rpc.Event) error) error {
	c.watches.Add(1)
	defer c.watches.Add(-1)
	return c.Backend.Watch(ctx, prefix, since, fromNow, fn)
}

// stuckWatch opens a watch from index 0 that never reads, with a small
// receive buffer, and fills it with events until the server's writes
// block.
func stuckWatch(t *testing.T, s *rpctest.Server, b *countingBackend) {
	t.Helper()
	c, err := net.Dial("unix", s.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.(*net.UnixConn).SetReadBuffer(4096)
	before := b.watches.Load()
	if _, err := io.WriteString(c, "GET /v1/watch?since=0 HTTP/1.1\r\nHost: ckd\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return b.watches.Load() == before+1 })
	key := strings.Repeat("k", 400)
	for i := range 5000 {
		if _, err := b.Put(context.Background(), fmt.Sprintf("%s/%d", key, i), []byte("v"), rpc.WriteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
}

// A watcher that reads nothing is dropped after the stream write
// timeout; EndStreams cuts it off at once, while a watcher that reads
// gets the cause as its last line.
func TestStreamWriteBounds(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		b := &countingBackend{Backend: rpctest.NewBackend()}
		s := rpctest.Serve(t, b, rpc.ServerOptions{StreamWriteTimeout: 300 * time.Millisecond})
		start := time.Now()
		stuckWatch(t, s, b)
		waitFor(t, func() bool { return b.watches.Load() == 0 })
		t.Logf("dropped %s after the watch started", time.Since(start))
	})
	t.Run("EndStreams", func(t *testing.T) {
		b := &countingBackend{Backend: rpctest.NewBackend()}
		s := rpctest.Serve(t, b, rpc.ServerOptions{StreamWriteTimeout: time.Hour})
		stuckWatch(t, s, b)
		reader := watch(t, s.Client, "", nil)
		waitFor(t, func() bool { return b.watches.Load() == 2 })
		time.Sleep(100 * time.Millisecond) // the stuck one is blocked writing
		if b.watches.Load() != 2 {
			t.Fatal("the stuck watcher ended by itself")
		}
		start := time.Now()
		s.Server.EndStreams(rpc.Errorf(rpc.ErrSyncing, "rejoining"))
		waitFor(t, func() bool { return b.watches.Load() == 0 })
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("EndStreams took %s to end a stuck watcher", d)
		}
		if err := reader.end(t); !errors.Is(err, rpc.ErrSyncing) {
			t.Errorf("a reading watcher's last word: %v, want syncing", err)
		}
		// Streams started after run as usual.
		w := watch(t, s.Client, "", nil)
		waitFor(t, func() bool { return b.watches.Load() == 1 })
		put(t, s.Client, "after", "v")
		if ev := w.next(t); ev.Key != "after" {
			t.Errorf("a watch after EndStreams: %+v", ev)
		}
	})
}
