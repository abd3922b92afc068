package store_test

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/cloudknowledge/ck/store"
)

type earlyTag struct{}

// TestEarlyHook: the early hook is handed a local write before its commit
// returns — its record as committed, the context it was submitted with —
// but only when the persisted reservation already covers its version: the
// write that moves the reservation is not handed over (a crash before its
// commit could otherwise let a restarted node hand that version out
// again). Received records and refused conditions are never handed over.
func TestEarlyHook(t *testing.T) {
	s := openTest(t)
	var mu sync.Mutex
	var got []store.Early
	s.SetEarly(func(ws []store.Early) {
		mu.Lock()
		defer mu.Unlock()
		for _, w := range ws {
			if _, found := mustGet(t, s, w.Record.Key); found && w.Record.Key == "b" {
				t.Errorf("%s is visible before its commit", w.Record.Key)
			}
			got = append(got, w)
		}
	})
	handed := func() []store.Early {
		mu.Lock()
		defer mu.Unlock()
		out := got
		got = nil
		return out
	}
	ctx := context.WithValue(context.Background(), earlyTag{}, "tag")
	set := func(key string) store.Record {
		t.Helper()
		rec, err := s.Set(ctx, key, []byte("v"), nil)
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}

	a := set("a") // the first write moves the reservation from 0
	if ws := handed(); len(ws) != 0 {
		t.Errorf("the write at %d above the persisted reservation was handed over: %+v", a.Lamport, ws)
	}
	b := set("b")
	ws := handed()
	if len(ws) != 1 || ws[0].Record.Hash() != b.Hash() || ws[0].Ctx.Value(earlyTag{}) != "tag" {
		t.Fatalf("handed %+v, want the write of b with its context", ws)
	}
	if r := s.Reserved(); b.Lamport > r {
		t.Fatalf("test premise: b at %d within the reservation %d", b.Lamport, r)
	}

	s.Observe(s.Reserved()) // the next write moves the reservation again
	c := set("c")
	if ws := handed(); len(ws) != 0 {
		t.Errorf("the write at %d, above the reservation, was handed over", c.Lamport)
	}
	set("d")
	if ws := handed(); len(ws) != 1 {
		t.Errorf("handed %d writes, want d", len(ws))
	}

	stale := uint64(1)
	if _, err := s.Set(ctx, "d", []byte("x"), &stale); err == nil {
		t.Fatal("a write with a stale version was accepted")
	}
	mustDelete(t, s, "a")
	peer := store.Record{Key: "p", Value: []byte("v"), VV: store.VV{id(9): 5}, Lamport: 5, Origin: id(9),
		LWW: store.Stamp{Lamport: 5, Origin: id(9)}}
	if _, err := s.Apply(context.Background(), peer); err != nil {
		t.Fatal(err)
	}
	ws = handed()
	if len(ws) != 1 || ws[0].Record.Key != "a" || !ws[0].Record.Deleted {
		t.Errorf("handed %+v, want only the delete of a", ws)
	}
}

// TestEarlyCarriesEncoding: each write handed to the early hook comes
// with its record's canonical encoding and hash as the commit computed
// them, also when one batch holds several writes of one key (each finds
// the encoding of its own write, not the batch's last of that key).
func TestEarlyCarriesEncoding(t *testing.T) {
	s := openTest(t)
	var mu sync.Mutex
	handed, batches, shared := 0, 0, 0
	s.SetEarly(func(ws []store.Early) {
		mu.Lock()
		defer mu.Unlock()
		batches++
		keys := map[string]bool{}
		for _, w := range ws {
			handed++
			want, _ := w.Record.MarshalCBOR()
			if !bytes.Equal(w.Raw, want) || w.Hash != w.Record.Hash() {
				t.Errorf("%s at %d handed with encoding %x hash %x, want %x %x",
					w.Record.Key, w.Record.Lamport, w.Raw, w.Hash, want, w.Record.Hash())
			}
			if keys[w.Record.Key] {
				shared++
			}
			keys[w.Record.Key] = true
		}
	})
	ctx := context.Background()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 100 {
				key := fmt.Sprintf("k%d", (g+i)%3)
				var err error
				if i%7 == 0 {
					_, err = s.Delete(ctx, key, nil)
				} else {
					_, err = s.Set(ctx, key, []byte(fmt.Sprintf("v%d-%d", g, i)), nil)
				}
				if err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d writes handed over in %d batches, %d of them behind a write of the same key in their batch", handed, batches, shared)
	if handed < 1500 {
		t.Errorf("%d of 1,600 writes handed over", handed)
	}
	if shared == 0 {
		t.Error("no batch held two writes of one key: the test proved nothing")
	}
}
