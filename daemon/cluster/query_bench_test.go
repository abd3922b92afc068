package cluster

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/daemon/transport"
	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// BenchmarkAnswerQuery is what one node spends answering a fresh read's
// QUERY (docs/BENCHMARKS.md, Fresh reads and idle traffic): a real node on
// a real UDP socket on loopback, a sealed cluster with a replay filter
// over a real marks file, a bbolt store of 1,000 keys of 256 bytes. The
// asker is a bare socket sending frames sealed beforehand, one at a time,
// and reading each ANSWER without decoding it, so nearly all of the CPU
// and allocations measured are the answering node's: the transport's
// read, unseal, replay check, decode, the store read, encode, seal and
// send. "version" asks holding the newest version (the usual case: the
// answer is the version only), "record" holding none (the answer carries
// the record).
//
//	go test -run '^$' -bench AnswerQuery -benchmem -cpuprofile /tmp/q.prof ./daemon/cluster/
func BenchmarkAnswerQuery(b *testing.B) {
	const keys = 1000
	st, addr := benchAnsweringNode(b, keys)
	asker := benchAsker(b, addr)
	for _, tc := range []struct {
		name string
		have bool
	}{{"version", true}, {"record", false}} {
		b.Run(tc.name, func(b *testing.B) {
			frames := make([][]byte, b.N)
			for i := range frames {
				k := fmt.Sprintf("bench/%04d", i%keys)
				q := &wire.Query{ID: uint64(i) + 1, Key: k}
				if tc.have {
					rec, found, err := st.Peek(k)
					if err != nil || !found {
						b.Fatalf("%s: found %v, %v", k, found, err)
					}
					h := rec.Hash()
					q.HaveVV, q.HaveHash = rec.VV, &h
				}
				frames[i] = asker.frame(b, q)
			}
			buf := make([]byte, 2048)
			size := 0
			b.ReportAllocs()
			b.ResetTimer()
			cpu0 := processCPU(b)
			for i := range b.N {
				if _, err := asker.conn.Write(frames[i]); err != nil {
					b.Fatal(err)
				}
				n, err := asker.conn.Read(buf)
				if err != nil {
					b.Fatal(err)
				}
				size += n
			}
			b.StopTimer()
			b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(size)/float64(b.N), "answer-bytes")
		})
	}
}

// benchAskerConn is a bare asker: a connected UDP socket and what seals
// its frames.
type benchAskerConn struct {
	conn    *net.UDPConn
	sealer  wire.Sealer
	id      store.NodeID
	epoch   uint64
	counter uint64
}

func (a *benchAskerConn) frame(b *testing.B, msg wire.Message) []byte {
	a.counter++
	f, err := wire.Encode(wire.Header{Sender: a.id, Epoch: a.epoch, Counter: a.counter}, msg, a.sealer)
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// processCPU is the CPU time this process used so far (user and system,
// every thread): what a query costs, spinning threads and wake-ups
// included, where ns/op is only the round trip's wall time.
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

var benchClusterKey = []byte("0123456789abcdef0123456789abcdef")

func benchAsker(b *testing.B, to netip.AddrPort) *benchAskerConn {
	conn, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(to))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close() })
	ring, err := seal.NewKeyring(benchClusterKey)
	if err != nil {
		b.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(time.Hour))
	return &benchAskerConn{
		conn: conn, sealer: seal.NewDatagram(ring, "bench", nil),
		id: store.NodeID{0xa5, 1}, epoch: uint64(time.Now().UnixMilli()),
	}
}

// benchAnsweringNode runs a node as ckd runs it (UDP transport, sealed
// datagrams, replay marks in a file) over a store of keys records of 256
// bytes, flushed into the bbolt file.
func benchAnsweringNode(b *testing.B, keys int) (*store.Store, netip.AddrPort) {
	dir := b.TempDir()
	path := filepath.Join(dir, "data.db")
	st, err := store.Open(path, store.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 256)
	for i := range keys {
		if _, err := st.Set(context.Background(), fmt.Sprintf("bench/%04d", i), value, nil); err != nil {
			b.Fatal(err)
		}
	}
	st.Close() // flushes every record into the file, as a node at rest holds them
	if st, err = store.Open(path, store.Options{NoSync: true}); err != nil {
		b.Fatal(err)
	}
	ring, err := seal.NewKeyring(benchClusterKey)
	if err != nil {
		b.Fatal(err)
	}
	marks, err := seal.OpenEpochFile(filepath.Join(dir, "replay-marks"))
	if err != nil {
		b.Fatal(err)
	}
	tr, err := transport.New(transport.Config{Mode: transport.ModePeers, Bind: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		b.Fatal(err)
	}
	epoch, err := st.NextEpoch(uint64(time.Now().UnixMilli()))
	if err != nil {
		b.Fatal(err)
	}
	n := New(Config{
		NodeName: "answerer", Cluster: "bench", Epoch: epoch, Heartbeat: time.Hour, DeadAfter: 10 * time.Hour,
		MaxDatagram: 1200, TombstoneTTL: 168 * time.Hour,
		Keyring: ring, Sealer: seal.NewDatagram(ring, "bench", seal.NewReplay(marks)),
	}, tr, st)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		<-done
		st.Close()
	})
	return st, tr.Addr()
}
