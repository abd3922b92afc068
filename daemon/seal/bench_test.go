package seal_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"testing"

	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/daemon/wire"
)

// benchFrame is a frame with a ~200-byte body, a typical UPDATE.
func benchFrame(b *testing.B, d wire.Sealer) []byte {
	b.Helper()
	frame, err := wire.Encode(wire.Header{Sender: nodeA, Epoch: epoch1, Counter: 1}, update(), d)
	if err != nil {
		b.Fatal(err)
	}
	return frame
}

// BenchmarkSealDatagram: sealing one ~200-byte body in place.
func BenchmarkSealDatagram(b *testing.B) {
	d := seal.NewDatagram(ring(b, key("a")), cluster, nil)
	frame := benchFrame(b, d)
	hdr := frame[:wire.HeaderSize]
	plain, _ := d.Open(mustHeader(b, frame), bytes.Clone(frame[wire.HeaderSize:]))
	buf := make([]byte, len(plain), len(plain)+seal.TagSize)
	b.SetBytes(int64(len(plain)))
	b.ReportAllocs()
	for b.Loop() {
		copy(buf, plain)
		if _, err := d.Seal(hdr, buf); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkOpenDatagram: authenticating and decrypting one ~200-byte body
// in place (a cached subkey, no replay filter: BenchmarkReplayCheck adds
// that).
func BenchmarkOpenDatagram(b *testing.B) {
	d := seal.NewDatagram(ring(b, key("a")), cluster, nil)
	frame := benchFrame(b, d)
	h := mustHeader(b, frame)
	scratch := make([]byte, len(frame)-wire.HeaderSize)
	b.SetBytes(int64(len(scratch) - seal.TagSize))
	b.ReportAllocs()
	for b.Loop() {
		copy(scratch, frame[wire.HeaderSize:])
		if _, err := d.Open(h, scratch); err != nil {
			b.Fatal(err)
		}
	}
}

func mustHeader(b testing.TB, frame []byte) wire.Header {
	h, err := wire.ParseHeader(frame)
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// BenchmarkReplayCheck: the replay filter alone, frames in order.
func BenchmarkReplayCheck(b *testing.B) {
	r := seal.NewReplay(&seal.MemoryEpochs{})
	c := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		c++
		if err := r.Check(nodeA, epoch1, c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRejectBogus: refusing a frame under a key id the ring lacks,
// and a forged frame under one it holds — from a known sender (cached
// subkey) or an unknown one (derived, and not cached) — with 1 and 8 keys
// in the ring. None grows with the ring.
func BenchmarkRejectBogus(b *testing.B) {
	for _, size := range []int{1, 8} {
		keys := [][]byte{key("a")}
		for i := 1; i < size; i++ {
			keys = append(keys, key(fmt.Sprint(i)))
		}
		d := seal.NewDatagram(ring(b, keys...), cluster, nil)
		good := benchFrame(b, d)
		forged := bytes.Clone(good)
		forged[len(forged)-1] ^= 1
		unknown := bytes.Clone(good)
		copy(unknown[4:8], []byte{0xde, 0xad, 0xbe, 0xef})
		for name, f := range map[string][]byte{"unknown-id": unknown, "forged": forged, "forged-new-sender": forged} {
			b.Run(fmt.Sprintf("%s/keys=%d", name, size), func(b *testing.B) {
				h := mustHeader(b, f)
				scratch := make([]byte, len(f)-wire.HeaderSize)
				b.ReportAllocs()
				for b.Loop() {
					if name == "forged-new-sender" {
						// A sender never heard: its subkey must be derived.
						h.Epoch++
					}
					copy(scratch, f[wire.HeaderSize:])
					if _, err := d.Open(h, scratch); err == nil {
						b.Fatal("opened")
					}
				}
			})
		}
	}
}

// BenchmarkStreamThroughput: one direction of a sealed stream over
// loopback TCP, 64 KiB writes; "plain" is the same without sealing.
func BenchmarkStreamThroughput(b *testing.B) {
	kr := ring(b, key("a"))
	for _, sealed := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "sealed"}[sealed], func(b *testing.B) {
			var w io.WriteCloser
			var r io.Reader
			if sealed {
				w, r = pair(b, kr, kr)
			} else {
				l := listen(b)
				accepted := make(chan net.Conn, 1)
				go func() { c, _ := l.Accept(); accepted <- c }()
				c, err := net.Dial("tcp", l.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				s := <-accepted
				b.Cleanup(func() { c.Close(); s.Close() })
				w, r = c, s
			}
			buf := make([]byte, 64<<10)
			done := make(chan error, 1)
			go func() {
				_, err := io.Copy(io.Discard, r)
				done <- err
			}()
			b.SetBytes(int64(len(buf)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := w.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			w.Close()
			<-done
		})
	}
}

// BenchmarkHandshake: what a sealed stream adds to opening a connection
// (a fetch), over loopback TCP.
func BenchmarkHandshake(b *testing.B) {
	kr := ring(b, key("a"))
	l := listen(b)
	go func() {
		for {
			raw, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer raw.Close()
				if c, _, err := seal.Server(raw, kr, nodeB, cluster); err == nil {
					c.Write([]byte{1})
					c.Close()
				}
			}()
		}
	}()
	one := make([]byte, 1)
	b.ReportAllocs()
	for b.Loop() {
		raw, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		c, err := seal.Client(raw, kr, nodeA, nodeB, cluster)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, one); err != nil {
			b.Fatal(err)
		}
		c.Close()
	}
}
