package store_test

import (
	"errors"
	"slices"
	"testing"

	"github.com/cloudknowledge/ck/internal/testseed"
	"github.com/cloudknowledge/ck/store"
)

func TestList(t *testing.T) {
	s := openTest(t)
	for _, k := range []string{"b/2", "a", "b/1", "b/10", "b/é", "b/Z", "c", "b/gone", "bb"} {
		mustSet(t, s, k, "v:"+k)
	}
	mustDelete(t, s, "b/gone")
	mustDelete(t, s, "never")

	tests := []struct {
		name, prefix, after string
		limit               int
		want                []string
		next                string
	}{
		{"all", "", "", 0, []string{"a", "b/1", "b/10", "b/2", "b/Z", "b/é", "bb", "c"}, ""},
		{"prefix, byte order", "b/", "", 0, []string{"b/1", "b/10", "b/2", "b/Z", "b/é"}, ""},
		{"page 1", "b/", "", 2, []string{"b/1", "b/10"}, "b/10"},
		{"page 2", "b/", "b/10", 2, []string{"b/2", "b/Z"}, "b/Z"},
		{"page 3, tombstone after", "b/", "b/Z", 2, []string{"b/é"}, ""},
		{"exact page end", "b/", "b/2", 2, []string{"b/Z", "b/é"}, ""},
		{"after outside prefix", "b/", "a", 1, []string{"b/1"}, "b/1"},
		{"after beyond prefix", "b/", "c", 0, nil, ""},
		{"after a missing key", "", "b/3", 2, []string{"b/Z", "b/é"}, "b/é"},
		{"no match", "x", "", 0, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs, next, err := s.List(tt.prefix, tt.after, tt.limit, true)
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, r := range recs {
				keys = append(keys, r.Key)
				if string(r.Value) != "v:"+r.Key || r.Deleted {
					t.Errorf("%q: value %q deleted %v", r.Key, r.Value, r.Deleted)
				}
			}
			if !slices.Equal(keys, tt.want) || next != tt.next {
				t.Errorf("List = %q next %q, want %q next %q", keys, next, tt.want, tt.next)
			}
		})
	}
	recs, _, err := s.List("b/1", "", 0, false)
	if err != nil || len(recs) != 2 || recs[0].Value != nil || recs[0].Lamport == 0 || len(recs[0].VV) != 1 {
		t.Errorf("List without values = %+v, %v", recs, err)
	}
}

// Paging by next visits every live key once.
func TestListPaging(t *testing.T) {
	s := openTest(t)
	rng := testseed.Rand(t)
	live := map[string]bool{}
	for i := range 300 {
		k := "p/" + string(rune('a'+rng.IntN(26))) + string(rune('a'+i%26)) + string(rune('a'+i/26))
		if rng.IntN(4) == 0 {
			mustDelete(t, s, k)
			delete(live, k)
		} else {
			mustSet(t, s, k, "v")
			live[k] = true
		}
	}
	var seen []string
	for after, pages := "", 0; ; pages++ {
		recs, next, err := s.List("p/", after, 7, false)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			seen = append(seen, r.Key)
		}
		if next == "" {
			break
		}
		after = next
	}
	if !slices.IsSorted(seen) || len(seen) != len(live) || uint64(len(seen)) != s.Keys() {
		t.Fatalf("paged %d keys (sorted %v), %d live, Keys %d", len(seen), slices.IsSorted(seen), len(live), s.Keys())
	}
}

func TestScan(t *testing.T) {
	s := openTest(t)
	var want []string
	for i := range 600 { // more than one chunk
		k := "s/" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		want = append(want, k)
		if i%3 == 0 {
			mustDelete(t, s, k)
		} else {
			mustSet(t, s, k, "v")
		}
	}
	mustSet(t, s, "t", "other prefix")
	slices.Sort(want)
	var got []string
	err := s.Scan("s/", func(r store.Record) error {
		got = append(got, r.Key)
		return nil
	})
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("Scan = %d keys, %v; want %d", len(got), err, len(want))
	}
	stop := errors.New("stop")
	n := 0
	if err := s.Scan("", func(store.Record) error { n++; return stop }); err != stop || n != 1 {
		t.Fatalf("Scan with a failing fn = %v after %d calls", err, n)
	}
}
