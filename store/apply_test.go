package store_test

import (
	"errors"
	"sync/atomic"
	"testing"

	"github.com/cloudknowledge/ck/internal/testseed"
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
	jump := write("k", "v", 1, store.MaxClockJump+1, nil) // L is 0
	novv := write("k", "v", 1, 1, nil)
	novv.VV = store.VV{id(1): 0}
	tomb := write("k", "v", 1, 1, nil)
	tomb.Deleted = true
	ahead := write("k", "v", 1, 5, store.VV{id(2): 6}) // an entry above the lamport
	lww := write("k", "v", 1, 5, nil)
	lww.LWW.Lamport = 6
	wide := write("k", "v", 1, 5, nil)
	for i := range store.MaxVVEntries {
		var n store.NodeID
		n[0], n[1], n[2] = 9, byte(i>>8), byte(i)
		wide.VV[n] = 1
	}
	tests := []struct {
		name string
		rec  store.Record
		want error
	}{
		{"lamport 0", zero, store.ErrBadRecord},
		{"huge lamport", huge, store.ErrBadRecord},
		{"clock jump", jump, store.ErrClockJump},
		{"empty vv", novv, store.ErrBadRecord},
		{"tombstone with value", tomb, store.ErrBadRecord},
		{"vv entry above lamport", ahead, store.ErrBadRecord},
		{"lww above lamport", lww, store.ErrBadRecord},
		{"too many vv entries", wide, store.ErrBadRecord},
	}
	for _, tt := range tests {
		if _, err := s.Apply(t.Context(), tt.rec); !errors.Is(err, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, err, tt.want)
		}
		if _, errs, _ := s.ApplyBatch(t.Context(), []store.Record{tt.rec}); !errors.Is(errs[0], tt.want) {
			t.Errorf("%s in a batch: %v, want %v", tt.name, errs[0], tt.want)
		}
	}
	if s.LastIndex() != 0 || s.Lamport() != 0 {
		t.Errorf("a rejected record was stored (index %d) or moved the clock (L %d)", s.LastIndex(), s.Lamport())
	}
	if st := s.Stats(); st.RefusedClockJump != 2 || st.RefusedVV != 4 {
		t.Errorf("refused: clock %d, vv %d; want 2 and 4", st.RefusedClockJump, st.RefusedVV)
	}
}

// The clock moves by at most MaxClockJump a record, so the headroom below
// MaxLamport outlasts any realistic number of hostile records; a record
// just within the bound is accepted and observed.
func TestApplyClockBound(t *testing.T) {
	s := openTest(t)
	edge := write("a", "v", 1, store.MaxClockJump, nil)
	if _, err := s.Apply(t.Context(), edge); err != nil {
		t.Fatal(err)
	}
	if s.Lamport() != store.MaxClockJump {
		t.Fatalf("L = %d, want %d", s.Lamport(), uint64(store.MaxClockJump))
	}
	next := write("b", "v", 1, 2*store.MaxClockJump, nil)
	if _, err := s.Apply(t.Context(), next); err != nil {
		t.Fatalf("a record MaxClockJump ahead of the new L: %v", err)
	}
	// A HELLO's lamport (Observe) never takes the clock past the point
	// where a local write would have no headroom.
	s.Observe(store.MaxLamport)
	rec, err := s.Set(t.Context(), "c", []byte("v"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Lamport > store.MaxLamport-store.MaxClockJump+1 {
		t.Errorf("write lamport %d beyond the observable maximum", rec.Lamport)
	}
}

// An imported vector naming this node with a large entry is observed: the
// node's next write of the key descends from it (it dominates), so no
// peer can prefer the imported record to the acknowledged write after it.
func TestWriteDominatesImportedVV(t *testing.T) {
	s := openTest(t)
	self := s.NodeID()
	imp := write("k", "imported", 2, 1_000_000_000, store.VV{self: 1_000_000_000})
	if _, err := s.Apply(t.Context(), imp); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Set(t.Context(), "k", []byte("after"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if rec.VV.Compare(imp.VV) != store.Newer {
		t.Errorf("write vv %v does not dominate the imported %v", rec.VV, imp.VV)
	}
	if rec.Lamport != 1_000_000_001 {
		t.Errorf("write lamport %d, want 1000000001", rec.Lamport)
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
	rng := testseed.Rand(t)
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
