package seal_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/daemon/wire"
)

var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpus under testdata/fuzz")

// fuzzRing is the receiver's ring in both targets: keys a (primary) and b.
func fuzzRing(t testing.TB) *seal.Keyring { return ring(t, key("a"), key("b")) }

// fixedNonces makes handshakes reproducible, so a recorded session is a
// seed that gets past the handshake. (Which is also why real nonces must
// be random: with fixed ones a recorded session replays.)
func fixedNonces(b []byte) {
	for i := range b {
		b[i] = 0x5a
	}
}

// FuzzOpen: whatever the bytes, decoding with the keyed sealer returns a
// message or an error with a drop reason, never panics; and what Open
// accepts is exactly what Seal makes of its plaintext under that header —
// nothing opens that a key holder did not seal.
func FuzzOpen(f *testing.F) {
	kr := fuzzRing(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		d := seal.NewDatagram(kr, cluster, seal.NewReplay(&seal.MemoryEpochs{}))
		_, m, err := wire.Decode(bytes.Clone(b), d)
		if err != nil && (m != nil || wire.Reason(err) == "other") {
			t.Fatalf("Decode = %#v, %v (reason %q)", m, err, wire.Reason(err))
		}
		h, err := wire.ParseHeader(b)
		if err != nil {
			return
		}
		d = seal.NewDatagram(kr, cluster, nil)
		body, err := d.Open(h, bytes.Clone(b[wire.HeaderSize:]))
		if err != nil {
			if wire.Reason(err) == "other" {
				t.Fatalf("Open = %v", err)
			}
			return
		}
		again, err := d.Seal(bytes.Clone(b[:wire.HeaderSize]), bytes.Clone(body))
		if err != nil || !bytes.Equal(again, b[wire.HeaderSize:]) {
			t.Fatalf("opened a frame that its header and plaintext do not seal to: %v", err)
		}
	})
}

// FuzzHandshake: whatever a client sends, the server's handshake and the
// reading of records after it end in data or an error of a known kind,
// never a panic or a hang.
func FuzzHandshake(f *testing.F) {
	kr := fuzzRing(f)
	seal.SetNonces(f, fixedNonces)
	f.Fuzz(func(t *testing.T, in []byte) {
		conn := &scriptConn{r: bytes.NewReader(in)}
		c, _, err := seal.Server(conn, kr, nodeB, cluster)
		if err != nil {
			if !errors.Is(err, seal.ErrHandshake) {
				t.Fatalf("Server = %v", err)
			}
			return
		}
		_, err = io.ReadAll(c)
		if err != nil && !errors.Is(err, wire.ErrKey) && !errors.Is(err, seal.ErrTruncated) &&
			!errors.Is(err, wire.ErrTooLarge) && !errors.Is(err, wire.ErrMalformed) {
			t.Fatalf("reading after the handshake: %v", err)
		}
	})
}

// scriptConn is a net.Conn reading a script and discarding what is written.
type scriptConn struct {
	r   io.Reader
	out bytes.Buffer
}

func (c *scriptConn) Read(b []byte) (int, error)       { return c.r.Read(b) }
func (c *scriptConn) Write(b []byte) (int, error)      { return c.out.Write(b) }
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// recordSession returns what a client (node A, key a) sends in a session
// writing each of msgs and closing, with fixed nonces; cut drops the
// close record.
func recordSession(t testing.TB, cluster string, msgs ...string) []byte {
	t.Helper()
	seal.SetNonces(t, fixedNonces)
	kr := ring(t, key("a"))
	cl, sv := net.Pipe()
	rec := &recorder{Conn: cl}
	srv := make(chan error, 1)
	go func() {
		c, _, err := seal.Server(sv, kr, nodeB, cluster)
		if err == nil {
			_, err = io.ReadAll(c)
		}
		sv.Close()
		srv <- err
	}()
	c, err := seal.Client(rec, kr, nodeA, nodeB, cluster)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		c.Write([]byte(m))
	}
	c.Close()
	<-srv
	return bytes.Clone(rec.out.Bytes())
}

func framed(bs ...[]byte) []byte {
	var out bytes.Buffer
	for _, b := range bs {
		wire.WriteFrame(&out, b)
	}
	return out.Bytes()
}

// seeds returns the seed corpus of each target: valid inputs reaching
// deep, and a mutation reaching each rejection.
func seeds(t testing.TB) map[string]map[string][]byte {
	mutate := func(b []byte, i int, x byte) []byte {
		b = bytes.Clone(b)
		if i < 0 {
			i += len(b)
		}
		b[i] ^= x
		return b
	}
	underA := seal.NewDatagram(ring(t, key("a")), cluster, nil)
	underB := seal.NewDatagram(ring(t, key("b")), cluster, nil)
	s := newSender(nodeA, epoch1, underA)
	open := map[string][]byte{
		"update":          s.frame(t, update()),
		"query":           s.frame(t, &wire.Query{ID: 1, Key: "k"}),
		"hello":           s.frame(t, &wire.Hello{ID: nodeA, Name: "alpha", Epoch: epoch1, Addr: "127.0.0.1:7237", Proto: wire.Proto}),
		"ack-other-key":   newSender(nodeB, epoch1, underB).frame(t, &wire.Ack{Key: "k", Origin: nodeA, Lamport: 7, From: nodeB}),
		"x-plaintext":     newSender(nodeA, epoch1, wire.Plaintext(cluster)).frame(t, update()),
		"x-other-key":     newSender(nodeA, epoch1, seal.NewDatagram(ring(t, key("x")), cluster, nil)).frame(t, update()),
		"x-other-cluster": newSender(nodeA, epoch1, seal.NewDatagram(ring(t, key("a")), "other", nil)).frame(t, update()),
	}
	q := open["query"]
	open["x-tag"] = mutate(q, -1, 1)
	open["x-ciphertext"] = mutate(q, wire.HeaderSize, 1)
	open["x-counter"] = mutate(q, 39, 1)
	open["x-key-id"] = mutate(q, 4, 1)
	open["x-unsealed"] = mutate(q, 3, byte(wire.FlagSealed))
	open["x-cluster-tag"] = mutate(q, 47, 1)
	open["x-header-only"] = q[:wire.HeaderSize]
	open["x-tag-only"] = q[:wire.HeaderSize+seal.TagSize]

	session := recordSession(t, cluster, "hello, ", "world")
	// The session's frames: hello, finished, two data records, close.
	var frames [][]byte
	for r := bytes.NewReader(session); ; {
		b, err := wire.ReadFrame(r, 1<<20)
		if err != nil {
			break
		}
		frames = append(frames, b)
	}
	if len(frames) != 5 {
		t.Fatalf("recorded session has %d frames", len(frames))
	}
	hello := frames[0]
	helloB := bytes.Clone(hello)
	copy(helloB[5:9], bytes.Repeat([]byte{0xee}, 4))
	hs := map[string][]byte{
		"session":           session,
		"session-cut":       framed(frames[:4]...),
		"session-other":     recordSession(t, "other", "x"),
		"x-flip-data":       framed(frames[0], frames[1], mutate(frames[2], 3, 1), frames[3], frames[4]),
		"x-swap-data":       framed(frames[0], frames[1], frames[3], frames[2], frames[4]),
		"x-oversize-record": append(framed(frames[0], frames[1]), binary.BigEndian.AppendUint32(nil, 1<<20)...),
		"x-hello-only":      framed(hello),
		"x-unknown-key":     framed(helloB),
		"x-magic":           framed(mutate(hello, 0, 1)),
		"x-version":         framed(mutate(hello, 3, 2)),
		"x-role":            framed(mutate(hello, 4, 'C'^'S')),
		"x-short-hello":     framed(hello[:56]),
		"x-bad-fin":         framed(hello, bytes.Repeat([]byte{7}, 1+seal.TagSize)),
		"x-short-fin":       framed(hello, []byte{1, 2, 3}),
		"x-huge":            {0xff, 0xff, 0xff, 0xff, 1},
		"x-empty":           {},
	}
	return map[string]map[string][]byte{"FuzzOpen": open, "FuzzHandshake": hs}
}

// TestFuzzCorpus keeps testdata/fuzz in step with the code: a change of
// the format shows here, and -update-corpus rewrites the seeds.
func TestFuzzCorpus(t *testing.T) {
	for target, corpus := range seeds(t) {
		dir := filepath.Join("testdata", "fuzz", target)
		if *updateCorpus {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		for _, name := range slices.Sorted(func(yield func(string) bool) {
			for n := range corpus {
				if !yield(n) {
					return
				}
			}
		}) {
			want := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", corpus[name])
			path := filepath.Join(dir, name)
			if *updateCorpus {
				if err := os.WriteFile(path, want, 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s is missing or stale (%v): run go test -run TestFuzzCorpus -update-corpus", path, err)
			}
		}
	}
}

// TestSeedsReachDeep: the valid seeds get where they are meant to — the
// datagrams open, the session passes the handshake and reads its data —
// and each mutation fails.
func TestSeedsReachDeep(t *testing.T) {
	all := seeds(t)
	kr := fuzzRing(t)
	for name, b := range all["FuzzOpen"] {
		_, _, err := decode(b, seal.NewDatagram(kr, cluster, nil))
		if valid := name[:2] != "x-"; valid != (err == nil) {
			t.Errorf("FuzzOpen seed %s: Decode = %v", name, err)
		}
	}
	seal.SetNonces(t, fixedNonces)
	for name, b := range all["FuzzHandshake"] {
		var got []byte
		c, _, err := seal.Server(&scriptConn{r: bytes.NewReader(b)}, kr, nodeB, cluster)
		if err == nil {
			got, err = io.ReadAll(c)
		}
		switch name {
		case "session":
			if err != nil || string(got) != "hello, world" {
				t.Errorf("seed %s: read %q, %v", name, got, err)
			}
		case "session-cut":
			if !errors.Is(err, seal.ErrTruncated) || string(got) != "hello, world" {
				t.Errorf("seed %s: read %q, %v", name, got, err)
			}
		default:
			if err == nil {
				t.Errorf("seed %s: read %q", name, got)
			}
		}
	}
}
