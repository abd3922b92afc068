package store_test

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cloudknowledge/ck/store"
)

func TestOpenCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	s := openAt(t, filepath.Join(dir, "store.db"))
	if s.NodeID().IsZero() || s.StoreID().IsZero() || s.NodeID() == s.StoreID() {
		t.Errorf("ids: node %s store %s", s.NodeID(), s.StoreID())
	}
	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, want 0600", fi.Mode().Perm())
	}
	if s.Keys() != 0 || s.LastIndex() != 0 || s.Lamport() != 0 {
		t.Errorf("fresh store: keys %d, last index %d, lamport %d", s.Keys(), s.LastIndex(), s.Lamport())
	}
}

func TestSetGetDelete(t *testing.T) {
	s := openTest(t, func(o *store.Options) { o.Now = func() time.Time { return time.UnixMilli(1234) } })
	if _, found := mustGet(t, s, "a"); found {
		t.Fatal("found a missing key")
	}
	r1 := mustSet(t, s, "a", "one")
	want := store.Record{Key: "a", Value: []byte("one"), VV: store.VV{s.NodeID(): 1}, Lamport: 1,
		Origin: s.NodeID(), LWW: store.Stamp{Lamport: 1, Origin: s.NodeID()}, At: 1234}
	if r1.Hash() != want.Hash() {
		t.Fatalf("Set = %+v, want %+v", r1, want)
	}
	got, found := mustGet(t, s, "a")
	if !found || got.Hash() != r1.Hash() {
		t.Fatalf("Get = %+v, %v; want %+v", got, found, r1)
	}
	r2 := mustSet(t, s, "a", "")
	if r2.Lamport != 2 || r2.VV[s.NodeID()] != 2 || len(r2.Value) != 0 || s.Keys() != 1 {
		t.Fatalf("second Set = %+v, keys %d", r2, s.Keys())
	}
	d := mustDelete(t, s, "a")
	if !d.Deleted || d.Lamport != 3 || d.Value != nil || s.Keys() != 0 {
		t.Fatalf("Delete = %+v, keys %d", d, s.Keys())
	}
	got, found = mustGet(t, s, "a")
	if !found || !got.Deleted || got.Lamport != 3 {
		t.Fatalf("Get after delete = %+v, %v; want the tombstone", got, found)
	}
	if d := mustDelete(t, s, "never"); !d.Deleted || d.Lamport != 4 {
		t.Fatalf("Delete of a missing key = %+v", d)
	}
	if s.Lamport() != 4 || s.LastIndex() != 4 {
		t.Errorf("lamport %d, last index %d, want 4, 4", s.Lamport(), s.LastIndex())
	}
}

func TestIfVersion(t *testing.T) {
	s := openTest(t)
	mustSet(t, s, "live", "x") // version 1
	mustSet(t, s, "gone", "x") // 2
	mustDelete(t, s, "gone")   // 3
	mustSet(t, s, "live", "y") // 4
	tests := []struct {
		name, key string
		del       bool
		ifVersion uint64
		ok        bool
	}{
		{"absent, 0", "new", false, 0, true},       // new = 5
		{"absent, not 0", "new2", false, 5, false}, // current 0
		{"live, right", "live", false, 4, true},    // live = 6
		{"live, stale", "live", false, 4, false},   // current 6
		{"live, 0", "live", false, 0, false},       // current 6
		{"deleted counts as 0", "gone", false, 0, true},
		{"delete, stale", "live", true, 5, false},
		{"delete, right", "live", true, 6, true},
		{"deleted, old version", "live", false, 6, false}, // current 0
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var current uint64
			if cur, found := mustGet(t, s, tt.key); found && !cur.Deleted {
				current = cur.Lamport
			}
			before := s.LastIndex()
			var err error
			if tt.del {
				_, err = s.Delete(t.Context(), tt.key, &tt.ifVersion)
			} else {
				_, err = s.Set(t.Context(), tt.key, []byte("v"), &tt.ifVersion)
			}
			if tt.ok {
				if err != nil {
					t.Fatalf("write: %v", err)
				}
				return
			}
			var ve *store.VersionError
			if !errors.Is(err, store.ErrVersionMismatch) || !errors.As(err, &ve) {
				t.Fatalf("write: %v, want a version mismatch", err)
			}
			if ve.Current != current || ve.Want != tt.ifVersion || ve.Key != tt.key {
				t.Fatalf("mismatch %+v, want current %d", ve, current)
			}
			if s.LastIndex() != before {
				t.Fatal("a refused write was logged")
			}
		})
	}
}

// A refused conditional write in a batch does not fail the others, and
// conditional writes in one batch see the earlier ones: counters
// incremented by compare-and-set from many goroutines are exact.
func TestIfVersionConcurrent(t *testing.T) {
	s := openTest(t, durable)
	const goroutines, increments = 8, 20
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for done := 0; done < increments; {
				cur, _, err := s.Get("counter")
				if err != nil {
					t.Error(err)
					return
				}
				var n int
				if len(cur.Value) > 0 {
					n, _ = strconv.Atoi(string(cur.Value))
				}
				_, err = s.Set(t.Context(), "counter", []byte(strconv.Itoa(n+1)), &cur.Lamport)
				switch {
				case err == nil:
					done++
				case !errors.Is(err, store.ErrVersionMismatch):
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if cur, _ := mustGet(t, s, "counter"); string(cur.Value) != strconv.Itoa(goroutines*increments) {
		t.Fatalf("counter = %s, want %d", cur.Value, goroutines*increments)
	}
}

func TestTooLarge(t *testing.T) {
	s := openTest(t, func(o *store.Options) { o.MaxValueSize = 10 })
	if _, err := s.Set(t.Context(), "k", make([]byte, 10), nil); err != nil {
		t.Fatalf("10 bytes: %v", err)
	}
	_, err := s.Set(t.Context(), "k", make([]byte, 11), nil)
	if !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("11 bytes: %v, want ErrTooLarge", err)
	}
	// The API shows the message as it is: no package prefix.
	if want := "value too large: 11 bytes, the limit is 10"; err.Error() != want {
		t.Errorf("11 bytes: message %q, want %q", err, want)
	}
	rec := write("k", "01234567890", 1, 5, nil)
	if _, err := s.Apply(t.Context(), rec); !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("apply 11 bytes: %v, want ErrTooLarge", err)
	}
	if _, err := store.Open(filepath.Join(t.TempDir(), "x.db"), store.Options{MaxValueSize: 65<<20 + 1}); err == nil {
		t.Fatal("Open accepted a MaxValueSize above 64 MiB")
	}
}

func TestPersistence(t *testing.T) {
	s := openTest(t)
	mustSet(t, s, "a", "1")
	mustSet(t, s, "b", "2")
	mustDelete(t, s, "a")
	node, sid, root, l := s.NodeID(), s.StoreID(), s.Root(), s.Lamport()
	b, _ := mustGet(t, s, "b")

	s = reopen(t, s)
	if s.NodeID() != node || s.StoreID() != sid {
		t.Error("ids changed across reopen")
	}
	if s.Root() != root || s.Keys() != 1 || s.LastIndex() != 3 {
		t.Errorf("root changed %v, keys %d, last index %d", s.Root() != root, s.Keys(), s.LastIndex())
	}
	if s.Lamport() < l {
		t.Errorf("lamport went back: %d < %d", s.Lamport(), l)
	}
	if got, _ := mustGet(t, s, "b"); got.Hash() != b.Hash() {
		t.Errorf("b = %+v, want %+v", got, b)
	}
	if got, found := mustGet(t, s, "a"); !found || !got.Deleted {
		t.Errorf("a = %+v, %v, want a tombstone", got, found)
	}
	if r := mustSet(t, s, "c", "3"); r.Lamport <= l {
		t.Errorf("write after reopen got lamport %d <= %d", r.Lamport, l)
	}
}

// L never goes back across a clean reopen: it restarts at the reservation.
func TestLamportReopen(t *testing.T) {
	s := openTest(t)
	var last uint64
	for i := range 3 {
		r := mustSet(t, s, "k", "v")
		if r.Lamport <= last {
			t.Fatalf("round %d: lamport %d after %d", i, r.Lamport, last)
		}
		last = r.Lamport
		if s.Reserved() < last {
			t.Fatalf("reservation %d below a stored lamport %d", s.Reserved(), last)
		}
		s = reopen(t, s)
		if s.Lamport() < s.Reserved() {
			t.Fatalf("opened at %d below the reservation %d", s.Lamport(), s.Reserved())
		}
	}
}

// A copy of the store's files (the data file and its write-ahead log)
// taken while the store runs is what a crash leaves.
// The copy must not hand out again any lamport the original handed out:
// neither stored ones nor ones sent under a reservation before their commit.
func TestLamportCrash(t *testing.T) {
	s := openTest(t)
	for range 5 {
		mustSet(t, s, "k", "v")
	}
	// Lamports up to 3000 sent ahead of their commit (what Reserve is for).
	if err := s.Reserve(t.Context(), 3000); err != nil {
		t.Fatal(err)
	}
	crashed := filepath.Join(t.TempDir(), "crashed.db")
	copyFile(t, s.Path(), crashed)
	copyFile(t, s.Path()+"-wal", crashed+"-wal")

	c := openAt(t, crashed)
	if c.Lamport() < 3000 {
		t.Fatalf("reopened at %d, inside the reservation", c.Lamport())
	}
	if r := mustSet(t, c, "k", "v"); r.Lamport <= 3000 {
		t.Fatalf("after a crash the first write got %d, inside the reservation", r.Lamport)
	}
}

// A reservation written by a process that then died is honoured.
func TestLamportRawReservation(t *testing.T) {
	s := openTest(t)
	mustSet(t, s, "k", "v")
	path := s.Path()
	checkClose(t, s)
	forgeFile(t, path, func(tx *bolt.Tx) error {
		return tx.Bucket(store.BucketMeta).Put(store.MetaReserved, []byte{0, 0, 0, 0, 0, 0, 0x13, 0x88}) // 5000
	})
	s = openAt(t, path)
	if s.Lamport() != 5000 {
		t.Fatalf("opened at lamport %d, want the reservation 5000", s.Lamport())
	}
	if r := mustSet(t, s, "k", "w"); r.Lamport != 5001 || s.Reserved() != 5001+store.LamportBlock {
		t.Fatalf("write at %d, reservation %d", r.Lamport, s.Reserved())
	}
}

func TestReserveAndObserve(t *testing.T) {
	s := openTest(t)
	s.Observe(70)
	s.Observe(10)
	if s.Lamport() != 70 {
		t.Fatalf("lamport %d, want 70", s.Lamport())
	}
	if err := s.Reserve(t.Context(), 20000); err != nil {
		t.Fatal(err)
	}
	if s.Reserved() < 20000 {
		t.Fatalf("reserved %d", s.Reserved())
	}
	if r := mustSet(t, s, "k", "v"); r.Lamport != 71 {
		t.Fatalf("write at %d, want 71", r.Lamport)
	}
	s = reopen(t, s)
	if s.Lamport() < 20000 {
		t.Fatalf("reopened at %d below the reservation", s.Lamport())
	}
}

func copyFile(t testing.TB, from, to string) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// bbolt's lock is flock(2), held per open file description, so a second
// Open in the same process waits for it like another process would.
func TestLocked(t *testing.T) {
	s := openTest(t)
	start := time.Now()
	_, err := store.Open(s.Path(), store.Options{LockTimeout: 200 * time.Millisecond})
	if !errors.Is(err, store.ErrLocked) {
		t.Fatalf("second Open: %v, want ErrLocked", err)
	}
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("gave up after %v, before the lock timeout", d)
	}
	path := s.Path()
	checkClose(t, s)
	openAt(t, path) // released by Close
}

func TestFormat(t *testing.T) {
	t.Run("future version", func(t *testing.T) {
		s := openTest(t)
		path := s.Path()
		checkClose(t, s)
		forgeFile(t, path, func(tx *bolt.Tx) error {
			return tx.Bucket(store.BucketMeta).Put(store.MetaFormat, binary.BigEndian.AppendUint64(nil, store.FormatVersion+1))
		})
		if _, err := store.Open(path, store.Options{}); !errors.Is(err, store.ErrFormat) {
			t.Fatalf("Open: %v, want ErrFormat", err)
		}
	})
	t.Run("other bolt file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "other.db")
		forgeFile(t, path, func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("x")); return err })
		if _, err := store.Open(path, store.Options{}); !errors.Is(err, store.ErrFormat) {
			t.Fatalf("Open: %v, want ErrFormat", err)
		}
	})
	t.Run("not bolt", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "junk.db")
		if err := os.WriteFile(path, make([]byte, 8192), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := store.Open(path, store.Options{}); !errors.Is(err, store.ErrFormat) {
			t.Fatalf("Open: %v, want ErrFormat", err)
		}
	})
}

func TestClosed(t *testing.T) {
	s := openTest(t)
	mustSet(t, s, "k", "v")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx := t.Context()
	checks := map[string]error{}
	_, checks["set"] = s.Set(ctx, "k", nil, nil)
	_, checks["delete"] = s.Delete(ctx, "k", nil)
	_, checks["apply"] = s.Apply(ctx, write("k", "v", 1, 9, nil))
	_, _, checks["get"] = s.Get("k")
	_, _, checks["list"] = s.List("", "", 0, true)
	checks["scan"] = s.Scan("", func(store.Record) error { return nil })
	checks["watch"] = s.Watch(ctx, "", 0, false, func(store.Event) error { return nil })
	checks["reserve"] = s.Reserve(ctx, 1<<40)
	for name, err := range checks {
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("%s after Close: %v, want ErrClosed", name, err)
		}
	}
}

// Close waits for writes in flight: each either commits or fails with
// ErrClosed, none is lost or left hanging.
func TestCloseWithWritersInFlight(t *testing.T) {
	s := openTest(t)
	var wg sync.WaitGroup
	acked := make(chan string, 400)
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				key := string(rune('a'+g)) + "/" + string(rune('a'+i%26)) + string(rune('a'+i/26))
				if _, err := s.Set(context.Background(), key, []byte("v"), nil); err == nil {
					acked <- key
				} else if !errors.Is(err, store.ErrClosed) {
					t.Errorf("set: %v", err)
				}
			}
		})
	}
	time.Sleep(time.Millisecond)
	path := s.Path()
	checkClose(t, s)
	wg.Wait()
	close(acked)
	s = openAt(t, path)
	for key := range acked {
		if _, found := mustGet(t, s, key); !found {
			t.Errorf("acknowledged write %q lost", key)
		}
	}
}

func TestContextEnded(t *testing.T) {
	s := openTest(t)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := s.Set(ctx, "k", []byte("v"), nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Set = %v, want context.Canceled", err)
	}
	if _, found := mustGet(t, s, "k"); found || s.LastIndex() != 0 {
		t.Fatal("a write with an ended context was stored")
	}
}

func TestNextEpochGrows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ckd.db")
	var last uint64
	for i, now := range []uint64{1000, 500, 1000, 5000} { // the clock may go back
		s, err := store.Open(path, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		e, err := s.NextEpoch(now)
		if err != nil {
			t.Fatal(err)
		}
		if e <= last || e < now {
			t.Errorf("start %d: epoch %d after %d (now %d)", i, e, last, now)
		}
		last = e
		s.Close()
	}
}
