package cluster

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/scripting"
	"github.com/cloudknowledge/ck/store"
)

// luaResolver resolves conflicts with a real Lua on_conflict hook, as the
// daemon does, and records the keys it was asked about.
type luaResolver struct {
	eng  *scripting.Engine
	mu   sync.Mutex
	keys map[string]int
}

func newLuaResolver(t *testing.T, script string) *luaResolver {
	t.Helper()
	eng, err := scripting.New(scripting.Config{Hooks: []scripting.HookSpec{{
		Pattern: "*", Script: filepath.Join("..", "..", "examples", "hooks", script),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	return &luaResolver{eng: eng, keys: map[string]int{}}
}

func (r *luaResolver) Resolve(key string, w, l *store.Record) ([]byte, bool, error) {
	r.mu.Lock()
	r.keys[key]++
	r.mu.Unlock()
	v := func(x *store.Record) scripting.Version {
		return scripting.Version{Value: x.Value, Deleted: x.Deleted, Lamport: x.Lamport, Origin: x.Origin.String()}
	}
	value, deleted, ok, err := r.eng.OnConflict(key, v(w), v(l))
	if !ok && err == nil {
		return w.Value, w.Deleted, nil
	}
	return value, deleted, err
}

func (r *luaResolver) asked(key string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys[key]
}

// setMembers decodes a set_union value.
func setMembers(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatalf("value %q is not a JSON array of strings: %v", b, err)
	}
	slices.Sort(out)
	return out
}

// TestSimLuaMergeAfterPartition: a partition with concurrent writes on both
// sides heals to the on_conflict merge of examples/hooks/set_union.lua on
// every node, and keys written on one side only never reach the hook.
func TestSimLuaMergeAfterPartition(t *testing.T) {
	forSeedsDiv(t, 4, func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, 7))
		nw := lossy(seed)
		res := newLuaResolver(t, "set_union.lua")
		nodes := startSimClusterWith(t, nw, 3+rng.IntN(2), simOptions{res: res})
		left, right := nodes[:1+rng.IntN(len(nodes)-1)], []*simNode(nil)
		right = nodes[len(left):]
		nw.Partition(addrs(left), addrs(right))
		want := map[string]bool{}
		for i := range 6 {
			for side, group := range [][]*simNode{left, right} {
				sn := group[rng.IntN(len(group))]
				tag := fmt.Sprintf("s%d-%d", side, i)
				want[tag] = true
				sn.write(t, "shared/set", fmt.Sprintf("[%q]", tag), 0)
				sn.write(t, fmt.Sprintf("only/%s/%d", sn.name, i), fmt.Sprintf("[%q]", tag), 0)
			}
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		}
		nw.Heal()
		waitFor(t, 60*simHeartbeat, func() error { return converged(nodes) })
		// Within a side later writes overwrite earlier ones (unless two
		// nodes of that side raced, which merges them too), so the merge
		// holds at least each side's last element, identically everywhere.
		var first []string
		for i, sn := range nodes {
			r, ok, err := sn.st.Get("shared/set")
			if err != nil || !ok {
				t.Fatalf("%s: shared/set missing (%v)", sn.name, err)
			}
			got := setMembers(t, r.Value)
			if i == 0 {
				first = got
			} else if !slices.Equal(got, first) {
				t.Errorf("%s holds %v, %s holds %v", sn.name, got, nodes[0].name, first)
			}
		}
		for _, tag := range []string{"s0-5", "s1-5"} {
			if !slices.Contains(first, tag) {
				t.Errorf("the merge %v lacks %s, written last on its side", first, tag)
			}
		}
		for key := range res.keys {
			if key != "shared/set" {
				t.Errorf("%s was written on one side only, yet reached on_conflict", key)
			}
		}
		if res.asked("shared/set") == 0 {
			t.Error("the concurrent writes never reached on_conflict")
		}
	})
}

// TestSimLuaThreeWriters: three nodes write one key concurrently; in every
// delivery order the set_union merge gives every node the same record with
// all three elements.
func TestSimLuaThreeWriters(t *testing.T) {
	forSeedsDiv(t, 4, func(t *testing.T, seed uint64) {
		nw := lossy(seed)
		res := newLuaResolver(t, "set_union.lua")
		nodes := startSimClusterWith(t, nw, 3, simOptions{res: res})
		nw.Partition(addrs(nodes[:1]), addrs(nodes[1:]))
		nw.Partition(addrs(nodes[1:2]), addrs(nodes[2:]))
		for i, sn := range nodes {
			sn.write(t, "k", fmt.Sprintf("[\"w%d\"]", i), 0)
		}
		nw.Heal()
		waitFor(t, 60*simHeartbeat, func() error { return converged(nodes) })
		var hash store.Hash
		for i, sn := range nodes {
			r, _, _ := sn.st.Get("k")
			if got := setMembers(t, r.Value); !slices.Equal(got, []string{"w0", "w1", "w2"}) {
				t.Errorf("%s holds %v, want all three writes", sn.name, got)
			}
			if i == 0 {
				hash = r.Hash()
			} else if r.Hash() != hash {
				t.Errorf("%s holds another record than %s", sn.name, nodes[0].name)
			}
		}
	})
}
