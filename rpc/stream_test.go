package rpc_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/poll"
	"github.com/cloudknowledge/ck/internal/rpctest"
	"github.com/cloudknowledge/ck/rpc"
)

// watcher runs a client watch in the background and hands over its events.
type watcher struct {
	events chan rpc.Event
	done   chan error
	cancel context.CancelFunc
}

func watch(t *testing.T, c *rpc.Client, prefix string, since *uint64) *watcher {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	w := &watcher{events: make(chan rpc.Event, 100), done: make(chan error, 1), cancel: cancel}
	go func() {
		w.done <- c.Watch(ctx, prefix, since, func(ev rpc.Event) error {
			w.events <- ev
			return nil
		})
	}()
	t.Cleanup(cancel)
	return w
}

func (w *watcher) next(t *testing.T) rpc.Event {
	t.Helper()
	select {
	case ev := <-w.events:
		return ev
	case err := <-w.done:
		t.Fatalf("watch ended: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no event within 5s")
	}
	return rpc.Event{}
}

func (w *watcher) end(t *testing.T) error {
	t.Helper()
	select {
	case err := <-w.done:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("watch did not end within 5s")
	}
	return nil
}

func put(t *testing.T, c *rpc.Client, key, value string) rpc.Record {
	t.Helper()
	r, err := c.Put(context.Background(), key, []byte(value), rpc.WriteOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestWatchSince(t *testing.T) {
	c, _ := start(t)
	put(t, c, "w/a", "1")
	put(t, c, "x/skip", "1")
	put(t, c, "w/b", "2")
	zero := uint64(0)
	w := watch(t, c, "w/", &zero)
	if ev := w.next(t); ev.Key != "w/a" || ev.Index != 1 || ev.Op != "set" || ev.Version != 1 || ev.Origin != rpctest.SelfID {
		t.Errorf("first event = %+v", ev)
	}
	if ev := w.next(t); ev.Key != "w/b" || ev.Index != 3 {
		t.Errorf("second event = %+v", ev)
	}
	c.Delete(context.Background(), "w/a", rpc.WriteOptions{})
	if ev := w.next(t); ev.Key != "w/a" || ev.Op != "del" || ev.Index != 4 {
		t.Errorf("live event = %+v", ev)
	}
	w.cancel()
	if err := w.end(t); !errors.Is(err, context.Canceled) {
		t.Errorf("watch after cancel: %v", err)
	}

	two := uint64(2)
	w = watch(t, c, "", &two)
	if ev := w.next(t); ev.Index != 3 {
		t.Errorf("since 2 started at %+v", ev)
	}
}

func TestWatchFromNow(t *testing.T) {
	c, _ := start(t)
	put(t, c, "w/old", "1")
	w := watch(t, c, "w/", nil)
	// Nothing tells when the watch is established: write until it hears.
	var ev rpc.Event
	for got := false; !got; {
		put(t, c, "w/ping", "")
		select {
		case ev = <-w.events:
			got = true
		case err := <-w.done:
			t.Fatalf("watch ended: %v", err)
		case <-time.After(50 * time.Millisecond):
		}
	}
	if ev.Key != "w/ping" {
		t.Fatalf("a watch from now replayed %+v", ev)
	}
	put(t, c, "w/new", "1")
	for {
		ev := w.next(t)
		if ev.Key == "w/new" {
			break
		}
		if ev.Key != "w/ping" {
			t.Fatalf("unexpected %+v", ev)
		}
	}
}

func TestWatchErrors(t *testing.T) {
	c, b := start(t)
	put(t, c, "a", "1")
	b.Lock()
	b.CompactedBelow = 5
	b.Unlock()
	one := uint64(1)
	if err := c.Watch(context.Background(), "", &one, func(rpc.Event) error { return nil }); !errors.Is(err, rpc.ErrCompacted) {
		t.Errorf("compacted: %v", err)
	}
	zero := uint64(0)
	stop := errors.New("stop")
	b.Lock()
	b.CompactedBelow = 0
	b.Unlock()
	if err := c.Watch(context.Background(), "", &zero, func(rpc.Event) error { return stop }); err != stop {
		t.Errorf("fn's error: %v", err)
	}
}

func TestWatchEndsAtShutdown(t *testing.T) {
	b := rpctest.NewBackend()
	s := rpctest.Start(t, b, rpc.ServerOptions{})
	zero := uint64(0)
	put(t, s.Client, "k", "v")
	w := watch(t, s.Client, "", &zero)
	w.next(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Server.Shutdown(ctx); err != nil {
		t.Fatalf("shutdown waited for the watch: %v", err)
	}
	if err := w.end(t); !errors.Is(err, rpc.ErrShuttingDown) {
		t.Errorf("watch at shutdown: %v", err)
	}
}

// The raw stream: its content type, one event a line, flushed as it
// happens, and a 200 even while no event comes.
func TestWatchStreamFormat(t *testing.T) {
	s := rpctest.Start(t, rpctest.NewBackend(), rpc.ServerOptions{})
	c := s.Client
	r := newRaw(t, s.Socket)
	req, _ := http.NewRequest("GET", "http://ckd/v1/watch?prefix=k", nil)
	resp, err := r.hc.Do(req) // returns at the headers: the 200 comes before any event
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/x-ndjson" {
		t.Fatalf("status %d, content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	br := bufio.NewReader(resp.Body)
	put(t, c, "k1", "a")
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	for _, f := range []string{"index", "op", "key", "version", "origin"} {
		if _, ok := m[f]; !ok {
			t.Errorf("event lacks %q: %s", f, line)
		}
	}
}

func TestExportImport(t *testing.T) {
	c, b := start(t)
	ctx := context.Background()
	put(t, c, "e/a", "1")
	put(t, c, "e/bin", "\xff\x00")
	put(t, c, "e/gone", "x")
	c.Delete(ctx, "e/gone", rpc.WriteOptions{})
	put(t, c, "other", "o")

	var buf bytes.Buffer
	if err := c.Export(ctx, "e/", &buf); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 || !strings.Contains(lines[2], `"deleted":true`) || !strings.Contains(lines[1], `"encoding":"base64"`) {
		t.Fatalf("export:\n%s", buf.String())
	}

	c2, b2 := start(t)
	res, err := c2.Import(ctx, bytes.NewReader(buf.Bytes()), false)
	if err != nil || res.Records != 3 || res.Applied != 3 {
		t.Fatalf("import = %+v %v", res, err)
	}
	for _, k := range []string{"e/a", "e/bin", "e/gone"} {
		want, _ := b.Record(k)
		got, _ := b2.Record(k)
		if !reflect.DeepEqual(want, got) && !(len(want.Value) == 0 && len(got.Value) == 0 && want.Version == got.Version) {
			t.Errorf("%s: imported %+v, want %+v", k, got, want)
		}
	}
	if _, ok := b2.Record("other"); ok {
		t.Error("export ignored its prefix")
	}
	// Again: nothing new to apply.
	if res, err := c2.Import(ctx, bytes.NewReader(buf.Bytes()), false); err != nil || res.Applied != 0 {
		t.Errorf("second import = %+v %v", res, err)
	}
	// As new: new local writes.
	res, err = c2.Import(ctx, bytes.NewReader(buf.Bytes()), true)
	if err != nil || res.Applied != 3 {
		t.Fatalf("import as new = %+v %v", res, err)
	}
	if r, _ := b2.Record("e/a"); r.Version <= 3 {
		t.Errorf("as_new kept the version: %+v", r)
	}
}

func TestImportErrors(t *testing.T) {
	b := rpctest.NewBackend()
	s := rpctest.Start(t, b, rpc.ServerOptions{MaxValueSize: 1024})
	ctx := context.Background()
	good := `{"key":"a","value":"1","version":1,"origin":"x","vv":{"x":1}}`
	tests := []struct {
		name, body string
		want       *rpc.Error
		contains   string
	}{
		{"bad json", good + "\n\n{oops\n", rpc.ErrBadRequest, "line 3"},
		{"bad base64", `{"key":"a","value":"!!","encoding":"base64"}`, rpc.ErrBadRequest, "line 1"},
		{"bad key", `{"key":"a/../b","value":"1","version":1}`, rpc.ErrBadRequest, "a/../b"},
		{"early error, long body", "{oops\n" + strings.Repeat(good+"\n", 100000), rpc.ErrBadRequest, "line 1"},
		{"line too long", good + "\n" + `{"key":"` + strings.Repeat("x", 3000+64<<10) + `"}`, rpc.ErrTooLarge, "line 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Client.Import(ctx, strings.NewReader(tt.body), false)
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.contains) {
				t.Errorf("err = %v, want %s with %q", err, tt.want.Code, tt.contains)
			}
		})
	}
	// Blank lines and a last line without newline are fine.
	res, err := s.Client.Import(ctx, strings.NewReader("\n"+good+"\n\n"+strings.Replace(good, `"a"`, `"b"`, 1)), false)
	if err != nil || res.Records != 2 {
		t.Errorf("import = %+v %v", res, err)
	}
}

// The import body is applied as it arrives, not read whole first.
func TestImportStreams(t *testing.T) {
	c, b := start(t)
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		_, err := c.Import(context.Background(), pr, false)
		done <- err
	}()
	for i := range 3 {
		key := fmt.Sprintf("s/%d", i)
		fmt.Fprintf(pw, `{"key":%q,"value":"v","version":%d,"origin":"o","vv":{"o":%d}}`+"\n", key, i+1, i+1)
		deadline := time.Now().Add(5 * time.Second)
		for {
			if _, ok := b.Record(key); ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s not applied while the body is still open", key)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	pw.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// failingExport fails after its first record, once the stream has begun.
type failingExport struct{ *rpctest.Backend }

func (f failingExport) Export(ctx context.Context, prefix string, fn func(rpc.Record) error) error {
	if err := fn(rpc.Record{Key: "first", Version: 1}); err != nil {
		return err
	}
	return rpc.Errorf(rpc.ErrDiskFull, "read error: disk full")
}

func TestExportErrorMidStream(t *testing.T) {
	s := rpctest.Serve(t, failingExport{rpctest.NewBackend()}, rpc.ServerOptions{})
	var buf bytes.Buffer
	err := s.Client.Export(context.Background(), "", &buf)
	if !errors.Is(err, rpc.ErrDiskFull) {
		t.Errorf("err = %v", err)
	}
	if !strings.Contains(buf.String(), `"key":"first"`) || strings.Contains(buf.String(), "error") {
		t.Errorf("output = %q", buf.String())
	}
}

// countingWatch counts the backend watches running.
type countingWatch struct {
	*rpctest.Backend
	active atomic.Int32
}

func (c *countingWatch) Watch(ctx context.Context, prefix string, since uint64, fromNow bool, fn func(rpc.Event) error) error {
	c.active.Add(1)
	defer c.active.Add(-1)
	return c.Backend.Watch(ctx, prefix, since, fromNow, fn)
}

// A client that goes away ends the backend's watch.
func TestWatchEndsWhenClientLeaves(t *testing.T) {
	b := &countingWatch{Backend: rpctest.NewBackend()}
	s := rpctest.Serve(t, b, rpc.ServerOptions{})
	w := watch(t, s.Client, "", nil)
	waitFor(t, func() bool { return b.active.Load() == 1 })
	w.cancel()
	w.end(t)
	waitFor(t, func() bool { return b.active.Load() == 0 })
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	poll.Until(t, 5*time.Second, 5*time.Millisecond, func() error {
		if !cond() {
			return errors.New("condition not met")
		}
		return nil
	})
}
