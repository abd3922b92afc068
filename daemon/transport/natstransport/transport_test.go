package natstransport_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/transport"
	"github.com/cloudknowledge/ck/daemon/transport/natstransport"
)

func TestNATSDatagramsBothWays(t *testing.T) {
	s := startServer(t, 0)
	subj := subject(t)
	a, b := open(t, s.ClientURL(), subj), open(t, s.ClientURL(), subj)
	connected(t, a, b)
	if a.Addr() == b.Addr() || !a.Addr().Addr().Is6() || a.Addr().Addr().As16()[0] != 0xfd {
		t.Fatalf("addresses %s and %s: want two distinct ULAs", a.Addr(), b.Addr())
	}
	if err := a.SendTo(b.Addr(), []byte("to b")); err != nil {
		t.Fatal(err)
	}
	if p := recv(t, b); p.From != a.Addr() || string(p.Buf) != "to b" {
		t.Errorf("b got %q from %s, want %q from %s", p.Buf, p.From, "to b", a.Addr())
	}
	if err := b.SendTo(a.Addr(), []byte("to a")); err != nil {
		t.Fatal(err)
	}
	if p := recv(t, a); p.From != b.Addr() || string(p.Buf) != "to a" {
		t.Errorf("a got %q from %s, want %q from %s", p.Buf, p.From, "to a", b.Addr())
	}
	if err := a.SendTo(b.Addr(), make([]byte, transport.DefaultMaxDatagram+1)); !errors.Is(err, transport.ErrTooLarge) {
		t.Errorf("SendTo of max_datagram+1 bytes: %v, want ErrTooLarge", err)
	}
	if st := a.Stats(); st.DatagramsSent != 1 || st.DatagramsReceived != 1 {
		t.Errorf("a's stats %+v: want 1 sent, 1 received", st)
	}
}

func TestNATSBroadcastReachesAllButSelf(t *testing.T) {
	s := startServer(t, 0)
	subj := subject(t)
	a, b, c := open(t, s.ClientURL(), subj), open(t, s.ClientURL(), subj), open(t, s.ClientURL(), subj)
	other := open(t, s.ClientURL(), subject(t)) // another cluster
	connected(t, a, b, c, other)
	if err := a.Broadcast([]byte("hello all")); err != nil {
		t.Fatal(err)
	}
	for _, tr := range []*natstransport.Transport{b, c} {
		if p := recv(t, tr); p.From != a.Addr() || string(p.Buf) != "hello all" {
			t.Errorf("%s got %q from %s", tr.Addr(), p.Buf, p.From)
		}
	}
	// b sends only after it heard a's broadcast, so had a heard its own,
	// it would come before b's marker.
	b.SendTo(a.Addr(), []byte("marker"))
	if p := recv(t, a); string(p.Buf) != "marker" {
		t.Errorf("a got %q from %s first, want b's marker (its own broadcast came back?)", p.Buf, p.From)
	}
	select {
	case p := <-other.Packets():
		t.Errorf("a node of another cluster got %q", p.Buf)
	case <-time.After(100 * time.Millisecond):
	}
}

// With no server up, Broadcast and SendTo return at once, dropping and
// counting; Dial fails at once. Once a server comes up on the URL, the
// transport connects by itself.
func TestNATSDownNeverBlocks(t *testing.T) {
	s := startServer(t, 0)
	port := serverPort(s)
	s.Shutdown()
	s.WaitForShutdown()
	subj := subject(t)
	tr := open(t, s.ClientURL(), subj)
	start := time.Now()
	for range 10000 {
		if err := tr.Broadcast([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		tr.SendTo(netip.MustParseAddrPort("[fd00::1]:7"), []byte("hi"))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("20,000 sends with NATS down took %s", d)
	}
	if st := tr.Stats(); st.SendDropped != 20000 || st.DatagramsSent != 0 {
		t.Errorf("stats %+v: want 20000 dropped, none sent", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start = time.Now()
	if _, err := tr.Dial(ctx, netip.MustParseAddrPort("[fd00::1]:7")); err == nil || time.Since(start) > time.Second {
		t.Errorf("Dial with NATS down: %v after %s, want an error at once", err, time.Since(start))
	}
	startServer(t, port)
	peer := open(t, s.ClientURL(), subj)
	connected(t, tr, peer)
	checkFor(t, 10*time.Second, func() error { // until tr's subscriptions are back
		tr.SendTo(peer.Addr(), []byte("back"))
		select {
		case p := <-peer.Packets():
			if p.From != tr.Addr() || string(p.Buf) != "back" {
				t.Fatalf("got %q from %s", p.Buf, p.From)
			}
			return nil
		case <-time.After(100 * time.Millisecond):
			return errors.New("no datagram after the server came up")
		}
	})
}

func TestNATSDialNobody(t *testing.T) {
	s := startServer(t, 0)
	tr := open(t, s.ClientURL(), subject(t))
	connected(t, tr)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := tr.Dial(ctx, netip.MustParseAddrPort("[fd00::1]:7"))
	if !errors.Is(err, natstransport.ErrRefused) || time.Since(start) > 2*time.Second {
		t.Errorf("Dial to nobody: %v after %s, want ErrRefused at once", err, time.Since(start))
	}
}

func TestNATSStreamQueueFullRefuses(t *testing.T) {
	s := startServer(t, 0)
	subj := subject(t)
	a := open(t, s.ClientURL(), subj)
	b := open(t, s.ClientURL(), subj, func(c *natstransport.Config) { c.StreamQueue = 1 })
	connected(t, a, b)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c1, err := a.Dial(ctx, b.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	if _, err := a.Dial(ctx, b.Addr()); !errors.Is(err, natstransport.ErrRefused) {
		t.Errorf("second Dial with b's queue full: %v, want ErrRefused", err)
	}
	if st := b.Stats(); st.StreamsAccepted != 1 || st.StreamsRefused != 1 {
		t.Errorf("b's stats %+v: want 1 accepted, 1 refused", st)
	}
}

func TestNATSBadConfig(t *testing.T) {
	for _, cfg := range []natstransport.Config{
		{Subject: "ck.cluster.x"},
		{URLs: []string{"nats://127.0.0.1:1"}, Subject: "ck.cluster.*"},
		{URLs: []string{"nats://127.0.0.1:1"}, Subject: ""},
		{URLs: []string{"nats://127.0.0.1:1"}, Subject: "ck..x"},
		{URLs: []string{"nats://127.0.0.1:1"}, Subject: "ck.x", Window: 1000},
	} {
		if tr, err := natstransport.New(cfg); err == nil {
			tr.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}
