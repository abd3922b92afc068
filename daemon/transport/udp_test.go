package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/poll"

	"golang.org/x/net/ipv4"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// The three-node tests on lo: every Broadcast reaches the other two and
// never comes back to its sender through Packets.
func TestModesOnLoopback(t *testing.T) {
	for _, mode := range []string{ModeMulticast, ModeBroadcast, ModePeers} {
		t.Run(mode, func(t *testing.T) {
			nodes := startTrio(t, mode, Config{})
			for _, n := range nodes {
				if err := n.Broadcast([]byte("hello " + n.Addr().String())); err != nil {
					t.Fatal(err)
				}
			}
			for i, n := range nodes {
				for j, m := range nodes {
					if i != j {
						n.await(t, "hello "+m.Addr().String(), m.Addr())
					}
				}
			}
			for _, n := range nodes {
				if n.has("hello " + n.Addr().String()) {
					t.Errorf("%v received its own broadcast", n.Addr())
				}
			}
			if mode == ModePeers {
				for _, n := range nodes {
					if s := n.Stats(); s.DatagramsSent != 2 || s.DroppedSelf != 0 {
						t.Errorf("peers: %v sent %d datagrams, dropped %d of its own; want 2, 0", n.Addr(), s.DatagramsSent, s.DroppedSelf)
					}
				}
				return
			}
			// Multicast loops back by choice, broadcast always: both are
			// dropped on arrival, by source.
			for _, n := range nodes {
				waitFor(t, 5*time.Second, func() error {
					if s := n.Stats(); s.DroppedSelf != 1 {
						return fmt.Errorf("%v: dropped %d of its own datagrams, want 1", n.Addr(), s.DroppedSelf)
					}
					return nil
				})
			}
		})
	}
}

// Nodes of different groups on one shared port do not hear each other.
func TestGroupsIsolated(t *testing.T) {
	port := freePort(t)
	var nodes []*node
	for range 2 {
		cfg := Config{Mode: ModeMulticast, Interface: "lo", Group: randomGroup(), Port: port, Bind: netip.AddrPortFrom(loopback, 0)}
		nodes = append(nodes, collect(t, newUDP(t, cfg)))
	}
	a, b := nodes[0], nodes[1]
	if a.cfg.Group == b.cfg.Group {
		t.Skipf("drew group %v twice", a.cfg.Group)
	}
	if err := a.Broadcast([]byte("group a")); err != nil {
		t.Fatal(err)
	}
	if err := a.SendTo(b.Addr(), []byte("marker")); err != nil {
		t.Fatal(err)
	}
	b.await(t, "marker", a.Addr())
	waitFor(t, 5*time.Second, func() error {
		if a.Stats().DroppedSelf != 1 {
			return fmt.Errorf("a's own broadcast has not looped back")
		}
		return nil
	})
	if s := b.Stats(); b.has("group a") || s.DatagramsReceived != 1 {
		t.Errorf("b heard another group: %+v", s)
	}
}

func TestSendToReachesOne(t *testing.T) {
	nodes := startTrio(t, ModeMulticast, Config{})
	a, b, c := nodes[0], nodes[1], nodes[2]
	if err := a.SendTo(b.Addr(), []byte("to b")); err != nil {
		t.Fatal(err)
	}
	if err := a.SendTo(c.Addr(), []byte("to c")); err != nil {
		t.Fatal(err)
	}
	b.await(t, "to b", a.Addr())
	c.await(t, "to c", a.Addr())
	if b.has("to c") || c.has("to b") || a.has("to b") || a.has("to c") {
		t.Error("a unicast datagram reached another node")
	}
}

func TestStreamRoundTrip(t *testing.T) {
	nodes := startTrio(t, ModeMulticast, Config{})
	a, b := nodes[0], nodes[1]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, err := a.Dial(ctx, b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	var srv net.Conn
	select {
	case srv = <-b.Streams():
	case <-ctx.Done():
		t.Fatal("no stream accepted")
	}
	defer srv.Close()
	if got := srv.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); got != a.Addr().Addr() {
		t.Errorf("stream from %v, want %v", got, a.Addr().Addr())
	}
	expectRead(t, srv, "ping")
	if _, err := srv.Write([]byte("pong")); err != nil {
		t.Fatal(err)
	}
	expectRead(t, conn, "pong")
	if s := a.Stats(); s.StreamsDialed != 1 {
		t.Errorf("StreamsDialed = %d, want 1", s.StreamsDialed)
	}
	if s := b.Stats(); s.StreamsAccepted != 1 {
		t.Errorf("StreamsAccepted = %d, want 1", s.StreamsAccepted)
	}
}

// A datagram longer than MaxDatagram is refused on send and dropped, and
// counted, on receipt — on the shared group socket and the unicast one.
func TestTooBig(t *testing.T) {
	const max = 512
	nodes := startTrio(t, ModeMulticast, Config{MaxDatagram: max})
	a := nodes[0]
	if err := a.Broadcast(make([]byte, max+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("Broadcast of %d bytes: %v, want ErrTooLarge", max+1, err)
	}
	if err := a.SendTo(nodes[1].Addr(), make([]byte, max+1)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("SendTo of %d bytes: %v, want ErrTooLarge", max+1, err)
	}

	raw := rawSender(t)
	group := nodes[0].dests[0]
	big := []byte(strings.Repeat("x", max+1))
	fit := []byte(strings.Repeat("y", max))
	for _, d := range [][]byte{big, fit} {
		if _, err := raw.WriteTo(d, nil, net.UDPAddrFromAddrPort(group)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := raw.WriteTo(big, nil, net.UDPAddrFromAddrPort(a.Addr())); err != nil {
		t.Fatal(err)
	}
	for i, n := range nodes {
		n.await(t, string(fit), netip.AddrPort{})
		want := uint64(1)
		if i == 0 {
			want = 2
		}
		waitFor(t, 5*time.Second, func() error {
			if got := n.Stats().DroppedTooBig; got != want {
				return fmt.Errorf("node %d: DroppedTooBig = %d, want %d", i, got, want)
			}
			return nil
		})
		if n.has(string(big)) {
			t.Errorf("node %d delivered a datagram of %d bytes", i, max+1)
		}
	}
}

// A reader that falls behind costs datagrams and streams, never blocks.
func TestQueuesFull(t *testing.T) {
	u := newUDP(t, Config{Mode: ModePeers, Bind: netip.AddrPortFrom(loopback, 0), PacketQueue: 2, StreamQueue: 1})
	from := newUDP(t, Config{Mode: ModePeers, Bind: netip.AddrPortFrom(loopback, 0)})
	for i := range 10 {
		if err := from.SendTo(u.Addr(), []byte{byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for range 3 {
		c, err := from.Dial(ctx, u.Addr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	waitFor(t, 5*time.Second, func() error {
		s := u.Stats()
		if s.DatagramsReceived != 10 || s.DroppedQueueFull != 8 || s.StreamsAccepted != 1 || s.StreamsRefused != 2 {
			return fmt.Errorf("stats %+v; want 10 received, 8 dropped, 1 stream accepted, 2 refused", s)
		}
		return nil
	})
	if n := len(u.Packets()); n != 2 {
		t.Errorf("%d packets queued, want 2", n)
	}
}

func TestCloseIdempotentAndUnblocks(t *testing.T) {
	port := freePort(t)
	u, err := New(Config{Mode: ModeMulticast, Interface: "lo", Group: randomGroup(), Port: port, Bind: netip.AddrPortFrom(loopback, 0)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan string, 2)
	go func() {
		for range u.Packets() {
		}
		done <- "packets"
	}()
	go func() {
		for range u.Streams() {
		}
		done <- "streams"
	}()
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- u.Close() }()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	for range 2 {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("a reader was not released by Close")
		}
	}
	if err := u.Close(); err != nil {
		t.Errorf("third Close: %v", err)
	}
	if err := u.Broadcast([]byte("x")); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Broadcast after Close: %v, want net.ErrClosed", err)
	}
	if _, err := u.Dial(context.Background(), u.Addr()); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Dial after Close: %v, want net.ErrClosed", err)
	}
	// The shared port and the unicast port are free again.
	v := newUDP(t, Config{Mode: ModeMulticast, Interface: "lo", Group: randomGroup(), Port: port, Bind: u.Addr()})
	if v.Addr() != u.Addr() {
		t.Errorf("rebound at %v, want %v", v.Addr(), u.Addr())
	}
}

func TestConfigErrors(t *testing.T) {
	g := netip.MustParseAddr("239.192.1.1")
	for _, tc := range []struct {
		name  string
		cfg   Config
		field string
	}{
		{"mode", Config{Mode: "carrier-pigeon"}, "mode:"},
		{"port", Config{Mode: ModeMulticast, Interface: "lo", Group: g}, "port:"},
		{"no interface", Config{Mode: ModeMulticast, Group: g, Port: 7}, "interface:"},
		{"bad interface", Config{Mode: ModeMulticast, Interface: "ck-nonesuch", Group: g, Port: 7}, "interface:"},
		{"unicast group", Config{Mode: ModeMulticast, Interface: "lo", Group: loopback, Port: 7}, "group:"},
		{"broadcast source", Config{Mode: ModeBroadcast, Port: 7}, "broadcast:"},
		{"max_datagram", Config{Mode: ModePeers, MaxDatagram: 70000}, "max_datagram:"},
		{"peer", Config{Mode: ModePeers, Peers: []netip.AddrPort{netip.MustParseAddrPort("0.0.0.0:1")}}, "peers:"},
		{"ipv6 multicast bind", Config{Mode: ModeMulticast, Interface: "lo", Group: g, Port: 7, Bind: netip.MustParseAddrPort("[::1]:0")}, "bind:"},
		{"unspecified bind", Config{Mode: ModePeers, Bind: netip.MustParseAddrPort("0.0.0.0:0")}, "advertise:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := New(tc.cfg)
			if err == nil {
				u.Close()
				t.Fatalf("New succeeded")
			}
			if !strings.HasPrefix(err.Error(), tc.field) {
				t.Errorf("error %q does not start with %q", err, tc.field)
			}
		})
	}
}

func TestInterfaceIPv4(t *testing.T) {
	p, err := InterfaceIPv4("lo")
	if err != nil {
		t.Fatal(err)
	}
	if p != netip.MustParsePrefix("127.0.0.1/8") {
		t.Errorf("lo: %v, want 127.0.0.1/8", p)
	}
	for in, want := range map[string]string{
		"127.0.0.1/8":    "127.255.255.255",
		"10.1.2.3/24":    "10.1.2.255",
		"192.168.5.9/20": "192.168.15.255",
		"10.0.0.1/30":    "10.0.0.3",
	} {
		if got := broadcastOf(netip.MustParsePrefix(in)); got.String() != want {
			t.Errorf("broadcastOf(%s) = %v, want %s", in, got, want)
		}
	}
}

// node is a transport under test with everything it received.
type node struct {
	*UDP
	mu  sync.Mutex
	got []Packet
}

// startTrio starts three nodes on lo in mode, on a random shared port and
// (multicast) a random group. cfg supplies any further fields.
func startTrio(t *testing.T, mode string, cfg Config) []*node {
	t.Helper()
	cfg.Mode, cfg.Interface = mode, "lo"
	cfg.Port, cfg.Group = freePort(t), randomGroup()
	if mode == ModePeers {
		cfg.Interface, cfg.Port = "", 0
		for _, p := range freePorts(t, 3) {
			cfg.Peers = append(cfg.Peers, netip.AddrPortFrom(loopback, uint16(p)))
		}
	}
	var nodes []*node
	for i := range 3 {
		c := cfg
		c.Bind = netip.AddrPortFrom(loopback, 0)
		if mode == ModePeers {
			c.Bind = cfg.Peers[i]
		}
		nodes = append(nodes, collect(t, newUDP(t, c)))
	}
	return nodes
}

func newUDP(t *testing.T, cfg Config) *UDP {
	t.Helper()
	u, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { u.Close() })
	return u
}

func collect(t *testing.T, u *UDP) *node {
	n := &node{UDP: u}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for p := range u.Packets() {
			n.mu.Lock()
			n.got = append(n.got, p)
			n.mu.Unlock()
		}
	}()
	t.Cleanup(func() { u.Close(); <-done })
	return n
}

func (n *node) has(payload string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, p := range n.got {
		if string(p.Buf) == payload {
			return true
		}
	}
	return false
}

// await waits for payload, and checks its source unless from is zero.
func (n *node) await(t *testing.T, payload string, from netip.AddrPort) {
	t.Helper()
	waitFor(t, 5*time.Second, func() error {
		n.mu.Lock()
		defer n.mu.Unlock()
		for _, p := range n.got {
			if string(p.Buf) != payload {
				continue
			}
			if from.IsValid() && p.From != from {
				t.Fatalf("%v: %.20q came from %v, want %v", n.Addr(), payload, p.From, from)
			}
			return nil
		}
		return fmt.Errorf("%v has not received %.20q", n.Addr(), payload)
	})
}

func waitFor(t *testing.T, wait time.Duration, check func() error) {
	t.Helper()
	poll.Until(t, wait, 10*time.Millisecond, check)
}

func expectRead(t *testing.T, c net.Conn, want string) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != want {
		t.Fatalf("read %q, %v; want %q", buf, err, want)
	}
}

// freePorts returns n distinct ports that were free for UDP and TCP on
// 127.0.0.1.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		uc, ln, err := listenUnicast(netip.AddrPortFrom(loopback, 0))
		if err != nil {
			t.Fatal(err)
		}
		defer uc.Close()
		defer ln.Close()
		ports = append(ports, uc.LocalAddr().(*net.UDPAddr).Port)
	}
	return ports
}

func freePort(t *testing.T) int { return freePorts(t, 1)[0] }

func randomGroup() netip.Addr {
	return netip.AddrFrom4([4]byte{239, 192, byte(rand.IntN(256)), byte(1 + rand.IntN(254))})
}

// rawSender is a plain UDP socket that can multicast on lo, TTL 0.
func rawSender(t *testing.T) *ipv4.PacketConn {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: loopback.AsSlice()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	p := ipv4.NewPacketConn(c)
	for _, err := range []error{p.SetMulticastInterface(lo), p.SetMulticastLoopback(true), p.SetMulticastTTL(0)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// Datagrams the kernel drops because a socket's buffer is full are counted
// (SO_RXQ_OVFL): every datagram sent is either read or counted dropped.
func TestKernelDropsCounted(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SO_RXQ_OVFL is Linux's")
	}
	// The smallest buffer the kernel grants holds a datagram or two.
	u := newUDP(t, Config{Mode: ModePeers, Bind: netip.AddrPortFrom(loopback, 0), ReadBuffer: 1, PacketQueue: 1 << 16})
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(u.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const burst = 5000
	payload := make([]byte, 1000)
	for range burst {
		if _, err := c.Write(payload); err != nil {
			t.Fatal(err)
		}
	}
	// The count travels with the next datagram read: send one more at a
	// time until every datagram sent is read or counted.
	markers := 0
	waitFor(t, 10*time.Second, func() error {
		s := u.Stats()
		if got := s.DatagramsReceived + s.DroppedKernel; got != uint64(burst+markers) {
			if _, err := c.Write(payload); err != nil {
				return err
			}
			markers++
			return fmt.Errorf("%d sent, %d read, %d counted as dropped", burst+markers-1, s.DatagramsReceived, s.DroppedKernel)
		}
		return nil
	})
	s := u.Stats()
	if s.DroppedKernel == 0 {
		t.Errorf("%d datagrams sent at once into a tiny buffer: %d read, %d counted as dropped by the kernel", burst, s.DatagramsReceived, s.DroppedKernel)
	}
	t.Logf("%d read, %d dropped by the kernel", s.DatagramsReceived, s.DroppedKernel)
}

// The receive buffer asked for is granted (up to net.core.rmem_max, or
// beyond it with CAP_NET_ADMIN).
func TestReadBufferSized(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads the granted size on Linux")
	}
	u := newUDP(t, Config{Mode: ModePeers, Bind: netip.AddrPortFrom(loopback, 0), ReadBuffer: 1 << 20})
	got, err := prepareReceive(u.uc, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if got < 200<<10 { // the usual default, at least, whatever rmem_max says
		t.Errorf("receive buffer %d bytes", got)
	}
	t.Logf("asked 1 MiB, granted %d bytes", got)
}

// Deliver: once set, datagrams from both sockets (the group's and the
// unicast one) go to the function, on the read loops, and none to
// Packets; what came before stays on Packets; own broadcasts are still
// dropped; Close returns and closes Packets.
func TestDeliver(t *testing.T) {
	nodes := startTrio(t, ModeMulticast, Config{})
	a, b := nodes[0], nodes[1]
	if err := a.SendTo(b.Addr(), []byte("before")); err != nil {
		t.Fatal(err)
	}
	b.await(t, "before", a.Addr())
	var mu sync.Mutex
	var got []Packet
	b.Deliver(func(p Packet) {
		mu.Lock()
		defer mu.Unlock()
		got = append(got, p)
	})
	if err := a.Broadcast([]byte("group")); err != nil {
		t.Fatal(err)
	}
	if err := a.SendTo(b.Addr(), []byte("unicast")); err != nil {
		t.Fatal(err)
	}
	if err := b.Broadcast([]byte("own")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(got) < 2 {
			return fmt.Errorf("delivered %d datagrams, want 2", len(got))
		}
		return nil
	})
	waitFor(t, 5*time.Second, func() error {
		if s := b.Stats(); s.DroppedSelf != 1 {
			return fmt.Errorf("dropped %d own datagrams, want 1", s.DroppedSelf)
		}
		return nil
	})
	mu.Lock()
	seen := map[string]netip.AddrPort{}
	for _, p := range got {
		seen[string(p.Buf)] = p.From
	}
	mu.Unlock()
	for _, want := range []string{"group", "unicast"} {
		if from, ok := seen[want]; !ok || from != a.Addr() {
			t.Errorf("%q: delivered %v from %v, want from %v", want, ok, from, a.Addr())
		}
	}
	if len(seen) != 2 {
		t.Errorf("delivered %v, want group and unicast only", seen)
	}
	for _, p := range []string{"group", "unicast", "own"} {
		if b.has(p) {
			t.Errorf("%q came through Packets after Deliver", p)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestPeersIPv6: two nodes in peers mode on ::1 exchange datagrams, each
// seeing the other's address as the source (the raw socket reads and
// writes on Linux build their own sockaddrs).
func TestPeersIPv6(t *testing.T) {
	probe, err := net.ListenUDP("udp6", &net.UDPAddr{IP: net.IPv6loopback})
	if err != nil {
		t.Skipf("no IPv6 loopback here: %v", err)
	}
	probe.Close()
	ports := freePorts(t, 2)
	var peers []netip.AddrPort
	for _, p := range ports {
		peers = append(peers, netip.AddrPortFrom(netip.IPv6Loopback(), uint16(p)))
	}
	var nodes []*node
	for i := range 2 {
		nodes = append(nodes, collect(t, newUDP(t, Config{Mode: ModePeers, Peers: peers, Bind: peers[i]})))
	}
	for i, n := range nodes {
		if err := n.Broadcast(fmt.Appendf(nil, "from %d", i)); err != nil {
			t.Fatal(err)
		}
		if err := n.SendTo(nodes[1-i].Addr(), fmt.Appendf(nil, "unicast from %d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for i, n := range nodes {
		other := nodes[1-i]
		n.await(t, fmt.Sprintf("from %d", 1-i), other.Addr())
		n.await(t, fmt.Sprintf("unicast from %d", 1-i), other.Addr())
	}
}
