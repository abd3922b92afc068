package seal_test

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
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

// countingFile is an EpochFile counting its writes.
type countingFile struct {
	*seal.EpochFile
	saves int
}

func (c *countingFile) SaveAll(marks map[store.NodeID]seal.Mark) error {
	c.saves++
	return c.EpochFile.SaveAll(marks)
}

// BenchmarkReplayCheckSenders: the replay filter with 100 senders taking
// turns, over a real (fsync'd) EpochFile, on a clock advanced so that each
// sender sends at the given rate: ns/op includes the writes of marks,
// which saves/s counts per (simulated) second.
func BenchmarkReplayCheckSenders(b *testing.B) {
	const senders = 100
	for _, c := range []struct {
		name string
		rate float64 // frames a second, per sender
	}{{"busy", 50}, {"idle", 0.2}} {
		b.Run(c.name, func(b *testing.B) {
			es, err := seal.OpenEpochFile(filepath.Join(b.TempDir(), "replay-marks"))
			if err != nil {
				b.Fatal(err)
			}
			cf := &countingFile{EpochFile: es}
			r := seal.NewReplay(cf)
			now := time.Unix(0, 0)
			r.SetClock(func() time.Time { return now })
			step := time.Duration(float64(time.Second) / (c.rate * senders))
			ids := make([]store.NodeID, senders)
			for i := range ids {
				ids[i] = store.NodeID{0x5e, byte(i)}
			}
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				now = now.Add(step)
				if err := r.Check(ids[n%senders], epoch1, uint64(n/senders+1)); err != nil {
					b.Fatal(err)
				}
				n++
			}
			b.ReportMetric(float64(cf.saves)/now.Sub(time.Unix(0, 0)).Seconds(), "saves/s")
		})
	}
}
