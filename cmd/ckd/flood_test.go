package main

import (
	"context"
	"crypto/rand"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/poll"

	"golang.org/x/net/ipv4"

	"github.com/cloudknowledge/ck/daemon/seal"
	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/rpc"
	"github.com/cloudknowledge/ck/store"
)

// TestFlood sends 100,000 hostile datagrams at a real ckd with a cluster
// key — random bytes, mutated valid frames, frames under other keys and
// replays of a valid frame — half to its unicast port, half to the
// multicast group: the daemon stays up, its store does not change, it
// sends no reply, its resident memory grows by less than 32 MiB, and its
// drop counters add up to exactly what was sent.
func TestFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("floods a real daemon; skipped with -short")
	}
	const n = 100000
	seed := mrand.Uint64()
	t.Logf("seed %d", seed)
	rng := mrand.New(mrand.NewPCG(seed, 0))
	keyText := seal.GenerateKey()
	cluster := fmt.Sprintf("flood-%08x", rng.Uint32())
	port := 20000 + rng.IntN(40000)
	p := &ckdProc{hcl: fmt.Sprintf("cluster {\n  name = %q\n  port = %d\n  encrypt = %q\n}\n", cluster, port, keyText),
		// The runtime's default GOGC, not ckd's floor under the heap goal
		// (daemon.HeapFloor): the floor lets 32 MiB of garbage gather by
		// design (several times that resident under the race detector),
		// which would hide a leak of that size from the bound below.
		moreEnv: []string{"GOGC=100"}}
	p.start(t)
	c := p.c
	ctx := context.Background()
	eventually(t, 15*time.Second, "bootstrapped: alone", healthy(c))
	if _, err := c.Put(ctx, "before", []byte("flood"), rpc.WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	unicast := netip.MustParseAddrPort(st.Address)
	group := netip.AddrPortFrom(netip.MustParseAddr("239.192.72.37"), uint16(port))

	// The hostile frames.
	key, _ := seal.ParseKey(keyText)
	other, _ := seal.ParseKey(seal.GenerateKey())
	var sender store.NodeID
	rand.Read(sender[:])
	good := frameFactory(t, key, cluster, sender)
	wrong := frameFactory(t, other, cluster, sender)
	valid := good(1)
	frames := make([][]byte, n)
	for i := range frames {
		switch i % 4 {
		case 0: // random bytes, sometimes with our magic
			b := make([]byte, 1+rng.IntN(1100))
			rand.Read(b)
			if rng.IntN(2) == 0 && len(b) > 2 {
				b[0], b[1] = 'C', 'K'
			}
			frames[i] = b
		case 1: // a valid frame with one byte changed
			b := good(uint64(i + 2))
			b[rng.IntN(len(b))] ^= byte(1 + rng.IntN(255))
			frames[i] = b
		case 2: // another key
			frames[i] = wrong(uint64(i + 2))
		case 3: // a replay of the one valid frame, sent before the flood
			frames[i] = valid
		}
	}

	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	pc := ipv4.NewPacketConn(conn)
	lo, _ := net.InterfaceByName("lo")
	if err := pc.SetMulticastInterface(lo); err != nil {
		t.Fatal(err)
	}
	pc.SetMulticastTTL(0)
	pc.SetMulticastLoopback(true)
	// The valid frame goes first, alone: it is accepted (a HELLO from a
	// new member, which may be answered); every later copy is a replay.
	if _, err := conn.WriteToUDPAddrPort(valid, unicast); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	drain(conn)
	before := scrape(t, c)
	rssBefore := rss(t, p.pid())

	for i, b := range frames {
		to := unicast
		if i%2 == 1 {
			to = group
		}
		if _, err := conn.WriteToUDPAddrPort(b, to); err != nil {
			t.Fatal(err)
		}
		// Pace it so that the kernel never drops one (every datagram must be
		// counted): after each batch that fits a socket buffer, wait until
		// the daemon has read it — a race-enabled daemon is much slower.
		if i%200 == 199 {
			awaitRead(t, c, before, float64(i+1))
		}
	}
	// Wait until every datagram was read and judged (the counters settle).
	var after map[string]float64
	var received, dropped float64
	var reasons map[string]float64
	_ = poll.For(20*time.Second, 100*time.Millisecond, func() error { // the counts are checked below
		after = scrape(t, c)
		received, dropped, reasons = floodCounts(before, after)
		if received >= n && dropped == received {
			return nil
		}
		return fmt.Errorf("%v received, %v dropped", received, dropped)
	})
	conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
	if _, _, err := conn.ReadFromUDPAddrPort(make([]byte, 2048)); err == nil {
		t.Error("the daemon answered a hostile datagram")
	}

	t.Logf("dropped by reason: %v", reasons)
	if received != n || dropped != n {
		t.Errorf("sent %d hostile datagrams: %v received (own echoes aside), %v dropped", n, received, dropped)
	}
	if reasons["replay"] != n/4 {
		t.Errorf("%v replays dropped, want %d", reasons["replay"], n/4)
	}
	if grow := rss(t, p.pid()) - rssBefore; grow >= 32<<20 {
		t.Errorf("resident memory grew by %d MiB", grow>>20)
	}
	var keys []string
	c.ListAll(ctx, "", false, func(r rpc.Record) error { keys = append(keys, r.Key); return nil })
	if strings.Join(keys, ",") != "before" {
		t.Errorf("the store changed: %v", keys)
	}
	eventually(t, 10*time.Second, "health after the flood", healthy(c))
}

// awaitRead waits (at most 10 s, without failing: the counts are checked
// after) until the daemon has read at least want datagrams since before.
func awaitRead(t *testing.T, c *rpc.Client, before map[string]float64, want float64) {
	t.Helper()
	_ = poll.For(10*time.Second, time.Millisecond, func() error {
		if received, _, _ := floodCounts(before, scrape(t, c)); received < want {
			return fmt.Errorf("read %v datagrams, want %v", received, want)
		}
		return nil
	})
}

// floodCounts is what the daemon read (its own multicast echoes aside) and
// dropped, by reason, between two scrapes.
func floodCounts(before, after map[string]float64) (received, dropped float64, reasons map[string]float64) {
	reasons = map[string]float64{}
	for k, v := range after {
		if r, ok := strings.CutPrefix(k, `ck_datagrams_dropped_total{reason="`); ok {
			reasons[strings.TrimSuffix(r, `"}`)] = v - before[k]
			dropped += v - before[k]
		}
	}
	self := after[`ck_datagrams_self_total`] - before[`ck_datagrams_self_total`]
	received = after[`ck_datagrams_total{direction="received"}`] - before[`ck_datagrams_total{direction="received"}`] - self
	return received, dropped, reasons
}

// frameFactory returns a function making valid HELLO frames from sender,
// sealed with key, numbered by counter.
func frameFactory(t *testing.T, key []byte, cluster string, sender store.NodeID) func(counter uint64) []byte {
	ring, err := seal.NewKeyring(key)
	if err != nil {
		t.Fatal(err)
	}
	s := seal.NewDatagram(ring, cluster, seal.NewReplay(&seal.MemoryEpochs{}))
	epoch := uint64(time.Now().UnixMilli())
	return func(counter uint64) []byte {
		h := wire.Header{Sender: sender, Epoch: epoch, Counter: counter}
		b, err := wire.Encode(h, &wire.Hello{ID: sender, Name: "flood", Epoch: epoch, Addr: "127.0.0.1:9", Proto: wire.Proto}, s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
}

func drain(c *net.UDPConn) {
	buf := make([]byte, 2048)
	for {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, _, err := c.ReadFromUDPAddrPort(buf); err != nil {
			return
		}
	}
}

var metricLine = regexp.MustCompile(`(?m)^(ck_datagram\S*) (\S+)$`)

func scrape(t *testing.T, c *rpc.Client) map[string]float64 {
	t.Helper()
	text, err := c.Metrics(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, m := range metricLine.FindAllStringSubmatch(text, -1) {
		v, _ := strconv.ParseFloat(m[2], 64)
		out[m[1]] = v
	}
	return out
}

func rss(t *testing.T, pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB$`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no VmRSS")
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}
