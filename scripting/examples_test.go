package scripting

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"
)

const examplesDir = "../examples/hooks"

// exampleEngine loads one example script on every key.
func exampleEngine(t *testing.T, name string) *Engine {
	t.Helper()
	e, err := New(Config{Hooks: []HookSpec{{Pattern: "*", Script: filepath.Join(examplesDir, name), Timeout: testTimeout}}, NodeName: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	return e
}

// Every script in examples/hooks has a test here and says how to attach it.
func TestExamplesAreCovered(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(examplesDir, "*.lua"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		name := filepath.Base(f)
		names = append(names, name)
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(string(src), "-- "+name+": ") || !strings.Contains(string(src), `script = "hooks/`+name+`"`) {
			t.Errorf("%s: the header comment must say what it does and show the hook block attaching it", name)
		}
	}
	want := []string{"counter_max.lua", "json_validate.lua", "normalize.lua", "pn_counter.lua", "redact.lua", "set_union.lua"}
	if !slices.Equal(names, want) {
		t.Errorf("examples/hooks holds %v; the tests cover %v", names, want)
	}
}

func TestExampleJSONValidate(t *testing.T) {
	e := exampleEngine(t, "json_validate.lua")
	tests := []struct {
		value  string
		op     string
		reject string
	}{
		{value: `{"replicas": 3, "zones": ["a", "b"]}`},
		{value: `[]`},
		{value: `"just a string"`},
		{value: `{"replicas": 3,}`, reject: "value is not valid JSON: expected a string key"},
		{value: `not json`, reject: "value is not valid JSON"},
		{value: ``, reject: "value is not valid JSON"},
		{op: "del"},
	}
	for _, tt := range tests {
		op := tt.op
		if op == "" {
			op = "set"
		}
		out, err := e.OnSet(bg, "config/app", []byte(tt.value), Meta{Op: op})
		if tt.reject != "" {
			if !errors.Is(err, ErrRejected) || !strings.HasPrefix(err.Error(), tt.reject) {
				t.Errorf("%q: err = %v; want a rejection %q", tt.value, err, tt.reject)
			}
			continue
		}
		if err != nil || string(out) != tt.value {
			t.Errorf("%q: OnSet = %q, %v; want it stored as written", tt.value, out, err)
		}
	}
}

func TestExampleNormalize(t *testing.T) {
	e := exampleEngine(t, "normalize.lua")
	for in, want := range map[string]string{
		"  Alice@Example.COM \n": "alice@example.com",
		"bob":                    "bob",
		"   ":                    "",
		"\tÉcole MIXED\t":        "École mixed", // ASCII only, as in Lua
		"\xffBIN\x00":            "\xffbin\x00",
		"a  b":                   "a  b",
	} {
		out, err := e.OnSet(bg, "users/1/email", []byte(in), Meta{Op: "set"})
		if err != nil || string(out) != want {
			t.Errorf("%q: OnSet = %q, %v; want %q", in, out, err, want)
		}
	}
	if out, err := e.OnSet(bg, "users/1/email", nil, Meta{Op: "del"}); err != nil || out != nil {
		t.Errorf("delete: %q, %v", out, err)
	}
}

func TestExampleRedact(t *testing.T) {
	e := exampleEngine(t, "redact.lua")
	for in, want := range map[string]string{
		`{"user":"ada","password":"hunter2"}`:                         `{"password":"[redacted]","user":"ada"}`,
		`{"a":{"API_KEY":"k","list":[{"Token":1},{"x":null}]},"n":1}`: `{"a":{"API_KEY":"[redacted]","list":[{"Token":"[redacted]"},{"x":null}]},"n":1}`,
		`{"user": "ada"}`: `{"user": "ada"}`, // nothing to hide: shown as stored
		`not json at all`: `not json at all`,
		`["password"]`:    `["password"]`,
		`"password"`:      `"password"`,
	} {
		out, err := e.OnGet(bg, "accounts/1", []byte(in), Meta{Op: "get"})
		if err != nil || string(out) != want {
			t.Errorf("%s: OnGet = %s, %v; want %s", in, out, err, want)
		}
	}
	// on_get only: writes are stored as given.
	if out, _ := e.OnSet(bg, "accounts/1", []byte(`{"password":"x"}`), Meta{Op: "set"}); string(out) != `{"password":"x"}` {
		t.Errorf("OnSet changed the value: %s", out)
	}
}

func TestExampleSetUnion(t *testing.T) {
	e := exampleEngine(t, "set_union.lua")
	resolve := func(a, b Version) Version {
		t.Helper()
		v, deleted, ok, err := e.OnConflict("sets/s", a, b)
		if !ok || err != nil {
			t.Fatalf("OnConflict(%q, %q) = ok %v, %v", a.Value, b.Value, ok, err)
		}
		return Version{Value: v, Deleted: deleted}
	}
	set := func(s string) Version { return Version{Value: []byte(s)} }
	del := Version{Deleted: true}
	tests := []struct {
		a, b Version
		want string // "" for deleted
	}{
		{set(`["b","a"]`), set(`["c","a"]`), `["a","b","c"]`},
		{set(`[3,"x",1]`), set(`[2,1,"a"]`), `[1,2,3,"a","x"]`},
		{set(`[]`), set(`[]`), `[]`},
		{set(`["a"]`), del, `["a"]`},
		{del, set(`["a"]`), `["a"]`},
		{del, del, ""},
	}
	for _, tt := range tests {
		got := resolve(tt.a, tt.b)
		if tt.want == "" != got.Deleted || string(got.Value) != tt.want {
			t.Errorf("union(%s, %s) = %s (deleted %v); want %s", tt.a.Value, tt.b.Value, got.Value, got.Deleted, tt.want)
		}
	}
	if _, _, ok, err := e.OnConflict("sets/s", set(`{"not":"an array"}`), set(`[]`)); !ok || !errors.Is(err, ErrHook) {
		t.Errorf("an object: err = %v; want a hook error (fallback)", err)
	}

	// Commutative, associative and idempotent, on random sets.
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	randomSet := func() Version {
		if rng.IntN(6) == 0 {
			return del
		}
		var items []string
		for i := rng.IntN(5); i > 0; i-- {
			if rng.IntN(2) == 0 {
				items = append(items, string(rune('a'+rng.IntN(6))))
			} else {
				items = append(items, "#"+string(rune('0'+rng.IntN(6))))
			}
		}
		return set(toJSONSet(items))
	}
	same := func(x, y Version) bool { return x.Deleted == y.Deleted && string(x.Value) == string(y.Value) }
	for i := 0; i < 100; i++ {
		a, b, c := randomSet(), randomSet(), randomSet()
		if ab, ba := resolve(a, b), resolve(b, a); !same(ab, ba) {
			t.Fatalf("not commutative: %s, %s: %s vs %s", a.Value, b.Value, ab.Value, ba.Value)
		}
		if l, r := resolve(resolve(a, b), c), resolve(a, resolve(b, c)); !same(l, r) {
			t.Fatalf("not associative: %s, %s, %s: %s vs %s", a.Value, b.Value, c.Value, l.Value, r.Value)
		}
		if aa, a1 := resolve(a, a), resolve(resolve(a, a), a); !same(aa, a1) {
			t.Fatalf("not idempotent: %s: %s vs %s", a.Value, aa.Value, a1.Value)
		}
	}
}

// toJSONSet writes items as a JSON array; "#n" items become numbers.
func toJSONSet(items []string) string {
	sort.Strings(items)
	var b strings.Builder
	b.WriteByte('[')
	for i, it := range items {
		if i > 0 {
			b.WriteByte(',')
		}
		if strings.HasPrefix(it, "#") {
			b.WriteString(it[1:])
		} else {
			b.WriteString(`"` + it + `"`)
		}
	}
	b.WriteByte(']')
	return b.String()
}

func TestExampleCounterMax(t *testing.T) {
	e := exampleEngine(t, "counter_max.lua")
	v := func(s string) Version { return Version{Value: []byte(s)} }
	del := Version{Deleted: true}
	tests := []struct {
		a, b    Version
		want    string
		deleted bool
		fails   bool
	}{
		{a: v("3"), b: v("10"), want: "10"},
		{a: v("10"), b: v("3"), want: "10"},
		{a: v("-1.5"), b: v("-2"), want: "-1.5"},
		{a: v("007"), b: v("7"), want: "7"},
		{a: del, b: v("4"), want: "4"},
		{a: v("4"), b: del, want: "4"},
		{a: del, b: del, deleted: true},
		{a: v("four"), b: v("4"), fails: true},
	}
	for _, tt := range tests {
		got, deleted, ok, err := e.OnConflict("counters/c", tt.a, tt.b)
		switch {
		case !ok:
			t.Errorf("hook did not apply")
		case tt.fails:
			if !errors.Is(err, ErrHook) {
				t.Errorf("max(%s, %s): err = %v; want a hook error", tt.a.Value, tt.b.Value, err)
			}
		case err != nil || string(got) != tt.want || deleted != tt.deleted:
			t.Errorf("max(%s, %s) = %q, deleted %v, %v; want %q", tt.a.Value, tt.b.Value, got, deleted, err, tt.want)
		}
	}
}

// pnNode is one node of TestExamplePNCounter: an engine running
// pn_counter.lua as NodeName name, over a one-key store of its own.
type pnNode struct {
	e     *Engine
	value []byte // nil: absent
}

func newPNNode(t *testing.T, name string) *pnNode {
	t.Helper()
	n := &pnNode{}
	e, err := New(Config{
		Hooks:    []HookSpec{{Pattern: "*", Script: filepath.Join(examplesDir, "pn_counter.lua"), Timeout: testTimeout}},
		NodeName: name,
		Get:      func(string) ([]byte, bool, error) { return n.value, n.value != nil, nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	n.e = e
	return n
}

// set writes value through on_set, as ckd does, and stores the result.
func (n *pnNode) set(value string) error {
	out, err := n.e.OnSet(bg, "counters/c", []byte(value), Meta{Op: "set"})
	if err == nil {
		n.value = out
	}
	return err
}

func (n *pnNode) count(t *testing.T) string {
	t.Helper()
	out, err := n.e.OnGet(bg, "counters/c", n.value, Meta{Op: "get"})
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

func TestExamplePNCounter(t *testing.T) {
	n1, n2 := newPNNode(t, "n1"), newPNNode(t, "n2")
	for _, step := range []struct {
		n            *pnNode
		write, count string
		state        string
	}{
		{n1, "+1", "1", `{"n":{},"p":{"n1":1}}`},
		{n1, "+2", "3", `{"n":{},"p":{"n1":3}}`},
		{n1, "-1", "2", `{"n":{"n1":1},"p":{"n1":3}}`},
		{n2, "+5", "5", `{"n":{},"p":{"n2":5}}`},
		{n2, `{"p":{"n1":2,"n3":4},"n":{"n3":1}}`, "10", `{"n":{"n3":1},"p":{"n1":2,"n2":5,"n3":4}}`},
		{n2, "+0", "10", `{"n":{"n3":1},"p":{"n1":2,"n2":5,"n3":4}}`},
	} {
		if err := step.n.set(step.write); err != nil {
			t.Fatalf("set %s: %v", step.write, err)
		}
		if got := string(step.n.value); got != step.state {
			t.Errorf("after %s: state %s; want %s", step.write, got, step.state)
		}
		if got := step.n.count(t); got != step.count {
			t.Errorf("after %s: count %s; want %s", step.write, got, step.count)
		}
	}
	// The two nodes' concurrent states merge to every increment once.
	v, deleted, ok, err := n1.e.OnConflict("counters/c", Version{Value: n1.value}, Version{Value: n2.value})
	if !ok || err != nil || deleted || string(v) != `{"n":{"n1":1,"n3":1},"p":{"n1":3,"n2":5,"n3":4}}` {
		t.Fatalf("merge = %s, deleted %v, ok %v, %v", v, deleted, ok, err)
	}
	n1.value = v
	if got := n1.count(t); got != "10" {
		t.Errorf("merged count %s; want 10", got)
	}

	for _, bad := range []string{"5", "+x", "++1", "+1234567890123456", ""} {
		if err := n1.set(bad); !errors.Is(err, ErrRejected) {
			t.Errorf("set %q: %v; want a rejection", bad, err)
		}
	}
	for _, bad := range []string{`{"p":{"n1":-1}}`, `{"p":{"n1":1.5}}`, `{"p":[1]}`, `{bad`} {
		if err := n1.set(bad); err == nil {
			t.Errorf("set %q: accepted; want it refused", bad)
		}
	}
	if out, err := n1.e.OnSet(bg, "counters/c", nil, Meta{Op: "del"}); err != nil || out != nil {
		t.Errorf("delete through on_set: %q, %v; want it kept", out, err)
	}

	del := Version{Deleted: true}
	if v, deleted, _, err := n1.e.OnConflict("counters/c", del, del); err != nil || !deleted {
		t.Errorf("two deletes: %s, deleted %v, %v", v, deleted, err)
	}
	if v, deleted, _, err := n1.e.OnConflict("counters/c", del, Version{Value: n2.value}); err != nil || deleted || string(v) != string(n2.value) {
		t.Errorf("a delete and a state: %s, deleted %v, %v", v, deleted, err)
	}

	// Commutative, associative and idempotent, on random states.
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	random := func() Version {
		if rng.IntN(8) == 0 {
			return del
		}
		side := func() string {
			var parts []string
			for _, node := range []string{"a", "b", "c"} {
				if rng.IntN(2) == 0 {
					parts = append(parts, fmt.Sprintf("%q:%d", node, rng.IntN(5)))
				}
			}
			return "{" + strings.Join(parts, ",") + "}"
		}
		return Version{Value: []byte(`{"p":` + side() + `,"n":` + side() + `}`)}
	}
	resolve := func(a, b Version) Version {
		t.Helper()
		v, deleted, ok, err := n1.e.OnConflict("counters/c", a, b)
		if !ok || err != nil {
			t.Fatalf("OnConflict(%s, %s): ok %v, %v", a.Value, b.Value, ok, err)
		}
		return Version{Value: v, Deleted: deleted}
	}
	same := func(x, y Version) bool { return x.Deleted == y.Deleted && string(x.Value) == string(y.Value) }
	for range 100 {
		a, b, c := random(), random(), random()
		if ab, ba := resolve(a, b), resolve(b, a); !same(ab, ba) {
			t.Fatalf("not commutative: %s, %s: %s vs %s", a.Value, b.Value, ab.Value, ba.Value)
		}
		if l, r := resolve(resolve(a, b), c), resolve(a, resolve(b, c)); !same(l, r) {
			t.Fatalf("not associative: %s, %s, %s: %s vs %s", a.Value, b.Value, c.Value, l.Value, r.Value)
		}
		if a.Deleted {
			continue
		}
		if aa := resolve(a, a); !same(resolve(aa, a), aa) {
			t.Fatalf("not idempotent: %s", a.Value)
		}
	}
}
