package wal

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"
)

// The zeroer never writes over a batch: batches written while it runs
// (with no margin, and each chunk of zeros held back until the committer
// has come up to it, so that the committer runs into the chunk being
// written) are all there, in the log and in a crash copy taken meanwhile,
// and every chunk of zeros starts outside every batch.
func TestZeroerSparesBatches(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	path := filepath.Join(dir, "log")
	const size = 8 << 20
	id := [16]byte{7}
	w, err := Open(path, size, id, false)
	if err != nil {
		t.Fatal(err)
	}
	if w.zero == nil {
		t.Skip("no direct writes here (tmpfs?): the log is not zeroed")
	}
	w.zero.halt() // replaced by a slow one without margin

	var mu sync.Mutex
	var batches [][2]int64 // [pos, end) of each batch written or being written
	var zeroed int64
	var z *zeroer
	z = w.newZeroer(func(b []byte, pos int64) error {
		mu.Lock()
		for _, r := range batches {
			if pos < r[1] && r[0] < pos+int64(len(b)) {
				t.Errorf("zeros at [%d, %d) over the batch at [%d, %d)", pos, pos+int64(len(b)), r[0], r[1])
			}
		}
		zeroed += int64(len(b))
		mu.Unlock()
		for deadline := time.Now().Add(50 * time.Millisecond); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			z.mu.Lock()
			reach := z.reach
			z.mu.Unlock()
			if reach > pos {
				time.Sleep(2 * time.Millisecond) // a batch written now would be lost
				break
			}
		}
		_, err := w.direct.WriteAt(b, pos)
		return err
	})
	w.zero = z
	go z.run(0)

	var want []Batch
	var crashed string
	for lsn := uint64(1); ; lsn++ {
		changes := []Change{{Index: lsn, Key: "k", Raw: bytes.Repeat([]byte{byte(lsn)}, rng.IntN(64*Block)), Ev: []byte("e")}}
		b := w.Encode(lsn, 0, changes)
		pos := w.Place(int64(len(b)))
		if pos < w.Head() {
			break // the first lap is over
		}
		mu.Lock()
		batches = append(batches, [2]int64{pos, pos + int64(len(b))})
		mu.Unlock()
		if err := w.Write(b, pos, lsn); err != nil {
			t.Fatal(err)
		}
		want = append(want, Batch{LSN: lsn, Pos: pos, End: pos + int64(len(b)), Changes: changes})
		if len(want) == 20 {
			crashed = filepath.Join(dir, "crashed")
			copyLog(t, path, crashed)
		}
	}
	z.halt()
	if zeroed == 0 {
		t.Fatal("the zeroer wrote nothing")
	}
	t.Logf("%d batches, %d bytes zeroed", len(want), zeroed)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		path string
		want []Batch
	}{
		{"the log", path, want},
		{"a crash copy", crashed, want[:20]},
	} {
		t.Run(c.name, func(t *testing.T) {
			r, err := Open(c.path, size, id, true)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { r.Close() })
			got, err := r.Recover(0)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.want) {
				t.Fatalf("recovered %d batches, want %d", len(got), len(c.want))
			}
			for i := range got {
				if !reflect.DeepEqual(got[i], c.want[i]) {
					t.Fatalf("batch %d differs", i+1)
				}
			}
		})
	}
}

// A fresh log's ring is zeroed (but for the part the committer writes
// first) and a log that is not fresh is not touched.
func TestZeroerFreshOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	w, err := Open(path, 8<<20, [16]byte{1}, false)
	if err != nil {
		t.Fatal(err)
	}
	if w.zero == nil {
		t.Skip("no direct writes here (tmpfs?): the log is not zeroed")
	}
	<-w.zero.done
	if w.zero.floor > 8<<20-w.MaxBatch() || w.zero.floor < w.MaxBatch() {
		t.Fatalf("zeroed from %d", w.zero.floor)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := Open(path, 8<<20, [16]byte{1}, false)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if r.zero != nil {
		t.Fatal("a log that is not fresh is zeroed")
	}
	n, err := Open(filepath.Join(t.TempDir(), "log"), 8<<20, [16]byte{1}, true)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if n.zero != nil {
		t.Fatal("a log without syncs is zeroed")
	}
}

func copyLog(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
