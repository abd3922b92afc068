package simnet

import (
	"context"
	"io"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"
)

func TestBroadcastAndPartition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := New(1, Options{MinDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
		a, b, c := n.Endpoint(), n.Endpoint(), n.Endpoint()
		defer a.Close()
		defer b.Close()
		defer c.Close()
		a.Broadcast([]byte("hi"))
		time.Sleep(10 * time.Millisecond)
		for _, e := range []*Endpoint{b, c} {
			select {
			case p := <-e.Packets():
				if string(p.Buf) != "hi" || p.From != a.Addr() {
					t.Errorf("got %q from %v", p.Buf, p.From)
				}
			default:
				t.Errorf("%v got nothing", e.Addr())
			}
		}
		select {
		case p := <-a.Packets():
			t.Errorf("sender got its own broadcast %q", p.Buf)
		default:
		}

		n.Partition([]netip.AddrPort{a.Addr()}, []netip.AddrPort{b.Addr()})
		a.SendTo(b.Addr(), []byte("cut"))
		a.SendTo(c.Addr(), []byte("ok"))
		time.Sleep(10 * time.Millisecond)
		if len(b.Packets()) != 0 || len(c.Packets()) != 1 {
			t.Errorf("partition: b has %d, c has %d", len(b.Packets()), len(c.Packets()))
		}
		if _, err := a.Dial(context.Background(), b.Addr()); err == nil {
			t.Error("dial across a partition succeeded")
		}
		n.Heal()
		conn, err := a.Dial(context.Background(), b.Addr())
		if err != nil {
			t.Fatal(err)
		}
		go conn.Write([]byte("stream"))
		srv := <-b.Streams()
		buf := make([]byte, 6)
		if _, err := io.ReadFull(srv, buf); err != nil || string(buf) != "stream" {
			t.Errorf("stream read %q, %v", buf, err)
		}
		conn.Close()
		srv.Close()
	})
}

func TestLossAndDuplicationAreSeeded(t *testing.T) {
	// The same seed gives the same deliveries: record who got what, in order.
	run := func() (Stats, string) {
		var st Stats
		var got []byte
		synctest.Test(t, func(t *testing.T) {
			n := New(42, Options{Loss: 0.2, Dup: 0.2, MaxDelay: 3 * time.Millisecond})
			eps := []*Endpoint{n.Endpoint(), n.Endpoint(), n.Endpoint()}
			for i := 0; i < 300; i++ {
				eps[i%3].Broadcast([]byte{byte(i)})
			}
			time.Sleep(10 * time.Millisecond)
			for i, e := range eps {
				for len(e.Packets()) > 0 {
					got = append(got, byte(i), (<-e.Packets()).Buf[0])
				}
				e.Close()
			}
			st = n.Stats()
		})
		return st, string(got)
	}
	a, order := run()
	b, order2 := run()
	if a != b || order != order2 {
		t.Errorf("same seed, different runs: %+v vs %+v", a, b)
	}
	if a.Sent != 600 || a.Lost < 80 || a.Lost > 160 || a.Duplicated < 60 || a.Delivered != a.Sent-a.Lost+a.Duplicated-a.Dropped {
		t.Errorf("implausible stats for 20%% loss and duplication: %+v", a)
	}
}
