package cluster

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/transport"
	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// BenchmarkHandleUpdates is a peer's share of a replicated write past the
// wire codec (issue 12): a node on a real UDP socket on loopback, with a
// bbolt store and a conflict resolver as ckd has, handed decoded UPDATE
// datagrams of 11 writes each (256-byte values, keys over 1,000, each
// write descending from the one stored, every receiver asked to ACK), as
// its receive loop hands them over: it queues them, commits them and sends
// their ACK datagrams to the writer, a bare socket that reads and drops
// them. One op is one write; cpu-ns/op is the process's CPU per write.
//
//	go test -run '^$' -bench HandleUpdates -benchmem -cpuprofile /tmp/u.prof ./daemon/cluster/
func BenchmarkHandleUpdates(b *testing.B) {
	const perDatagram, keys = 11, 1000
	st, err := store.Open(filepath.Join(b.TempDir(), "data.db"), store.Options{NoSync: true, Resolver: lwwResolver{}})
	if err != nil {
		b.Fatal(err)
	}
	tr, err := transport.New(transport.Config{Mode: transport.ModePeers, Bind: netip.MustParseAddrPort("127.0.0.1:0")})
	if err != nil {
		b.Fatal(err)
	}
	n := New(Config{NodeName: "peer", Cluster: "bench", Epoch: 1, Heartbeat: time.Hour, DeadAfter: 10 * time.Hour,
		MaxDatagram: 1200, TombstoneTTL: 168 * time.Hour, Sealer: wire.Plaintext("bench")}, tr, st)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done; st.Close() })

	writer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { writer.Close() })
	go func() { // the writer reads its ACKs, so that none is lost to a full buffer
		buf := make([]byte, 2048)
		for {
			if _, err := writer.Read(buf); err != nil {
				return
			}
		}
	}()
	from := writer.LocalAddr().(*net.UDPAddr).AddrPort()

	origin := store.NodeID{0xa5}
	base := store.VV{{0xb5}: 7, {0xc5}: 9}
	value := make([]byte, 256)
	lamport := make([]uint64, keys)
	datagrams := make([][]*wire.Update, 0, b.N/perDatagram+1)
	for i := 0; i < b.N; i += perDatagram {
		var u *wire.Update
		for j := range min(perDatagram, b.N-i) {
			k := (i + j) % keys
			lamport[k] += 10
			l := 100 + lamport[k]
			vv := base.Clone()
			vv[origin] = l
			rec := store.Record{Key: fmt.Sprintf("bench/%04d", k), Value: value, VV: vv, Lamport: l, Origin: origin,
				LWW: store.Stamp{Lamport: l, Origin: origin}, At: time.Now().UnixMilli()}
			if u == nil {
				u = wire.NewUpdate(rec)
			} else {
				u.More = append(u.More, *wire.NewUpdate(rec))
			}
		}
		datagrams = append(datagrams, u.Updates())
	}
	applied := n.Stats().Applied
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	for _, ups := range datagrams {
		n.recvMu.Lock() // as dispatch holds it
		n.handleUpdates(ctx, from, ups)
		n.recvMu.Unlock()
	}
	for deadline := time.Now().Add(time.Minute); n.Stats().Applied-applied < uint64(b.N); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d writes applied after a minute", n.Stats().Applied-applied, b.N)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// lwwResolver is a conflict resolver that keeps the winner, standing in
// for ckd's (the store reads and resolves concurrent records only with
// one set).
type lwwResolver struct{}

func (lwwResolver) Resolve(_ string, w, _ *store.Record) ([]byte, bool, error) {
	return w.Value, w.Deleted, nil
}
