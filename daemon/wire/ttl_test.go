package wire_test

import (
	"errors"
	"testing"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/store"
)

// TestLeftTravels: every message that carries a record with a TTL carries
// the lifetime it has left, and the receiver's record has it; a record
// without a TTL carries none, and a Left above the TTL is refused.
func TestLeftTravels(t *testing.T) {
	s := wire.Plaintext(cluster)
	withTTL := record("k", []byte("v"))
	withTTL.TTL, withTTL.Left = 30000, 12345
	plain := record("p", []byte("v"))
	left := func(m wire.Message) []int64 {
		switch m := m.(type) {
		case *wire.Update:
			return []int64{m.Record.Left}
		case *wire.Answer:
			return []int64{m.Record.Left}
		case *wire.FetchReply:
			return []int64{m.Record.Left}
		case *wire.SyncRecords:
			var out []int64
			for _, r := range m.Records {
				out = append(out, r.Left)
			}
			return out
		}
		return nil
	}
	answer := func(r store.Record) *wire.Answer {
		return &wire.Answer{ID: 1, Found: true, Lamport: r.Lamport, VV: r.VV, Hash: r.Hash(), Record: &r}
	}
	for name, tc := range map[string]struct {
		msg  wire.Message
		want []int64
	}{
		"update":       {wire.NewUpdate(withTTL), []int64{12345}},
		"update plain": {wire.NewUpdate(plain), []int64{0}},
		"answer":       {answer(withTTL), []int64{12345}},
		"fetch reply":  {&wire.FetchReply{Found: true, Record: &withTTL}, []int64{12345}},
		"sync records": {&wire.SyncRecords{Records: []store.Record{plain, withTTL}}, []int64{0, 12345}},
		"sync plain":   {&wire.SyncRecords{Records: []store.Record{plain}}, []int64{0}},
	} {
		t.Run(name, func(t *testing.T) {
			b := mustEncode(t, hdrA, tc.msg, s)
			_, got, err := wire.Decode(b, s)
			if err != nil {
				t.Fatal(err)
			}
			if l := left(got); len(l) != len(tc.want) || (len(l) > 0 && l[len(l)-1] != tc.want[len(tc.want)-1]) {
				t.Fatalf("left %v, want %v", l, tc.want)
			}
		})
	}
	bad := withTTL
	bad.Left = bad.TTL + 1
	if _, err := wire.Encode(hdrA, wire.NewUpdate(bad), s); err != nil {
		t.Fatal(err) // the sender's bug is the receiver's to refuse
	}
	b := mustEncode(t, hdrA, wire.NewUpdate(bad), s)
	if _, _, err := wire.Decode(b, s); !errors.Is(err, wire.ErrMalformed) {
		t.Fatalf("left above the ttl: %v, want ErrMalformed", err)
	}
}
