package cluster

import (
	"context"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/daemon/wire"
	"github.com/cloudknowledge/ck/internal/simnet"
	"github.com/cloudknowledge/ck/store"
)

// peekCounter is a store that counts the whole-record reads (Peek) made
// of it.
type peekCounter struct {
	*store.Store
	peeks atomic.Int64
}

func (p *peekCounter) Peek(key string) (store.Record, bool, error) {
	p.peeks.Add(1)
	return p.Store.Peek(key)
}

// TestAnswerReadsVersionOnly: a node answering a QUERY from an asker that
// holds its version (or a newer one) reads the version, not the record,
// and answers with the version; an asker that lacks it, or did not say,
// gets the record as the store holds it; a record too large for a
// datagram is never read whole. Before, every answer read the record.
func TestAnswerReadsVersionOnly(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "data.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	pc := &peekCounter{Store: st}
	nw := simnet.New(1, simnet.Options{})
	n := New(Config{NodeName: "n", Cluster: "sim", Heartbeat: time.Second, DeadAfter: time.Minute, MaxDatagram: 1200}, nw.Endpoint(), pc)

	ctx := context.Background()
	old, err := st.Set(ctx, "k", []byte(strings.Repeat("o", 256)), nil)
	if err != nil {
		t.Fatal(err)
	}
	cur, err := st.Set(ctx, "k", []byte(strings.Repeat("v", 256)), nil)
	if err != nil {
		t.Fatal(err)
	}
	large, err := st.Set(ctx, "large", []byte(strings.Repeat("L", 2000)), nil)
	if err != nil {
		t.Fatal(err)
	}
	gone, err := st.Delete(ctx, "gone", nil)
	if err != nil {
		t.Fatal(err)
	}
	holding := func(key string, r store.Record) *wire.Query {
		h := r.Hash()
		return &wire.Query{ID: 7, Key: key, HaveVV: r.VV, HaveHash: &h}
	}
	for _, tc := range []struct {
		name       string
		q          *wire.Query
		want       store.Record // the version answered; Key "": not found
		withRecord bool
		peeks      int64
	}{
		{"the asker holds it", holding("k", cur), cur, false, 0},
		{"the asker holds an older one", holding("k", old), cur, true, 1},
		{"the asker holds none", &wire.Query{ID: 7, Key: "k"}, cur, true, 1},
		{"too large for a datagram", &wire.Query{ID: 7, Key: "large"}, large, false, 0},
		{"a tombstone the asker holds", holding("gone", gone), gone, false, 0},
		{"a tombstone the asker lacks", &wire.Query{ID: 7, Key: "gone"}, gone, true, 1},
		{"a key nobody wrote", &wire.Query{ID: 7, Key: "none"}, store.Record{}, false, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := pc.peeks.Load()
			a, frame, err := n.answerFor(tc.q)
			if err != nil {
				t.Fatal(err)
			}
			if peeks := pc.peeks.Load() - before; peeks != tc.peeks {
				t.Errorf("%d whole-record reads, want %d", peeks, tc.peeks)
			}
			if a.ID != tc.q.ID {
				t.Errorf("answer id %d, want %d", a.ID, tc.q.ID)
			}
			if tc.want.Key == "" {
				if a.Found || a.Record != nil {
					t.Errorf("found %v, record %v; want neither", a.Found, a.Record)
				}
				return
			}
			if !a.Found || a.Hash != tc.want.Hash() || !a.VV.Equal(tc.want.VV) || a.Lamport != tc.want.Lamport || a.Deleted != tc.want.Deleted {
				t.Errorf("answer %+v, want the version of %+v", a, tc.want)
			}
			switch {
			case tc.withRecord && (a.Record == nil || a.Record.Hash() != tc.want.Hash()):
				t.Errorf("record %+v, want %+v", a.Record, tc.want)
			case !tc.withRecord && a.Record != nil:
				t.Errorf("the answer carries the record, the asker %s", tc.name)
			case tc.withRecord && frame == nil:
				t.Error("an answer with its record comes without its frame (encoded twice)")
			}
			if frame != nil {
				_, msg, err := wire.Decode(frame, wire.Plaintext("sim"))
				if err != nil {
					t.Fatal(err)
				}
				if got := msg.(*wire.Answer); got.Record == nil || got.Record.Hash() != tc.want.Hash() {
					t.Errorf("the frame holds %+v", got)
				}
			}
		})
	}
}

// TestQueryWakesAskerOnce: answers wake a waiting asker only once at
// most coverWait of the members it waits for are left, so at 40 nodes a
// read is woken once or twice, not once per answer.
func TestQueryWakesAskerOnce(t *testing.T) {
	tab := newQueryTable()
	id, q := tab.open()
	var ms []Member
	for i := range 40 {
		ms = append(ms, Member{ID: store.NodeID{byte(i), 1}})
	}
	if silent := tab.silent(q, ms); len(silent) != len(ms) {
		t.Fatalf("%d silent before any answer, want %d", len(silent), len(ms))
	}
	kicked := func() bool {
		select {
		case <-q.kick:
			return true
		default:
			return false
		}
	}
	tab.answer(store.NodeID{0xee}, ms[0].Addr, &wire.Answer{ID: id}) // not a member awaited
	for i, m := range ms[:len(ms)-coverWait-1] {
		tab.answer(m.ID, m.Addr, &wire.Answer{ID: id})
		tab.answer(m.ID, m.Addr, &wire.Answer{ID: id}) // a duplicate
		if kicked() {
			t.Fatalf("woken at answer %d of %d", i+1, len(ms))
		}
	}
	last := ms[len(ms)-coverWait-1]
	tab.answer(last.ID, last.Addr, &wire.Answer{ID: id})
	if !kicked() {
		t.Fatalf("not woken with %d members left to answer", coverWait)
	}
	if got := len(tab.snapshot(q)); got != len(ms)-coverWait+1 {
		t.Errorf("%d answers kept, want %d (the non-member's too)", got, len(ms)-coverWait+1)
	}
	if silent := tab.silent(q, ms); len(silent) != coverWait {
		t.Errorf("%d silent, want %d", len(silent), coverWait)
	}
	for _, m := range ms[len(ms)-coverWait:] {
		tab.answer(m.ID, m.Addr, &wire.Answer{ID: id})
	}
	if !kicked() {
		t.Fatal("not woken by the last answer")
	}
}

// TestQueryAnsweredWhileAppliesWait: a QUERY is answered on the receive
// path itself, so a node whose received writes hold every apply slot
// (ANNOUNCEs whose fetches wait on a slow holder, say) still answers
// fresh reads. Before, the answer waited for a slot, and with it the
// receive loop.
func TestQueryAnsweredWhileAppliesWait(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "data.db"), store.Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Set(context.Background(), "k", []byte("v"), nil); err != nil {
		t.Fatal(err)
	}
	nw := simnet.New(1, simnet.Options{})
	n := New(Config{NodeName: "n", Cluster: "sim", Heartbeat: time.Hour, DeadAfter: 10 * time.Hour, MaxDatagram: 1200}, nw.Endpoint(), st)
	for range cap(n.applying) {
		n.applying <- struct{}{} // every slot taken
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	asker := nw.Endpoint()
	frame, err := wire.Encode(wire.Header{Sender: store.NodeID{0xa5}, Epoch: 1, Counter: 1}, &wire.Query{ID: 9, Key: "k"}, wire.Plaintext("sim"))
	if err != nil {
		t.Fatal(err)
	}
	if err := asker.SendTo(n.Addr(), frame); err != nil {
		t.Fatal(err)
	}
	timeout := time.After(10 * time.Second)
	for {
		select {
		case p := <-asker.Packets():
			_, msg, err := wire.Decode(p.Buf, wire.Plaintext("sim"))
			if err != nil {
				t.Fatal(err)
			}
			if a, ok := msg.(*wire.Answer); ok {
				if a.ID != 9 || !a.Found || a.Record == nil || string(a.Record.Value) != "v" {
					t.Fatalf("answer %+v", a)
				}
				return
			}
		case <-timeout:
			t.Fatal("no answer in 10 s while every apply slot was taken")
		}
	}
}
