package wire_test

import (
	"fmt"
	"testing"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// TestUpdateMore: the writes of a coalesced UPDATE round-trip with their
// own ACK requests and lifetimes, MoreSize and MoreHeadSize count the
// frame exactly (the sender packs datagrams by them), and an entry with a
// wrong hash or a More of its own is refused both ways.
func TestUpdateMore(t *testing.T) {
	s := wire.Plaintext(cluster)
	reqs := []wire.AckRequest{{}, {NoAck: true}, {AckFrom: []store.NodeID{nodeB}}, {AckFrom: []store.NodeID{nodeA, nodeB}}}
	for _, n := range []int{1, 2, 23, 24, 40} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			first := record("k/0", []byte("v"))
			u := wire.NewUpdate(first)
			want := wire.UpdateSize(&first, s)
			for i := 1; i < n; i++ {
				r := record(fmt.Sprintf("k/%d", i), make([]byte, i*7))
				if i%3 == 0 {
					r.TTL, r.Left = 60_000, 1000*int64(i)
				}
				m := wire.Update{Record: r, Hash: r.Hash(), AckRequest: reqs[i%len(reqs)]}
				u.More = append(u.More, m)
				want += wire.MoreSize(&r, m.AckRequest)
			}
			if n > 1 {
				want += wire.MoreHeadSize(n - 1)
			}
			b := mustEncode(t, hdrA, u, s)
			if len(b) != want {
				t.Errorf("frame is %d bytes, the sizes say %d", len(b), want)
			}
			_, m, err := wire.Decode(b, s)
			if err != nil {
				t.Fatal(err)
			}
			got := m.(*wire.Update).Updates()
			if len(got) != n {
				t.Fatalf("decoded %d writes, sent %d", len(got), n)
			}
			for i, g := range got[1:] {
				w := u.More[i]
				if g.Record.Key != w.Record.Key || g.Hash != w.Hash || g.Record.Left != w.Record.Left ||
					g.NoAck != w.NoAck || len(g.AckFrom) != len(w.AckFrom) {
					t.Errorf("write %d: got %+v, sent %+v", i+1, g, w)
				}
			}
		})
	}

	rec := record("k", []byte("v"))
	inner := wire.Update{Record: rec, Hash: rec.Hash(), More: []wire.Update{*wire.NewUpdate(rec)}}
	for name, m := range map[string]*wire.Update{
		"wrong hash": {Record: rec, Hash: rec.Hash(), More: []wire.Update{{Record: rec, Hash: store.Hash{1}}}},
		"nested":     {Record: rec, Hash: rec.Hash(), More: []wire.Update{inner}},
		"bad acks":   {Record: rec, Hash: rec.Hash(), More: []wire.Update{{Record: rec, Hash: rec.Hash(), AckRequest: wire.AckRequest{NoAck: true, AckFrom: []store.NodeID{nodeB}}}}},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := wire.Encode(hdrA, m, s); err == nil {
				t.Error("Encode accepted it")
			}
		})
	}
}

// TestUpdateFollow: an UPDATE's Follow round-trips, FollowSize counts it
// exactly (the sender reserves room by it), and a frame without it reads
// as 0, as a sender written before the field sends.
func TestUpdateFollow(t *testing.T) {
	s := wire.Plaintext(cluster)
	rec := record("k", []byte("v"))
	base := len(mustEncode(t, hdrA, wire.NewUpdate(rec), s))
	for _, f := range []uint8{0, 1, 23, 24, wire.MaxFollow} {
		t.Run(fmt.Sprint(f), func(t *testing.T) {
			u := wire.NewUpdate(rec)
			u.Follow = f
			u.More = []wire.Update{{Record: rec, Hash: rec.Hash(), Follow: 9}} // ignored there
			b := mustEncode(t, hdrA, u, s)
			want := base + wire.FollowSize(f) + wire.MoreHeadSize(1) + wire.MoreSize(&rec, wire.AckRequest{}) + wire.FollowSize(9)
			if len(b) != want {
				t.Errorf("frame is %d bytes, the sizes say %d", len(b), want)
			}
			_, m, err := wire.Decode(b, s)
			if err != nil {
				t.Fatal(err)
			}
			if got := m.(*wire.Update).Follow; got != f {
				t.Errorf("follow %d decoded as %d", f, got)
			}
		})
	}
}
