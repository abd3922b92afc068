package store_test

import (
	"errors"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/store"
)

// TestIfSameSameVersion: a received record can replace the current one
// with another of the same version — two resolutions whose newest side is
// the same write both take its lamport + 1 — so a version condition
// passes where the key changed; IfSame, the record's hash, does not.
func TestIfSameSameVersion(t *testing.T) {
	s := openTest(t, func(o *store.Options) { o.Resolver = union })
	x := write("k", "x", 1, 10, nil)
	y1 := write("k", "y1", 2, 5, nil)
	y2 := write("k", "y1,y2", 2, 6, nil) // node 2's next write, after y1
	mustApply(t, s, x, store.Applied)
	mustApply(t, s, y1, store.Resolved)
	first, _ := mustGet(t, s, "k")
	second := store.Resolve("k", &x, &y2, union) // as another node resolved it
	if second.Lamport != first.Lamport {
		t.Fatalf("resolutions of lamport %d and %d; want the same", first.Lamport, second.Lamport)
	}
	mustApply(t, s, second, store.Applied)
	if cur, _ := mustGet(t, s, "k"); cur.Lamport != first.Lamport || string(cur.Value) != "x,y1,y2" {
		t.Fatalf("after the second resolution: %+v", cur)
	}

	before := s.LastIndex()
	h := first.Hash()
	for _, del := range []bool{false, true} {
		var err error
		if del {
			_, err = s.DeleteWith(t.Context(), "k", store.SetOptions{IfVersion: &first.Lamport, IfSame: &h})
		} else {
			_, err = s.SetWith(t.Context(), "k", []byte("x,y1,mine"), store.SetOptions{IfVersion: &first.Lamport, IfSame: &h})
		}
		if !errors.Is(err, store.ErrChanged) {
			t.Fatalf("write (delete %v) conditional on the first resolution: %v, want ErrChanged", del, err)
		}
	}
	if s.LastIndex() != before {
		t.Fatal("a refused write was logged")
	}
}

// TestIfSame: a write conditional on the record Get returned succeeds
// while the key holds it, whatever kind of record it is, and fails with
// ErrChanged once anything replaced it or when the key holds none.
func TestIfSame(t *testing.T) {
	s := openTest(t, func(o *store.Options) { o.Resolver = union })
	tests := []struct {
		name  string
		setup func(key string)
		del   bool
	}{
		{"local write", func(k string) { mustSet(t, s, k, "v") }, false},
		{"with a ttl", func(k string) { mustSetTTL(t, s, k, "v", time.Hour) }, false},
		{"tombstone", func(k string) { mustSet(t, s, k, "v"); mustDelete(t, s, k) }, false},
		{"received", func(k string) { mustApply(t, s, write(k, "r", 7, 3, nil), store.Applied) }, false},
		{"resolved", func(k string) {
			mustSet(t, s, k, "a")
			mustApply(t, s, write(k, "b", 7, 4, nil), store.Resolved)
		}, false},
		{"delete a local write", func(k string) { mustSet(t, s, k, "v") }, true},
		{"delete a resolution", func(k string) {
			mustSet(t, s, k, "a")
			mustApply(t, s, write(k, "b", 7, 5, nil), store.Resolved)
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key := "if-same/" + tt.name
			tt.setup(key)
			cur, found := mustGet(t, s, key)
			if !found {
				t.Fatalf("%s: not found after setup", key)
			}
			h := cur.Hash()
			write := func() error {
				var err error
				if tt.del {
					_, err = s.DeleteWith(t.Context(), key, store.SetOptions{IfSame: &h})
				} else {
					_, err = s.SetWith(t.Context(), key, []byte("next"), store.SetOptions{IfSame: &h})
				}
				return err
			}
			if err := write(); err != nil {
				t.Fatalf("write conditional on the current record: %v", err)
			}
			if err := write(); !errors.Is(err, store.ErrChanged) {
				t.Fatalf("the same write again: %v, want ErrChanged", err)
			}
		})
	}
	t.Run("absent", func(t *testing.T) {
		var h store.Hash
		if _, err := s.SetWith(t.Context(), "if-same/never", []byte("v"), store.SetOptions{IfSame: &h}); !errors.Is(err, store.ErrChanged) {
			t.Fatalf("write conditional on a record where there is none: %v, want ErrChanged", err)
		}
	})
}
