package natstransport_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/transport/natstransport"
)

// pair opens a stream from a to b and returns both ends.
func pair(t testing.TB, a, b *natstransport.Transport) (dialed, accepted net.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	d, err := a.Dial(ctx, b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	select {
	case c := <-b.Streams():
		t.Cleanup(func() { c.Close() })
		if c.RemoteAddr().String() != a.Addr().String() || c.RemoteAddr().Network() != "nats" {
			t.Errorf("accepted stream from %v, want %s", c.RemoteAddr(), a.Addr())
		}
		return d, c
	case <-time.After(5 * time.Second):
		t.Fatal("no stream accepted")
		return nil, nil
	}
}

func twoNodes(t testing.TB) (a, b *natstransport.Transport) {
	s := startServer(t, 0)
	subj := subject(t)
	a, b = open(t, s.ClientURL(), subj), open(t, s.ClientURL(), subj)
	connected(t, a, b)
	return a, b
}

// randomBytes returns n bytes from a generator seeded with seed.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// Several MB both ways at once, in writes of random sizes, read in reads of
// random sizes: every byte arrives, in order.
func TestNATSStreamLargeBothWays(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	a, b := twoNodes(t)
	d, c := pair(t, a, b)
	const size = 6 << 20
	var wg sync.WaitGroup
	for i, end := range []net.Conn{d, c} {
		other := []net.Conn{c, d}[i]
		data := randomBytes(seed+uint64(i), size)
		wg.Add(2)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, uint64(i)))
			for rest := data; len(rest) > 0; {
				n := min(len(rest), 1+r.IntN(300<<10))
				if _, err := end.Write(rest[:n]); err != nil {
					t.Errorf("write: %v", err)
					return
				}
				rest = rest[n:]
			}
			if err := end.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
				t.Errorf("close write: %v", err)
			}
		}()
		go func() {
			defer wg.Done()
			h := sha256.New()
			r := rand.New(rand.NewPCG(seed, uint64(i)+10))
			buf := make([]byte, 200<<10)
			n, err := io.CopyBuffer(h, readerFunc(func(p []byte) (int, error) {
				return other.Read(p[:1+r.IntN(len(p))])
			}), buf)
			if err != nil || n != size || !bytes.Equal(h.Sum(nil), sha256Sum(data)) {
				t.Errorf("read %d bytes (error %v), hash match %v; want %d bytes", n, err, bytes.Equal(h.Sum(nil), sha256Sum(data)), size)
			}
		}()
	}
	wg.Wait()
	if st := a.Stats(); st.StreamsDialed != 1 {
		t.Errorf("a's stats %+v", st)
	}
}

type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(p []byte) (int, error) { return f(p) }

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func TestNATSStreamDeadlines(t *testing.T) {
	a, b := twoNodes(t)
	d, c := pair(t, a, b)

	// A read deadline ends a Read with nothing to read.
	c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	start := time.Now()
	if _, err := c.Read(make([]byte, 10)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past the deadline: %v", err)
	}
	if el := time.Since(start); el < 90*time.Millisecond || el > 2*time.Second {
		t.Errorf("read returned after %s, want ~100ms", el)
	}
	// A deadline set in the past wakes a Read already blocked.
	c.SetReadDeadline(time.Time{})
	done := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 10)); done <- err }()
	time.Sleep(50 * time.Millisecond)
	c.SetReadDeadline(time.Now().Add(-time.Second))
	select {
	case err := <-done:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("blocked read: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("a deadline in the past did not wake a blocked Read")
	}
	// Cleared, reading works again.
	c.SetReadDeadline(time.Time{})
	d.Write([]byte("x"))
	if n, err := c.Read(make([]byte, 10)); n != 1 || err != nil {
		t.Errorf("read after clearing the deadline: %d, %v", n, err)
	}

	// A peer that does not read stops the writer at its window; a write
	// deadline ends the Write, having written what fit.
	d.SetWriteDeadline(time.Now().Add(300 * time.Millisecond))
	n, err := d.Write(make([]byte, 4*natstransport.DefaultWindow))
	if !errors.Is(err, os.ErrDeadlineExceeded) || n > natstransport.DefaultWindow || n == 0 {
		t.Errorf("write to a peer not reading: %d bytes, %v; want at most the window, then the deadline", n, err)
	}
	// What was written arrives intact once the reader reads.
	got, want := 0, n
	buf := make([]byte, 64<<10)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for got < want {
		m, err := c.Read(buf)
		if err != nil {
			t.Fatalf("reading the %d bytes written: %d, %v", want, got, err)
		}
		for _, x := range buf[:m] {
			if x != 0 {
				t.Fatal("corrupt byte")
			}
		}
		got += m
	}
}

func TestNATSStreamCloseEOF(t *testing.T) {
	a, b := twoNodes(t)
	d, c := pair(t, a, b)
	if _, err := d.Write([]byte("last words")); err != nil {
		t.Fatal(err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "last words" {
		t.Errorf("read %q, %v; want the data, then EOF", got, err)
	}
	if _, err := d.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
		t.Errorf("read after close: %v", err)
	}
	if err := d.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	// Writing to a closed peer gets a reset.
	checkFor(t, 5*time.Second, func() error {
		_, err := c.Write([]byte("anyone?"))
		if errors.Is(err, natstransport.ErrReset) {
			return nil
		}
		return errors.New("no reset for a write to a closed stream")
	})

	// Half close: the other direction goes on.
	d2, c2 := pair(t, a, b)
	d2.Write([]byte("request"))
	d2.(interface{ CloseWrite() error }).CloseWrite()
	c2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(c2); err != nil || string(got) != "request" {
		t.Errorf("read %q, %v", got, err)
	}
	c2.Write([]byte("reply"))
	c2.Close()
	d2.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(d2); err != nil || string(got) != "reply" {
		t.Errorf("read %q, %v after a half close", got, err)
	}
}

// A server restart in the middle of a stream breaks it on both sides: an
// error, never a hole or a byte out of place.
func TestNATSStreamServerRestart(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	s := startServer(t, 0)
	subj := subject(t)
	a, b := open(t, s.ClientURL(), subj), open(t, s.ClientURL(), subj)
	connected(t, a, b)
	d, c := pair(t, a, b)
	data := randomBytes(seed, 16<<20) // more than goes through before the restart
	werr := make(chan error, 1)
	go func() {
		d.SetWriteDeadline(time.Now().Add(20 * time.Second))
		_, err := d.Write(data)
		werr <- err
	}()
	c.SetReadDeadline(time.Now().Add(20 * time.Second))
	buf := make([]byte, 32<<10)
	got := 0
	restarted := false
	var rerr error
	for {
		n, err := c.Read(buf)
		if !bytes.Equal(buf[:n], data[got:got+n]) {
			t.Fatalf("corrupt data at offset %d", got)
		}
		got += n
		if err != nil {
			rerr = err
			break
		}
		if got > 2<<20 && !restarted {
			restarted = true
			port := serverPort(s)
			s.Shutdown()
			s.WaitForShutdown()
			startServer(t, port)
		}
	}
	if !errors.Is(rerr, natstransport.ErrBroken) && !errors.Is(rerr, natstransport.ErrReset) {
		t.Errorf("read after %d bytes: %v, want ErrBroken or ErrReset", got, rerr)
	}
	if err := <-werr; !errors.Is(err, natstransport.ErrBroken) && !errors.Is(err, natstransport.ErrReset) {
		t.Errorf("write: %v, want ErrBroken or ErrReset", err)
	}
	t.Logf("read %d bytes, then %v", got, rerr)
	// Reconnected, new streams work.
	connected(t, a, b)
	checkFor(t, 10*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		d, err := a.Dial(ctx, b.Addr())
		if err == nil {
			d.Close()
		}
		return err
	})
}

// Closing the transport breaks its streams and ends Packets and Streams.
func TestNATSCloseTransport(t *testing.T) {
	a, b := twoNodes(t)
	d, c := pair(t, a, b)
	done := make(chan error, 1)
	go func() { _, err := c.Read(make([]byte, 1)); done <- err }()
	a.Close()
	if _, err := d.Write([]byte("x")); err == nil {
		t.Error("write on a closed transport's stream succeeded")
	}
	select {
	case err := <-done:
		if !errors.Is(err, natstransport.ErrReset) {
			t.Errorf("peer's read: %v, want ErrReset", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("the peer's Read did not end when the transport closed")
	}
	if _, ok := <-a.Packets(); ok {
		t.Error("Packets still open")
	}
	if _, ok := <-a.Streams(); ok {
		t.Error("Streams still open")
	}
	if err := a.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

// A message lost in the middle of a stream (here: one arriving at an
// offset past the next expected one) breaks it: the reader gets ErrBroken
// after the intact bytes before the hole, the writer a reset.
func TestNATSStreamGapBreaks(t *testing.T) {
	a, b := twoNodes(t)
	d, c := pair(t, a, b)
	d.Write([]byte("intact"))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	if n, err := io.ReadAtLeast(c, buf, 6); err != nil || string(buf[:n]) != "intact" {
		t.Fatalf("read %q, %v", buf[:n], err)
	}
	natstransport.InjectData(b, 1, 100, []byte("after a hole")) // the first stream b accepted has id 1
	if n, err := c.Read(buf); !errors.Is(err, natstransport.ErrBroken) {
		t.Errorf("read after a gap: %q, %v; want ErrBroken", buf[:n], err)
	}
	checkFor(t, 5*time.Second, func() error {
		if _, err := d.Write([]byte("more")); !errors.Is(err, natstransport.ErrReset) {
			return errors.New("the writer was not reset after the reader saw a gap")
		}
		return nil
	})
}

// A peer whose process dies (its connection just drops: no fin, no reset)
// is noticed by the keepalive: the Read blocked on it ends with ErrReset
// within a few keepalive periods, not at its deadline.
func TestNATSStreamPeerGone(t *testing.T) {
	s := startServer(t, 0)
	subj := subject(t)
	fast := func(c *natstransport.Config) { c.KeepAlive = 100 * time.Millisecond }
	a, b := open(t, s.ClientURL(), subj, fast), open(t, s.ClientURL(), subj, fast)
	connected(t, a, b)
	d, c := pair(t, a, b)
	// Quiet but alive: probes are answered, nothing breaks.
	c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, err := c.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read on a quiet, live stream: %v", err)
	}
	d.SetReadDeadline(time.Now().Add(30 * time.Second))
	start := time.Now()
	natstransport.Crash(b)
	if _, err := d.Read(make([]byte, 1)); !errors.Is(err, natstransport.ErrReset) {
		t.Errorf("read from a peer that died: %v, want ErrReset", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("the dead peer was noticed after %s", el)
	}
}
