package store_test

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/fxamacker/cbor/v2"

	"github.com/cloudknowledge/ck/store"
)

// write returns a plain write by node n at lamport l over vv.
func write(key, value string, n byte, l uint64, vv store.VV) store.Record {
	vv = vv.Clone()
	if vv == nil {
		vv = store.VV{}
	}
	vv[id(n)] = l
	return store.Record{
		Key: key, Value: []byte(value), VV: vv, Lamport: l, Origin: id(n),
		LWW: store.Stamp{Lamport: l, Origin: id(n)}, At: int64(l) * 1000,
	}
}

func TestVVCompare(t *testing.T) {
	a, b, c := id(1), id(2), id(3)
	tests := []struct {
		name string
		x, y store.VV
		want store.Order
	}{
		{"both empty", nil, store.VV{}, store.Same},
		{"zero entry is absent", store.VV{a: 0}, nil, store.Same},
		{"equal", store.VV{a: 1, b: 2}, store.VV{b: 2, a: 1}, store.Same},
		{"newer one entry", store.VV{a: 2}, store.VV{a: 1}, store.Newer},
		{"newer extra entry", store.VV{a: 1, b: 1}, store.VV{a: 1}, store.Newer},
		{"older", store.VV{a: 1}, store.VV{a: 1, c: 5}, store.Older},
		{"concurrent", store.VV{a: 2, b: 1}, store.VV{a: 1, b: 2}, store.Concurrent},
		{"concurrent disjoint", store.VV{a: 1}, store.VV{b: 1}, store.Concurrent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.x.Compare(tt.y); got != tt.want {
				t.Errorf("Compare = %v, want %v", got, tt.want)
			}
			wantDom := tt.want == store.Same || tt.want == store.Newer
			if got := tt.x.Dominates(tt.y); got != wantDom {
				t.Errorf("Dominates = %v, want %v", got, wantDom)
			}
		})
	}
}

func TestVVMerge(t *testing.T) {
	a, b := store.VV{id(1): 3, id(2): 1}, store.VV{id(2): 4, id(3): 0}
	m := a.Merge(b)
	want := store.VV{id(1): 3, id(2): 4}
	if !m.Equal(want) || len(m) != 2 {
		t.Errorf("Merge = %v, want %v", m, want)
	}
	if a[id(2)] != 1 || len(b) != 2 {
		t.Error("Merge modified its inputs")
	}
	c := a.Clone()
	c[id(1)] = 9
	if a[id(1)] != 3 {
		t.Error("Clone shares the map")
	}
}

func TestCompare(t *testing.T) {
	base := write("k", "v", 1, 1, nil)
	newer := write("k", "w", 1, 2, base.VV)
	other := write("k", "x", 2, 2, base.VV)
	fb := other
	fb.VV, fb.Fallback = newer.VV, true // same vv as newer, resolved with a fallback
	diff := newer
	diff.Value = []byte("different content")
	hi, lo := newer, diff
	if h1, h2 := newer.Hash(), diff.Hash(); bytes.Compare(h1[:], h2[:]) < 0 {
		hi, lo = diff, newer
	}
	tests := []struct {
		name string
		a, b store.Record
		want store.Order
	}{
		{"same", newer, newer, store.Same},
		{"newer", newer, base, store.Newer},
		{"older", base, newer, store.Older},
		{"concurrent", newer, other, store.Concurrent},
		{"equal vv, no fallback beats fallback", newer, fb, store.Newer},
		{"equal vv, fallback loses", fb, newer, store.Older},
		{"equal vv, larger hash wins", hi, lo, store.Newer},
		{"equal vv, smaller hash loses", lo, hi, store.Older},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := store.Compare(&tt.a, &tt.b); got != tt.want {
				t.Errorf("Compare = %v, want %v", got, tt.want)
			}
		})
	}
}

// resolverFunc adapts a function to store.Resolver.
type resolverFunc func(key string, w, l *store.Record) ([]byte, bool, error)

func (f resolverFunc) Resolve(key string, w, l *store.Record) ([]byte, bool, error) {
	return f(key, w, l)
}

// union merges comma-separated sets: commutative, associative, idempotent,
// so exact over any number of concurrent writers.
var union = resolverFunc(func(_ string, w, l *store.Record) ([]byte, bool, error) {
	items := strings.Split(string(w.Value)+","+string(l.Value), ",")
	items = slices.DeleteFunc(items, func(s string) bool { return s == "" })
	slices.Sort(items)
	return []byte(strings.Join(slices.Compact(items), ",")), false, nil
})

func TestResolve(t *testing.T) {
	base := write("k", "base", 1, 1, nil)
	a := write("k", "a", 1, 5, base.VV) // lww 5@01
	b := write("k", "b", 2, 5, base.VV) // lww 5@02: wins
	b.At = 99999
	tests := []struct {
		name         string
		r            store.Resolver
		wantValue    string
		wantDeleted  bool
		wantFallback bool
	}{
		{"lww", nil, "b", false, false},
		{"hook merges", union, "a,b", false, false},
		{"hook keeps loser", resolverFunc(func(_ string, w, l *store.Record) ([]byte, bool, error) { return l.Value, false, nil }), "a", false, false},
		{"hook deletes", resolverFunc(func(string, *store.Record, *store.Record) ([]byte, bool, error) { return []byte("x"), true, nil }), "", true, false},
		{"hook fails", resolverFunc(func(string, *store.Record, *store.Record) ([]byte, bool, error) {
			return nil, false, errors.New("boom")
		}), "b", false, true},
		{"hook panics", resolverFunc(func(string, *store.Record, *store.Record) ([]byte, bool, error) { panic("boom") }), "b", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := store.Resolve("k", &a, &b, tt.r)
			if string(got.Value) != tt.wantValue || got.Deleted != tt.wantDeleted || got.Fallback != tt.wantFallback {
				t.Errorf("Resolve = value %q deleted %v fallback %v, want %q %v %v",
					got.Value, got.Deleted, got.Fallback, tt.wantValue, tt.wantDeleted, tt.wantFallback)
			}
			if want := a.VV.Merge(b.VV); !got.VV.Equal(want) {
				t.Errorf("vv = %v, want %v", got.VV, want)
			}
			if got.Lamport != 6 || got.Origin != id(2) || got.LWW != b.LWW || got.At != 99999 {
				t.Errorf("lamport %d origin %s lww %v at %d, want 6, %s, %v, 99999", got.Lamport, got.Origin, got.LWW, got.At, id(2), b.LWW)
			}
			// Pure and symmetric: same bytes in either order.
			other := store.Resolve("k", &b, &a, tt.r)
			if got.Hash() != other.Hash() {
				t.Errorf("Resolve(a, b) and Resolve(b, a) differ: %+v vs %+v", got, other)
			}
			if store.Compare(&got, &a) != store.Newer || store.Compare(&got, &b) != store.Newer {
				t.Error("resolution does not descend from both")
			}
		})
	}
}

// Resolve ranks by (lww, hash) even when the lamports tie on one origin
// (two resolutions of different pairs can share a lww).
func TestResolveSameLWW(t *testing.T) {
	a := write("k", "a", 1, 5, nil)
	b := a
	b.Value, b.VV = []byte("b"), store.VV{id(1): 5, id(2): 3}
	a.VV = store.VV{id(1): 5, id(3): 3}
	r1, r2 := store.Resolve("k", &a, &b, nil), store.Resolve("k", &b, &a, nil)
	if r1.Hash() != r2.Hash() {
		t.Fatal("order matters")
	}
	ha, hb := a.Hash(), b.Hash()
	want := "a"
	if bytes.Compare(hb[:], ha[:]) > 0 {
		want = "b"
	}
	if string(r1.Value) != want {
		t.Errorf("winner %q, want %q (larger hash)", r1.Value, want)
	}
}

func TestHashCanonical(t *testing.T) {
	r := write("k", "", 1, 3, store.VV{id(2): 1, id(3): 7})
	base := r.Hash()
	variants := map[string]func(*store.Record){
		"nil value":     func(r *store.Record) { r.Value = nil },
		"zero vv entry": func(r *store.Record) { r.VV = r.VV.Clone(); r.VV[id(9)] = 0 },
		"rebuilt vv":    func(r *store.Record) { r.VV = store.VV{id(3): 7, id(1): 3, id(2): 1} },
	}
	for name, f := range variants {
		c := r
		f(&c)
		if c.Hash() != base {
			t.Errorf("%s: hash changed", name)
		}
	}
	fields := map[string]func(*store.Record){
		"key":      func(r *store.Record) { r.Key = "j" },
		"value":    func(r *store.Record) { r.Value = []byte{0} },
		"deleted":  func(r *store.Record) { r.Deleted = true },
		"vv":       func(r *store.Record) { r.VV = store.VV{id(1): 3} },
		"lamport":  func(r *store.Record) { r.Lamport++ },
		"origin":   func(r *store.Record) { r.Origin = id(4) },
		"lww":      func(r *store.Record) { r.LWW.Lamport++ },
		"lww node": func(r *store.Record) { r.LWW.Origin = id(4) },
		"at":       func(r *store.Record) { r.At++ },
		"fallback": func(r *store.Record) { r.Fallback = true },
	}
	for name, f := range fields {
		c := r
		f(&c)
		if c.Hash() == base {
			t.Errorf("hash does not cover %s", name)
		}
	}
}

func TestRecordCBOR(t *testing.T) {
	r := write("a/b", "value", 1, 3, store.VV{id(2): 1})
	r.Fallback = true
	b, err := cbor.Marshal(struct{ R store.Record }{r}) // embedded in a message
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ R store.Record }
	if err := cbor.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.R.Hash() != r.Hash() || string(got.R.Value) != "value" || got.R.VV[id(2)] != 1 {
		t.Errorf("round trip: %+v, want %+v", got.R, r)
	}

	bad := map[string]any{
		"unknown field": map[int]any{1: "k", 99: 1},
		"short node id": map[int]any{1: "k", 6: []byte{1, 2, 3}},
		"long vv id":    map[int]any{1: "k", 4: map[cbor.ByteString]uint64{cbor.ByteString(strings.Repeat("x", 17)): 1}},
		"text vv id":    map[int]any{1: "k", 4: map[string]uint64{strings.Repeat("x", 16): 1}},
	}
	for name, v := range bad {
		b, _ := cbor.Marshal(v)
		var rec store.Record
		if err := rec.UnmarshalCBOR(b); err == nil {
			t.Errorf("%s: decoded %+v, want an error", name, rec)
		}
	}
}

func TestNodeID(t *testing.T) {
	n := store.NewNodeID()
	if n.IsZero() || len(n.String()) != 32 || strings.ToLower(n.String()) != n.String() {
		t.Fatalf("NewNodeID = %s", n)
	}
	p, err := store.ParseNodeID(n.String())
	if err != nil || p != n {
		t.Fatalf("ParseNodeID(%s) = %s, %v", n, p, err)
	}
	for _, s := range []string{"", "abc", strings.Repeat("g", 32), strings.Repeat("a", 33)} {
		if _, err := store.ParseNodeID(s); err == nil {
			t.Errorf("ParseNodeID(%q) succeeded", s)
		}
	}
}
