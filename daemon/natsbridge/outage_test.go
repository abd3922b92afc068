package natsbridge_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/cloudknowledge/ck/daemon/natsbridge"
	"github.com/cloudknowledge/ck/store"
)

// writer writes keys k/0, k/1, ... as fast as the store takes them until
// stopped, and records the slowest write and any error: NATS must never
// hold one up.
type writer struct {
	st      *store.Store
	value   []byte
	written atomic.Int64
	slowest atomic.Int64 // ns
	errs    atomic.Int64
	stop    chan struct{}
	done    chan struct{}
}

func startWriter(st *store.Store, valueSize int) *writer {
	w := &writer{st: st, value: []byte(strings.Repeat("v", valueSize)), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for i := 0; ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			t0 := time.Now()
			if _, err := st.Set(context.Background(), key(i), w.value, nil); err != nil {
				w.errs.Add(1)
			}
			if d := int64(time.Since(t0)); d > w.slowest.Load() {
				w.slowest.Store(d)
			}
			w.written.Add(1)
		}
	}()
	return w
}

// waitMore waits until n more keys have been written.
func (w *writer) waitMore(t *testing.T, n int64) {
	t.Helper()
	want := w.written.Load() + n
	checkFor(t, 30*time.Second, time.Millisecond, func() error {
		if got := w.written.Load(); got < want {
			return fmt.Errorf("%d written, want %d", got, want)
		}
		return nil
	})
}

// finish stops the writer, checks that no write failed or waited, and
// returns how many keys were written.
func (w *writer) finish(t *testing.T) uint64 {
	t.Helper()
	close(w.stop)
	<-w.done
	if n := w.errs.Load(); n > 0 {
		t.Errorf("%d writes failed while NATS was away", n)
	}
	// A write takes microseconds; one that waited for NATS would take a
	// reconnect interval (2 s). A -race run beside other packages has
	// taken 295 ms without waiting, so the bound sits between the two.
	if d := time.Duration(w.slowest.Load()); d > time.Second {
		t.Errorf("slowest write took %s", d)
	}
	t.Logf("%d writes, slowest %s", w.written.Load(), time.Duration(w.slowest.Load()))
	return uint64(w.written.Load())
}

// settled waits until nothing is in flight and every change is accounted
// for, and returns the stats.
func settled(t *testing.T, b *natsbridge.Bridge, changes uint64) natsbridge.Stats {
	t.Helper()
	var s natsbridge.Stats
	checkFor(t, 20*time.Second, 5*time.Millisecond, func() error {
		s = b.Stats()
		if s.Changes != changes || s.Unconfirmed != 0 || s.Published+s.Dropped+s.Skipped+s.Superseded != changes {
			return fmt.Errorf("not settled: %+v, want %d changes", s, changes)
		}
		return nil
	})
	return s
}

// TestOutageExactCount: the bridge's NATS goes away mid-stream (connections
// reset, new ones refused) and comes back during writes. Writes never fail
// or wait; the bridge reconnects; what it lost in flight it resends; and
// published + dropped == changes, with exactly the published changes at a
// subscriber that stayed connected to the server.
func TestOutageExactCount(t *testing.T) {
	srv := startServer(t)
	px := startProxy(t, srv.Addr().String())
	st := openStore(t)
	c := collect(t, connect(t, srv.ClientURL()), "ck.kv.>")
	b, _ := startBridge(t, natsbridge.Config{URLs: []string{px.url()}, BufferBytes: 16 << 10}, st, nil)
	waitState(t, b, "connected")

	w := startWriter(st, 256)
	w.waitMore(t, 500)
	px.down()
	waitState(t, b, "reconnecting")
	w.waitMore(t, 1000)
	px.up()
	waitState(t, b, "connected")
	w.waitMore(t, 1000)
	n := w.finish(t)

	s := settled(t, b, n)
	t.Logf("stats %+v", s)
	if s.Dropped == 0 || s.DroppedBuffer != s.Dropped {
		t.Errorf("want drops, all for the full reconnect buffer: %+v", s)
	}
	if s.Skipped != 0 || s.Superseded != 0 || s.Connects < 2 {
		t.Errorf("stats %+v", s)
	}
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if u := c.unique(); uint64(u) != s.Published {
			return fmt.Errorf("subscriber has %d distinct changes, bridge published %d", u, s.Published)
		}
		return nil
	})
	dups := len(c.all()) - c.unique()
	if uint64(dups) > s.Republished {
		t.Errorf("%d duplicates, but only %d messages were resent", dups, s.Republished)
	}
	t.Logf("subscriber: %d distinct, %d duplicates", c.unique(), dups)
}

// TestResendAfterCut: messages that were in flight when the connection
// broke — handed to nats.go, never confirmed — are resent once it is back,
// in order, and counted once.
func TestResendAfterCut(t *testing.T) {
	srv := startServer(t)
	px := startProxy(t, srv.Addr().String())
	st := openStore(t)
	c := collect(t, connect(t, srv.ClientURL()), "ck.kv.>")
	b, _ := startBridge(t, natsbridge.Config{URLs: []string{px.url()}}, st, nil)
	waitState(t, b, "connected")
	write := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := st.Set(context.Background(), key(i), []byte("v"), nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(0, 10)
	settled(t, b, 10)
	px.pause()
	write(10, 110)
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if s := b.Stats(); s.Unconfirmed != 100 {
			return fmt.Errorf("stats %+v: want 100 in flight", s)
		}
		return nil
	})
	px.down()
	waitState(t, b, "reconnecting")
	px.up()
	waitState(t, b, "connected")
	s := settled(t, b, 110)
	if s.Published != 110 || s.Dropped != 0 || s.Republished != 100 {
		t.Errorf("stats %+v: want 110 published, the 100 in flight resent", s)
	}
	msgs := c.waitN(t, 110)
	for i, m := range msgs {
		if want := key(i); m.Header.Get("Ck-Key") != want {
			t.Fatalf("message %d is %s, want %s", i, m.Header.Get("Ck-Key"), want)
		}
	}
	if err := connect(t, srv.ClientURL()).Flush(); err != nil {
		t.Fatal(err)
	}
	if n := len(c.all()); n != 110 {
		t.Errorf("%d messages, want 110", n)
	}
}

// TestServerRestart: the NATS server itself is shut down and restarted on
// its port during writes. Writes never fail or wait, the bridge reconnects
// by itself, the accounting closes, and changes flow again afterwards.
func TestServerRestart(t *testing.T) {
	srv := startServer(t)
	st := openStore(t)
	sub := connect(t, srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(10*time.Millisecond))
	c := collect(t, sub, "ck.kv.>")
	b, _ := startBridge(t, natsbridge.Config{URLs: []string{srv.ClientURL()}, BufferBytes: 16 << 10}, st, nil)
	waitState(t, b, "connected")

	w := startWriter(st, 256)
	port := serverPort(srv)
	w.waitMore(t, 500)
	srv.Shutdown()
	srv.WaitForShutdown()
	waitState(t, b, "reconnecting")
	w.waitMore(t, 1000)
	restartServer(t, port)
	waitState(t, b, "connected")
	w.waitMore(t, 1000)
	n := w.finish(t)

	s := settled(t, b, n)
	t.Logf("stats %+v", s)
	if s.Dropped == 0 || s.DroppedBuffer != s.Dropped || s.Connects < 2 {
		t.Errorf("stats %+v", s)
	}
	// The subscriber was away too: it cannot have more, and misses what
	// reached the servers while it was reconnecting.
	if u := c.unique(); uint64(u) > s.Published {
		t.Errorf("subscriber has %d distinct changes, bridge published %d", u, s.Published)
	}
	t.Logf("subscriber: %d distinct of %d published", c.unique(), s.Published)

	// Changes flow again, to a subscriber that is certainly back.
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		if !sub.IsConnected() {
			return fmt.Errorf("subscriber not reconnected")
		}
		return nil
	})
	after := collect(t, sub, "ck.kv.after.>")
	for i := range 100 {
		if _, err := st.Set(context.Background(), fmt.Sprintf("after/%d", i), []byte("x"), nil); err != nil {
			t.Fatal(err)
		}
	}
	after.waitN(t, 100)
}

// TestDownAtStart: with NATS unreachable at start, the bridge still starts,
// holds up to buffer_bytes of changes (dropping and counting the rest), and
// delivers them once NATS appears.
func TestDownAtStart(t *testing.T) {
	srv := startServer(t)
	px := startProxy(t, srv.Addr().String())
	px.down()
	st := openStore(t)
	c := collect(t, connect(t, srv.ClientURL()), "ck.kv.>")
	b, _ := startBridge(t, natsbridge.Config{URLs: []string{px.url()}, BufferBytes: 4096}, st, nil)
	if s := b.State(); s != "connecting" {
		t.Errorf("state %q before NATS is up, want connecting", s)
	}
	const n = 50
	for i := range n {
		if _, err := st.Set(context.Background(), key(i), []byte("v"), nil); err != nil {
			t.Fatal(err)
		}
	}
	var held natsbridge.Stats
	checkFor(t, 5*time.Second, 5*time.Millisecond, func() error {
		held = b.Stats()
		if held.Changes != n || held.Unconfirmed == 0 || uint64(held.Unconfirmed)+held.Dropped != n || held.DroppedBuffer != held.Dropped {
			return fmt.Errorf("stats %+v: want %d changes, held or dropped", held, n)
		}
		return nil
	})
	if held.State != "connecting" || held.Dropped == 0 {
		t.Errorf("stats %+v: want drops beyond buffer_bytes", held)
	}
	px.up()
	waitState(t, b, "connected")
	s := settled(t, b, n)
	if s.Published != uint64(held.Unconfirmed) {
		t.Errorf("published %d, %d were held", s.Published, held.Unconfirmed)
	}
	c.waitN(t, held.Unconfirmed)
	for i, m := range c.all() { // the oldest are kept, in order
		if want := key(i); m.Header.Get("Ck-Key") != want {
			t.Fatalf("message %d is %s, want %s", i, m.Header.Get("Ck-Key"), want)
		}
	}
}
