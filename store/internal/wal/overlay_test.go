package wal

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
)

var errFull = errors.New("no space")

// file is a data file for the overlay's tests: it keeps what a flush
// wrote, and fails the next fails writes.
type file struct {
	recs   map[string]string
	events []string
	fails  int
	writes int
	made   []bool // what each of the sink's retries reports
	asked  []int  // the retries asked, by number
}

func (f *file) sink() Sink[string] {
	s := Sink[string]{
		Write: func(p *Set[string]) error {
			f.writes++
			if f.fails > 0 {
				f.fails--
				return errFull
			}
			for k, r := range p.Recs {
				f.recs[k] = string(r.Raw)
			}
			for _, e := range p.Events {
				f.events = append(f.events, e.Value)
			}
			return nil
		},
		Flushed: func(batches int, err error, again bool) error { return err },
	}
	for i := range f.made {
		s.Retries = append(s.Retries, func(err error) bool {
			if err == nil {
				return false
			}
			f.asked = append(f.asked, i)
			return f.made[i]
		})
	}
	return s
}

// commit adds one batch of key=value writes to o's active set, as the
// store's publish does, with change-log indexes from first on. Every
// record is in leaf 7.
func commit(o *Overlay[string], mu *sync.RWMutex, lsn uint64, pos int64, first uint64, kvs ...string) {
	mu.Lock()
	defer mu.Unlock()
	p := o.Active()
	n := uint64(len(kvs) / 2)
	p.Add(lsn, pos, Block, lsn, first+n-1, 1)
	for i := range n {
		k, v := kvs[2*i], kvs[2*i+1]
		ev := Event[string]{Index: first + i, Value: fmt.Sprintf("%d:%s", first+i, k)}
		p.Put(Rec{Key: k, Raw: []byte(v)}, 7, ev)
	}
}

// A failed flush keeps its frozen set, which reads still see under the
// newer active one; the next flushes write the frozen set, then the
// active one.
func TestOverlayReadsThroughBothSets(t *testing.T) {
	var mu sync.RWMutex
	f := &file{recs: map[string]string{}, fails: 1}
	o := NewOverlay(&mu, f.sink())
	commit(o, &mu, 1, 0, 1, "a", "1", "b", "1")
	if err := o.Flush(); !errors.Is(err, errFull) {
		t.Fatalf("Flush = %v, want the write's error", err)
	}
	commit(o, &mu, 2, Block, 3, "b", "2", "c", "2")

	mu.RLock()
	if r := o.Rec("b"); r == nil || string(r.Raw) != "2" {
		t.Errorf("Rec(b) = %v, want the active set's", r)
	}
	if r := o.Rec("a"); r == nil || string(r.Raw) != "1" {
		t.Errorf("Rec(a) = %v, want the frozen set's", r)
	}
	var keys []string
	for _, r := range o.Range("", "a") {
		keys = append(keys, r.Key+"="+string(r.Raw))
	}
	if want := []string{"b=2", "c=2"}; !slices.Equal(keys, want) {
		t.Errorf("Range after a = %v, want %v", keys, want)
	}
	leaf := map[string]string{}
	o.Leaf(7, func(r *Rec) { leaf[r.Key] = string(r.Raw) })
	if leaf["a"] != "1" || leaf["b"] != "2" || leaf["c"] != "2" {
		t.Errorf("Leaf = %v, want the newer record of each key", leaf)
	}
	if evs := o.Events(1, 3, 10); !slices.Equal(evs, []string{"2:b", "3:b"}) {
		t.Errorf("Events(1, 3] = %v, want across both sets", evs)
	}
	if evs := o.Events(0, 4, 3); len(evs) != 3 {
		t.Errorf("Events at most 3 = %v", evs)
	}
	if tail, busy := o.Tail(); !busy || tail != 0 {
		t.Errorf("Tail = %d, %v: want the frozen set's start", tail, busy)
	}
	sig, err := o.LastFlush()
	mu.RUnlock()
	if !errors.Is(err, errFull) {
		t.Errorf("LastFlush = %v, want the failed flush's error", err)
	}

	if err := o.FlushAll(); err != nil {
		t.Fatal(err)
	}
	<-sig // closed by the flushes since
	mu.RLock()
	idle, rec := o.Idle(), o.Rec("a")
	mu.RUnlock()
	if !idle || rec != nil || o.Flushes() != 3 {
		t.Errorf("after FlushAll: idle %v, Rec(a) %v, %d flushes: want idle, nil, 3", idle, rec, o.Flushes())
	}
	if want := map[string]string{"a": "1", "b": "2", "c": "2"}; fmt.Sprint(f.recs) != fmt.Sprint(want) {
		t.Errorf("file holds %v, want %v", f.recs, want)
	}
	if want := []string{"1:a", "2:b", "3:b", "4:c"}; !slices.Equal(f.events, want) {
		t.Errorf("file holds events %v, want %v", f.events, want)
	}
}

// After a failed write each retry that made room is followed by one more
// write, in order, whether or not the retries before it made any.
func TestOverlayFlushRetries(t *testing.T) {
	for _, tc := range []struct {
		name    string
		fails   int
		made    []bool
		writes  int
		asked   []int
		flushed bool
	}{
		{"first write", 0, []bool{true, true}, 1, nil, true},
		{"the first retry", 1, []bool{true, true}, 2, []int{0}, true},
		{"the second retry", 1, []bool{false, true}, 2, []int{0, 1}, true},
		{"both retries", 2, []bool{true, true}, 3, []int{0, 1}, true},
		{"retries in vain", 3, []bool{true, true}, 3, []int{0, 1}, false},
		{"no room made", 1, []bool{false, false}, 1, []int{0, 1}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.RWMutex
			f := &file{recs: map[string]string{}, fails: tc.fails, made: tc.made}
			o := NewOverlay(&mu, f.sink())
			commit(o, &mu, 1, 0, 1, "k", "v")
			err := o.Flush()
			if f.writes != tc.writes || !slices.Equal(f.asked, tc.asked) {
				t.Errorf("%d writes, retries asked %v; want %d, %v", f.writes, f.asked, tc.writes, tc.asked)
			}
			mu.RLock()
			idle := o.Idle()
			mu.RUnlock()
			if (err == nil) != tc.flushed || idle != tc.flushed {
				t.Errorf("Flush = %v, idle %v; want flushed %v", err, idle, tc.flushed)
			}
		})
	}
}
