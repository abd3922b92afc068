package seal_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// listen returns a TCP listener on loopback, closed when the test ends.
func listen(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// serverResult is what a Server call returned.
type serverResult struct {
	c    *seal.Conn
	peer store.NodeID
	err  error
	raw  net.Conn
}

// serveOne accepts one connection on l and runs the server's handshake.
func serveOne(t testing.TB, l net.Listener, kr *seal.Keyring) <-chan serverResult {
	ch := make(chan serverResult, 1)
	go func() {
		raw, err := l.Accept()
		if err != nil {
			ch <- serverResult{err: err}
			return
		}
		c, peer, err := seal.Server(raw, kr, nodeB, cluster)
		if err != nil {
			raw.Close()
		}
		ch <- serverResult{c, peer, err, raw}
	}()
	return ch
}

// pair returns the two ends of a sealed stream over loopback TCP: the
// client (node A) and the server (node B).
func pair(t testing.TB, ckr, skr *seal.Keyring) (*seal.Conn, *seal.Conn) {
	t.Helper()
	l := listen(t)
	srv := serveOne(t, l, skr)
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := seal.Client(raw, ckr, nodeA, nodeB, cluster)
	if err != nil {
		t.Fatal(err)
	}
	s := <-srv
	if s.err != nil {
		t.Fatal(s.err)
	}
	if s.peer != nodeA || s.c.Peer() != nodeA || c.Peer() != nodeB {
		t.Fatalf("peers: server saw %s, client %s", s.peer, c.Peer())
	}
	t.Cleanup(func() { c.Close(); s.c.Close() })
	return c, s.c
}

// TestStreamRoundTrip: megabytes both ways at once, in writes of every
// size, arrive intact and in order; Close ends the peer's reading with
// io.EOF.
func TestStreamRoundTrip(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	kr := ring(t, key("a"))
	c, s := pair(t, kr, kr)
	const size = 8 << 20
	send := func(w io.Writer, seed uint64) [32]byte {
		rng := rand.New(rand.NewPCG(seed, 1))
		h := sha256.New()
		buf := make([]byte, 3*seal.MaxRecord)
		for n := size; n > 0; {
			chunk := buf[:min(n, 1+rng.IntN(len(buf)))]
			for i := range chunk {
				chunk[i] = byte(rng.Uint32())
			}
			if _, err := w.Write(chunk); err != nil {
				t.Error(err)
				break
			}
			h.Write(chunk)
			n -= len(chunk)
		}
		return [32]byte(h.Sum(nil))
	}
	recv := func(r io.Reader) [32]byte {
		h := sha256.New()
		if _, err := io.CopyN(h, r, size); err != nil {
			t.Error(err)
		}
		return [32]byte(h.Sum(nil))
	}
	var wg sync.WaitGroup
	var sentC, sentS, gotC, gotS [32]byte
	wg.Go(func() { sentC = send(c, seed) })
	wg.Go(func() { sentS = send(s, seed+1) })
	wg.Go(func() { gotS = recv(s) })
	wg.Go(func() { gotC = recv(c) })
	wg.Wait()
	if gotS != sentC || gotC != sentS {
		t.Error("data changed on the way")
	}
	c.Write([]byte("last words"))
	c.Close()
	if got, err := io.ReadAll(s); err != nil || string(got) != "last words" {
		t.Errorf("after the client's Close: %q, %v", got, err)
	}
}

// recorder keeps a copy of what a connection sent and received.
type recorder struct {
	net.Conn
	mu        sync.Mutex
	out, into bytes.Buffer
}

func (r *recorder) Write(b []byte) (int, error) {
	r.mu.Lock()
	r.out.Write(b)
	r.mu.Unlock()
	return r.Conn.Write(b)
}

func (r *recorder) Read(b []byte) (int, error) {
	n, err := r.Conn.Read(b)
	r.mu.Lock()
	r.into.Write(b[:n])
	r.mu.Unlock()
	return n, err
}

// TestStreamReplayedSession: a recorded client session sent again to a
// server fails at the handshake, and the server hands nothing of it on.
func TestStreamReplayedSession(t *testing.T) {
	kr := ring(t, key("a"))
	l := listen(t)
	srv := serveOne(t, l, kr)
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{Conn: raw}
	c, err := seal.Client(rec, kr, nodeA, nodeB, cluster)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("transfer 100 to mallory"))
	c.Close()
	s := <-srv
	if s.err != nil {
		t.Fatal(s.err)
	}
	if got, _ := io.ReadAll(s.c); string(got) != "transfer 100 to mallory" {
		t.Fatalf("the original session read %q", got)
	}

	srv = serveOne(t, l, kr)
	raw2, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw2.Close()
	raw2.Write(rec.out.Bytes())
	s = <-srv
	if !errors.Is(s.err, seal.ErrHandshake) || !errors.Is(s.err, wire.ErrKey) {
		t.Fatalf("replayed session: Server = %v", s.err)
	}
}

// TestStreamWrongKey: a client without the server's key is refused, and
// receives nothing.
func TestStreamWrongKey(t *testing.T) {
	l := listen(t)
	srv := serveOne(t, l, ring(t, key("a")))
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rec := &recorder{Conn: raw}
	_, err = seal.Client(rec, ring(t, key("mallory")), nodeC, store.NodeID{}, cluster)
	if !errors.Is(err, seal.ErrHandshake) || !errors.Is(err, wire.ErrKey) {
		t.Errorf("Client = %v", err)
	}
	if s := <-srv; !errors.Is(s.err, wire.ErrKey) {
		t.Errorf("Server = %v", s.err)
	}
	if rec.into.Len() != 0 {
		t.Errorf("the refused client received %d bytes", rec.into.Len())
	}
}

// TestStreamNoProof: a peer that knows the key id (it is public) but not
// the key gets the server's hello and then nothing but the close.
func TestStreamNoProof(t *testing.T) {
	kr := ring(t, key("a"))
	l := listen(t)
	srv := make(chan error, 1)
	go func() {
		raw, err := l.Accept()
		if err != nil {
			srv <- err
			return
		}
		defer raw.Close()
		c, _, err := seal.Server(raw, kr, nodeB, cluster)
		if err == nil {
			c.Write([]byte("secret"))
		}
		srv <- err
	}()
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	id := kr.PrimaryID()
	hello := append([]byte("CKS\x01C"), id[:]...)
	hello = append(hello, nodeC[:]...)
	hello = append(hello, make([]byte, 32)...)
	wire.WriteFrame(raw, hello)
	wire.WriteFrame(raw, bytes.Repeat([]byte{7}, 1+seal.TagSize)) // a guessed finished record
	got, _ := io.ReadAll(raw)
	if err := <-srv; !errors.Is(err, seal.ErrHandshake) {
		t.Errorf("Server = %v", err)
	}
	if len(got) != 4+57 || !bytes.HasPrefix(got[4:], []byte("CKS\x01S")) {
		t.Errorf("the unproven client received %d bytes: %q", len(got), got)
	}
}

// TestStreamHandshakeChecks: the wrong node, another cluster, and silence
// are refused.
func TestStreamHandshakeChecks(t *testing.T) {
	kr := ring(t, key("a"))
	t.Run("wrong node", func(t *testing.T) {
		l := listen(t)
		serveOne(t, l, kr)
		raw, _ := net.Dial("tcp", l.Addr().String())
		defer raw.Close()
		if _, err := seal.Client(raw, kr, nodeA, nodeC, cluster); !errors.Is(err, seal.ErrHandshake) {
			t.Errorf("Client = %v", err)
		}
	})
	t.Run("other cluster", func(t *testing.T) {
		l := listen(t)
		srv := serveOne(t, l, kr)
		raw, _ := net.Dial("tcp", l.Addr().String())
		defer raw.Close()
		c, err := seal.Client(raw, kr, nodeA, nodeB, "other")
		if err != nil {
			t.Fatal(err) // the client learns of it at its first read
		}
		if s := <-srv; !errors.Is(s.err, seal.ErrHandshake) {
			t.Errorf("Server = %v", s.err)
		}
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Error("read from a server of another cluster")
		}
	})
	t.Run("silence", func(t *testing.T) {
		seal.SetHandshakeTimeout(t, 100*time.Millisecond)
		l := listen(t)
		srv := serveOne(t, l, kr)
		raw, _ := net.Dial("tcp", l.Addr().String())
		defer raw.Close()
		select {
		case s := <-srv:
			if !errors.Is(s.err, seal.ErrHandshake) || !errors.Is(s.err, os.ErrDeadlineExceeded) {
				t.Errorf("Server = %v", s.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the handshake did not time out")
		}
	})
}

// TestStreamTampering: a man in the middle altering, dropping, repeating,
// reordering or cutting the client's records is detected at the next
// read; what came before arrives intact.
func TestStreamTampering(t *testing.T) {
	kr := ring(t, key("a"))
	// The client's frames: 0 hello, 1 finished, 2.. data records "r1".."r8",
	// then the close record.
	for _, c := range []struct {
		name   string
		mangle func(frames [][]byte) [][]byte
		got    string
		want   error
	}{
		{"none", func(f [][]byte) [][]byte { return f }, "r1r2r3r4r5r6r7r8", io.EOF},
		{"flip", func(f [][]byte) [][]byte { f[5][3] ^= 1; return f }, "r1r2r3", wire.ErrKey},
		{"flip tag", func(f [][]byte) [][]byte { f[5][len(f[5])-1] ^= 1; return f }, "r1r2r3", wire.ErrKey},
		{"drop", func(f [][]byte) [][]byte { return append(f[:5], f[6:]...) }, "r1r2r3", wire.ErrKey},
		{"repeat", func(f [][]byte) [][]byte { return append(f[:6], f[5:]...) }, "r1r2r3r4", wire.ErrKey},
		{"swap", func(f [][]byte) [][]byte { f[5], f[6] = f[6], f[5]; return f }, "r1r2r3", wire.ErrKey},
		{"cut", func(f [][]byte) [][]byte { return f[:7] }, "r1r2r3r4r5", seal.ErrTruncated},
		{"cut close", func(f [][]byte) [][]byte { return f[:len(f)-1] }, "r1r2r3r4r5r6r7r8", seal.ErrTruncated},
		{"grow", func(f [][]byte) [][]byte { f[5] = append(f[5], 0); return f }, "r1r2r3", wire.ErrKey},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := listen(t)
			srv := serveOne(t, l, kr)
			cl, mitm := net.Pipe()
			// The client's half, recorded frame by frame.
			var frames [][]byte
			done := make(chan struct{})
			raw, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				defer close(done)
				for {
					b, err := wire.ReadFrame(mitm, 1<<20)
					if err != nil {
						return
					}
					frames = append(frames, b)
					if len(frames) <= 2 {
						// Forward the handshake at once: the server must answer.
						wire.WriteFrame(raw, b)
					}
				}
			}()
			go io.Copy(mitm, raw) // the server's half, untouched
			cc, err := seal.Client(cl, kr, nodeA, nodeB, cluster)
			if err != nil {
				t.Fatal(err)
			}
			s := <-srv
			if s.err != nil {
				t.Fatal(s.err)
			}
			defer s.c.Close()
			for i := 1; i <= 8; i++ {
				cc.Write([]byte{'r', byte('0' + i)})
			}
			cc.Close()
			<-done
			for _, f := range c.mangle(frames)[2:] {
				wire.WriteFrame(raw, f)
			}
			raw.(*net.TCPConn).CloseWrite()
			got, err := io.ReadAll(s.c)
			if c.want == io.EOF {
				if err != nil {
					t.Errorf("ReadAll = %v", err)
				}
			} else if !errors.Is(err, c.want) {
				t.Errorf("ReadAll = %v, want %v", err, c.want)
			}
			if string(got) != c.got {
				t.Errorf("read %q, want %q", got, c.got)
			}
			raw.Close()
		})
	}
}

// TestStreamCloseWhileWriting: Close does not wait on a peer that stopped
// reading.
func TestStreamCloseWhileWriting(t *testing.T) {
	kr := ring(t, key("a"))
	c, _ := pair(t, kr, kr)
	written := make(chan error, 1)
	go func() {
		_, err := c.Write(make([]byte, 64<<20))
		written <- err
	}()
	time.Sleep(50 * time.Millisecond) // let the write fill the socket buffers
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close blocked behind a Write")
	}
	if err := <-written; err == nil {
		t.Error("the interrupted Write succeeded")
	}
	if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
}
