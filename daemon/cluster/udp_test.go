package cluster

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/transport"
	"github.com/cloudknowledge/ck/store"
)

// Three nodes on the real UDP transport (multicast on lo), which hands
// each datagram to the node on the goroutine that read it
// (transport.Direct): writes sent early (Overlap) are acknowledged for
// --wait 1 and 2 — the UPDATE handled at the peers and their ACKs at the
// writer, both through that path — and end up on every node, none
// dropped.
func TestUDPReplicateWait(t *testing.T) {
	group := netip.AddrFrom4([4]byte{239, 193, byte(rand.IntN(256)), byte(1 + rand.IntN(254))})
	port := freeUDPPort(t)
	t.Logf("group %v port %d", group, port)
	dir := t.TempDir()
	cluster := fmt.Sprintf("udp-%d", rand.Uint64()) // frames are tagged with it
	var nodes []*Node
	var stores []*store.Store
	var trs []*transport.UDP
	for i := range 3 {
		tr, err := transport.New(transport.Config{
			Mode: transport.ModeMulticast, Interface: "lo", Group: group, Port: port,
			Bind: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0),
		})
		if err != nil {
			t.Fatal(err)
		}
		st, err := store.Open(filepath.Join(dir, fmt.Sprintf("n%d.db", i)), store.Options{NoSync: true, LogSize: simLogSize})
		if err != nil {
			tr.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() { st.Close() })
		epoch, err := st.NextEpoch(uint64(time.Now().UnixMilli()))
		if err != nil {
			t.Fatal(err)
		}
		n := New(Config{
			NodeName: fmt.Sprintf("n%d", i), Cluster: cluster, Epoch: epoch,
			Heartbeat: time.Second, DeadAfter: 30 * time.Second, MaxDatagram: 1200, TombstoneTTL: time.Hour,
			Logger: testLogger(fmt.Sprintf("n%d", i)),
		}, tr, st)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); _ = n.Run(ctx) }()
		t.Cleanup(func() { cancel(); <-done })
		nodes, stores, trs = append(nodes, n), append(stores, st), append(trs, tr)
	}
	waitFor(t, 10*time.Second, func() error {
		for i, n := range nodes {
			if got := n.AlivePeers(); got != 2 {
				return fmt.Errorf("n%d sees %d alive peers, want 2", i, got)
			}
		}
		return nil
	})
	early := 0
	for want := 1; want <= 2; want++ {
		for k := range 20 {
			key := fmt.Sprintf("k%d-%d", want, k)
			ctx := Overlap(context.Background(), want)
			rec, err := stores[0].Set(ctx, key, []byte("v"), nil)
			if err != nil {
				t.Fatal(err)
			}
			if sentEarly(ctx) {
				early++
			}
			got, err := nodes[0].ReplicateWait(ctx, rec, want, 10*time.Second)
			if err != nil || got < want {
				t.Fatalf("%s: --wait %d: %d acks, %v", key, want, got, err)
			}
		}
	}
	// The first write moves the persisted reservation, so it goes after
	// its commit (early.go); the others go before theirs.
	if early != 39 {
		t.Errorf("%d of 40 writes went before their commit, want 39", early)
	}
	waitFor(t, 10*time.Second, func() error {
		for i, st := range stores[1:] {
			if n := st.Keys(); n != 40 {
				return fmt.Errorf("n%d holds %d keys, want 40", i+1, n)
			}
		}
		return nil
	})
	for i, tr := range trs {
		if s := tr.Stats(); s.DroppedQueueFull != 0 {
			t.Errorf("n%d: %d datagrams dropped for a full queue", i, s.DroppedQueueFull)
		}
	}
}

// freeUDPPort is a UDP port free on 127.0.0.1 a moment ago.
func freeUDPPort(t *testing.T) int {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}
