package wal

import (
	"path/filepath"
	"reflect"
	"testing"
)

func TestFits(t *testing.T) {
	for _, c := range []struct {
		name               string
		pos, n, head, tail int64
		want               bool
	}{
		{"at the head, tail behind", 8, 4, 8, 0, true},
		{"wrapped, clear of the tail", 0, 4, 12, 4, true},
		{"wrapped, over the tail", 0, 8, 12, 4, false},
		{"tail ahead, room before it", 4, 4, 4, 8, true},
		{"tail ahead, no room", 4, 8, 4, 8, false},
		{"full", 4, 1, 4, 4, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := Fits(c.pos, c.n, c.head, c.tail); got != c.want {
				t.Fatalf("Fits(%d, %d, %d, %d) = %v", c.pos, c.n, c.head, c.tail, got)
			}
		})
	}
}

// Batches written are recovered after the number given, in order, and a
// log of another store yields none.
func TestWriteRecover(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	id := [16]byte{1}
	w, err := Open(path, MinSize, id, true)
	if err != nil {
		t.Fatal(err)
	}
	var want []Batch
	for lsn := uint64(1); lsn <= 3; lsn++ {
		changes := []Change{{Index: lsn, Key: "k", Raw: []byte{byte(lsn)}, Ev: []byte("e")}}
		b := w.Encode(lsn, 1000, changes)
		pos := w.Place(int64(len(b)))
		if err := w.Write(b, pos, lsn); err != nil {
			t.Fatal(err)
		}
		want = append(want, Batch{LSN: lsn, Pos: pos, End: pos + int64(len(b)), Reserved: 1000, Changes: changes})
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		id    [16]byte
		after uint64
		want  []Batch
	}{
		{"all", id, 0, want},
		{"after the first", id, 1, want[1:]},
		{"another store's", [16]byte{2}, 0, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := Open(path, MinSize, c.id, true)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			got, err := r.Recover(c.after)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, c.want) {
				t.Fatalf("recovered %+v, want %+v", got, c.want)
			}
		})
	}
}

// A log closed cleanly is marked with its last batch's number: a data
// file at that number or beyond recovers nothing from it (and the mark is
// found), one behind it gets the ring emptied, and another store's mark is
// not one.
func TestCloseClean(t *testing.T) {
	id := [16]byte{1}
	for _, c := range []struct {
		name    string
		id      [16]byte
		after   uint64
		marked  bool
		emptied bool
	}{
		{"at the mark", id, 3, true, false},
		{"beyond the mark", id, 9, true, false},
		{"behind the mark", id, 1, true, true},
		{"another store's", [16]byte{2}, 0, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "log")
			w, err := Open(path, MinSize, id, true)
			if err != nil {
				t.Fatal(err)
			}
			for lsn := uint64(1); lsn <= 3; lsn++ {
				b := w.Encode(lsn, 0, []Change{{Index: lsn, Key: "k"}})
				if err := w.Write(b, w.Place(int64(len(b))), lsn); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.CloseClean(); err != nil {
				t.Fatal(err)
			}
			r, err := Open(path, MinSize, c.id, true)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			if n, ok := r.closedAt(); ok != c.marked || ok && n != 3 {
				t.Fatalf("closed mark %d, %v", n, ok)
			}
			got, err := r.Recover(c.after)
			if err != nil || len(got) != 0 || r.Head() != 0 || r.LSN() != c.after {
				t.Fatalf("recovered %d batches, head %d, lsn %d, %v", len(got), r.Head(), r.LSN(), err)
			}
			if !r.Allocated() || r.Size() != MinSize {
				t.Fatalf("allocated %v, size %d", r.Allocated(), r.Size())
			}
			if _, ok := r.closedAt(); c.marked && ok == c.emptied {
				t.Fatalf("ring emptied: %v", !ok)
			}
		})
	}
}
