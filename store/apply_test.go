package store_test

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/cloudknowledge/ck/store"
)

type applyCase struct {
	name      string
	rec       store.Record
	want      store.Outcome
	wantValue string
}

func TestApply(t *testing.T) {
	base := write("k", "base", 1, 10, nil)
	newer := write("k", "newer", 2, 11, base.VV)
	older := write("k", "older", 1, 5, nil)
	conc := write("k", "conc", 3, 20, store.VV{id(1): 9}) // lww 20@03 beats base
	tie := base
	tie.Value = []byte("same vv, other content")
	tieWins := tie.Hash()
	baseHash := base.Hash()
	tieCase := applyCase{"tie, smaller hash loses", tie, store.Ignored, "base"}
	if string(tieWins[:]) > string(baseHash[:]) {
		tieCase = applyCase{"tie, larger hash wins", tie, store.Applied, string(tie.Value)}
	}
	tests := []applyCase{
		{"newer", newer, store.Applied, "newer"},
		{"same", base, store.Ignored, "base"},
		{"older", older, store.Ignored, "base"},
		{"concurrent", conc, store.Resolved, "conc"},
		tieCase,
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTest(t)
			if res, err := s.Apply(t.Context(), base); err != nil || res.Outcome != store.Applied {
				t.Fatalf("first Apply: %+v, %v", res, err)
			}
			before := s.LastIndex()
			res, err := s.Apply(t.Context(), tt.rec)
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome != tt.want || string(res.Record.Value) != tt.wantValue {
				t.Fatalf("Apply = %v %q, want %v %q", res.Outcome, res.Record.Value, tt.want, tt.wantValue)
			}
			got, _ := mustGet(t, s, "k")
			if got.Hash() != res.Record.Hash() {
				t.Fatalf("stored %+v, result %+v", got, res.Record)
			}
			logged := s.LastIndex() - before
			if (tt.want == store.Ignored) != (logged == 0) {
				t.Errorf("%v logged %d events", tt.want, logged)
			}
			if s.Lamport() < max(tt.rec.Lamport, got.Lamport) {
				t.Errorf("lamport %d not raised to %d", s.Lamport(), max(tt.rec.Lamport, got.Lamport))
			}
			if tt.want == store.Resolved && (got.Lamport != 21 || got.LWW != conc.LWW || !got.VV.Equal(base.VV.Merge(conc.VV))) {
				t.Errorf("resolution %+v", got)
			}
		})
	}
}

func TestApplyRejects(t *testing.T) {
	s := openTest(t)
	zero := write("k", "v", 1, 1, nil)
	zero.Lamport = 0
	huge := write("k", "v", 1, store.MaxLamport+1, nil)
	novv := write("k", "v", 1, 1, nil)
	novv.VV = store.VV{id(1): 0}
	tomb := write("k", "v", 1, 1, nil)
	tomb.Deleted = true
	for name, rec := range map[string]store.Record{"lamport 0": zero, "huge lamport": huge, "empty vv": novv, "tombstone with value": tomb} {
		if _, err := s.Apply(t.Context(), rec); !errors.Is(err, store.ErrBadRecord) {
			t.Errorf("%s: %v, want ErrBadRecord", name, err)
		}
	}
	if s.LastIndex() != 0 {
		t.Error("a rejected record was stored")
	}
}

// countingResolver counts calls and merges like union.
type countingResolver struct{ calls atomic.Int64 }

func (c *countingResolver) Resolve(key string, w, l *store.Record) ([]byte, bool, error) {
	c.calls.Add(1)
	return union(key, w, l)
}

// The configured resolver decides concurrent writes, and is called outside
// the commit (once per Apply in the quiet case).
func TestApplyResolver(t *testing.T) {
	r := &countingResolver{}
	s := openTest(t, func(o *store.Options) { o.Resolver = r })
	mustSet(t, s, "k", "local")
	res, err := s.Apply(t.Context(), write("k", "remote", 9, 1, nil))
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != store.Resolved || string(res.Record.Value) != "local,remote" {
		t.Fatalf("Apply = %v %q", res.Outcome, res.Record.Value)
	}
	if n := r.calls.Load(); n != 1 {
		t.Errorf("resolver called %d times, want 1", n)
	}
}

// Three stores receive three concurrent writes in different orders, then
// exchange their records as anti-entropy would: they end with equal roots
// and equal bytes.
func TestStoresConverge(t *testing.T) {
	rng := testSeed(t)
	ws := []store.Record{
		write("k", "a", 1, uint64(rng.IntN(5)+1), nil),
		write("k", "b", 2, uint64(rng.IntN(5)+1), nil),
		write("k", "c", 3, uint64(rng.IntN(5)+1), nil),
	}
	orders := permutations(3)
	var stores []*store.Store
	for _, i := range rng.Perm(len(orders))[:3] {
		s := openTest(t, func(o *store.Options) { o.Resolver = union })
		for _, j := range orders[i] {
			if _, err := s.Apply(t.Context(), ws[j]); err != nil {
				t.Fatal(err)
			}
		}
		stores = append(stores, s)
	}
	for round := 0; ; round++ {
		changed := false
		for _, from := range stores {
			for _, to := range stores {
				rec, _ := mustGet(t, from, "k")
				res, err := to.Apply(t.Context(), rec)
				if err != nil {
					t.Fatal(err)
				}
				changed = changed || res.Outcome != store.Ignored
			}
		}
		if !changed {
			break
		}
		if round > 10 {
			t.Fatal("no convergence")
		}
	}
	want, _ := mustGet(t, stores[0], "k")
	if string(want.Value) != "a,b,c" {
		t.Errorf("value %q, want a,b,c", want.Value)
	}
	for i, s := range stores {
		if got, _ := mustGet(t, s, "k"); got.Hash() != want.Hash() || s.Root() != stores[0].Root() {
			t.Errorf("store %d holds %+v, store 0 %+v", i, got, want)
		}
	}
}
