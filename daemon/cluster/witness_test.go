package cluster

import (
	"encoding/hex"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cloudknowledge/ck/store"
)

// TestWitnessScoreGolden pins the score function: every node must compute
// the same witnesses (docs/PROTOCOL.md, Fresh reads), so a change of it is
// a protocol change, not a refactoring.
func TestWitnessScoreGolden(t *testing.T) {
	id := func(s string) store.NodeID {
		var out store.NodeID
		b, err := hex.DecodeString(s)
		if err != nil || len(b) != len(out) {
			t.Fatalf("bad id %q", s)
		}
		copy(out[:], b)
		return out
	}
	a, b := id("00112233445566778899aabbccddeeff"), id("0123456789abcdef0123456789abcdef")
	for _, tc := range []struct {
		key  string
		id   store.NodeID
		want uint64
	}{
		// Computed by an independent implementation (Python's hashlib and
		// integers) of the function docs/PROTOCOL.md gives.
		{"app/config", a, 0xabeec985cd195ff7},
		{"app/config", b, 0x007d7db9ff4ab11b},
		{"users/42", a, 0x16d2aa9bbfc6d401},
		{"users/42", b, 0xbb7dfbc6c0c08602},
	} {
		t.Run(tc.key+"/"+tc.id.String()[:4], func(t *testing.T) {
			if got := witnessScore(store.KeyHash(tc.key), tc.id); got != tc.want {
				t.Errorf("score(%q, %s) = %#x, want %#x", tc.key, tc.id, got, tc.want)
			}
		})
	}
}

// TestWitnessesDeterministic: the witnesses of a key do not depend on the
// order a node lists its members in, and are the r best scores, best
// first.
func TestWitnessesDeterministic(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	ids := randomIDs(rng, 10)
	for k := range 100 {
		kh := store.KeyHash(fmt.Sprint("key/", k))
		want := witnessesOf(kh, slices.Clone(ids), 3)
		shuffled := slices.Clone(ids)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		if got := witnessesOf(kh, shuffled, 3); !slices.Equal(got, want) {
			t.Fatalf("key %d: witnesses %v from one order, %v from another", k, want, got)
		}
		for i := 1; i < len(want); i++ {
			if witnessScore(kh, want[i-1]) < witnessScore(kh, want[i]) {
				t.Errorf("key %d: witnesses not best first", k)
			}
		}
		for _, id := range ids {
			if !slices.Contains(want, id) && witnessScore(kh, id) > witnessScore(kh, want[len(want)-1]) {
				t.Errorf("key %d: %s scores above a witness but is not one", k, id)
			}
		}
	}
	if got := witnessesOf(store.KeyHash("k"), slices.Clone(ids[:2]), 3); len(got) != 2 {
		t.Errorf("2 nodes, 3 witnesses: %d witnesses, want both nodes", len(got))
	}
}

// TestWitnessSpread: each of N nodes is a witness of about r/N of the
// keys, so the load of answering fresh reads and acknowledging writes
// spreads evenly.
func TestWitnessSpread(t *testing.T) {
	const keys, r = 10000, 3
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 2))
	for _, n := range []int{4, 10, 40} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			ids := randomIDs(rng, n)
			count := map[store.NodeID]int{}
			for k := range keys {
				for _, id := range witnessesOf(store.KeyHash(fmt.Sprintf("k/%d/%d", seed, k)), slices.Clone(ids), r) {
					count[id]++
				}
			}
			// Binomial(keys, r/n): 6 standard deviations at least.
			p := float64(r) / float64(n)
			want := keys * p
			bound := max(6*math.Sqrt(keys*p*(1-p)), want/10)
			for _, id := range ids {
				if d := float64(count[id]) - want; d > bound || d < -bound {
					t.Errorf("%s is a witness of %d keys of %d, want %.0f ± %.0f", id, count[id], keys, want, bound)
				}
			}
		})
	}
}

func randomIDs(rng *rand.Rand, n int) []store.NodeID {
	ids := make([]store.NodeID, n)
	for i := range ids {
		for j := range ids[i] {
			ids[i][j] = byte(rng.Uint32())
		}
	}
	return ids
}

// TestWitnessesFirst: askAcks' ordering moves the witnesses to the front,
// best first, and keeps the random order of the others.
func TestWitnessesFirst(t *testing.T) {
	a, b, c, d, e := store.NodeID{1}, store.NodeID{2}, store.NodeID{3}, store.NodeID{4}, store.NodeID{5}
	for _, tc := range []struct {
		ids, wits, want []store.NodeID
	}{
		{[]store.NodeID{a, b, c, d}, []store.NodeID{c, a}, []store.NodeID{c, a, b, d}},
		{[]store.NodeID{a, b, c, d}, []store.NodeID{e, d}, []store.NodeID{d, a, b, c}},
		{[]store.NodeID{a, b}, nil, []store.NodeID{a, b}},
		{[]store.NodeID{d, c, b, a}, []store.NodeID{a, b, c, d}, []store.NodeID{a, b, c, d}},
	} {
		got := slices.Clone(tc.ids)
		witnessesFirst(got, tc.wits)
		if !slices.Equal(got, tc.want) {
			t.Errorf("witnessesFirst(%v, %v) = %v, want %v", tc.ids, tc.wits, got, tc.want)
		}
	}
}
