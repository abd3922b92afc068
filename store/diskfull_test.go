//go:build linux

package store_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/internal/poll"

	"github.com/cloudknowledge/ck/internal/tmpfs"
	"github.com/cloudknowledge/ck/store"
)

// waitFor polls cond for up to 20 s.
func waitFor(t *testing.T, what string, cond func() error) {
	t.Helper()
	if err := poll.For(20*time.Second, 20*time.Millisecond, cond); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// A ring of 64 blocks (256 KiB) and so a reserve of 128 KiB: the tmpfs
// stays small.
const smallWAL = 64 * 4096

// setUntilFull writes values of n bytes under prefix until the store
// refuses one, and returns the keys it acknowledged and the error.
func setUntilFull(t *testing.T, s *store.Store, prefix string, n int) (acked []string, err error) {
	t.Helper()
	value := make([]byte, n)
	for i := 0; i < 1000; i++ {
		key := fmt.Sprintf("%s/%d", prefix, i)
		keys, last, root, l := s.Keys(), s.LastIndex(), s.Root(), s.Lamport()
		if _, err = s.Set(t.Context(), key, value, nil); err != nil {
			if s.Keys() != keys || s.LastIndex() != last || s.Root() != root || s.Lamport() != l {
				t.Fatal("a refused write changed the in-memory state")
			}
			return acked, err
		}
		acked = append(acked, key)
	}
	t.Fatal("1000 writes fit on a full disk")
	return nil, nil
}

// mountTmpfs mounts a tmpfs of size on a temporary directory before the
// store opens there (so it is unmounted after the store's cleanup).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	tmpfs.Mount(t, dir, size)
	return dir
}

func TestDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "4m")
	s := openAt(t, filepath.Join(dir, "store.db"), durable, store.WALSize(smallWAL))
	if got := s.DiskState(); got != store.DiskOK {
		t.Fatalf("disk state %q on an empty disk", got)
	}
	const size = 24 << 10
	var old []string
	for i := range 20 {
		old = append(old, fmt.Sprintf("old/%d", i))
		mustSet(t, s, old[i], string(make([]byte, size)))
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	filler := filepath.Join(dir, "filler")
	tmpfs.Fill(t, filler)

	more, err := setUntilFull(t, s, "new", size)
	t.Logf("%d writes before the disk was full, %d after; refused: %v", len(old), len(more), err)
	if !errors.Is(err, store.ErrDiskFull) {
		t.Fatalf("write on a full disk: %v, want ErrDiskFull", err)
	}
	if got := s.DiskState(); got == store.DiskOK {
		t.Fatalf("disk state %q on a full disk", got)
	}
	for _, k := range append(old, more...) {
		if _, found := mustGet(t, s, k); !found {
			t.Fatalf("%s lost on a full disk", k)
		}
	}

	// Deletes and smaller overwrites are accepted, and free space for
	// writes that grow the store again.
	for _, k := range old[:len(old)/2] {
		mustDelete(t, s, k)
	}
	for _, k := range old[len(old)/2:] {
		mustSet(t, s, k, "small")
	}
	waitFor(t, "a write after deletes", func() error {
		_, err := s.Set(t.Context(), "after/deletes", make([]byte, size), nil)
		return err
	})
	if err := s.Check(); err != nil {
		t.Fatalf("check on a full disk: %v", err)
	}

	// Space returns: the reserve is allocated again and writes are no
	// longer limited.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "disk state after freeing space", func() error {
		if got := s.DiskState(); got != store.DiskOK {
			return fmt.Errorf("state %q", got)
		}
		return nil
	})
	rec := mustSet(t, s, "after/filler", string(make([]byte, size)))
	if got, found := mustGet(t, s, "after/filler"); !found || got.Hash() != rec.Hash() {
		t.Fatalf("read back: %v", found)
	}
}

// A store whose log holds unflushed batches (as after kill -9) opens on a
// full disk, serves every acknowledged write, accepts deletes and flushes
// them once space returns.
func TestDiskFullOpen(t *testing.T) {
	s := openTest(t, store.WALSize(smallWAL))
	release := s.HoldFlushes()
	t.Cleanup(release)
	want := map[string]store.Record{}
	for i := range 20 {
		r := mustSet(t, s, fmt.Sprintf("k%d", i), fmt.Sprint(i))
		want[r.Key] = r
	}
	dir := mountTmpfs(t, "2m")
	crashed := filepath.Join(dir, "crashed.db")
	copyFile(t, s.Path(), crashed)
	copyFile(t, store.WALPath(s.Path()), store.WALPath(crashed))
	release()
	tmpfs.Fill(t, filepath.Join(dir, "filler"))

	c := openAt(t, crashed, durable, store.WALSize(smallWAL))
	for k, w := range want {
		if r, found := mustGet(t, c, k); !found || r.Hash() != w.Hash() {
			t.Fatalf("%s after opening on a full disk: %+v, want %+v", k, r, w)
		}
	}
	if c.Keys() != 20 || c.Root() != s.Root() || c.LastIndex() != s.LastIndex() {
		t.Fatalf("keys %d, last index %d/%d, roots equal %v", c.Keys(), c.LastIndex(), s.LastIndex(), c.Root() == s.Root())
	}
	if got := c.DiskState(); got == store.DiskOK {
		t.Fatalf("disk state %q on a full disk without a reserve", got)
	}
	mustDelete(t, c, "k0")
	if r, _ := mustGet(t, c, "k0"); !r.Deleted {
		t.Fatalf("k0 after its delete: %+v", r)
	}
	if _, err := c.NextEpoch(uint64(time.Now().UnixMilli())); err != nil {
		t.Fatalf("boot epoch on a full disk: %v", err)
	}
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "flush after freeing space", func() error {
		if err := c.Flush(); err != nil {
			return err
		}
		if got := c.DiskState(); got != store.DiskOK {
			return fmt.Errorf("state %q", got)
		}
		return nil
	})
	if c.Keys() != 19 {
		t.Fatalf("%d keys, want 19", c.Keys())
	}
}

// Writes logged while the reserve was held can need more space to flush
// than the reserve gives back: bbolt copies a whole leaf, with the large
// records beside the one written. Such writes must not keep the deletes
// logged after them from freeing space (docs/ARCHITECTURE.md, "A full
// disk"). The layout is deterministic: every old record is flushed alone,
// and the new ones are logged while flushes are held.
func TestDiskFullStrandedWrites(t *testing.T) {
	dir := mountTmpfs(t, "4m")
	s := openAt(t, filepath.Join(dir, "store.db"), durable, store.WALSize(smallWAL))
	const size = 24 << 10
	var old []string
	for i := range 20 {
		old = append(old, fmt.Sprintf("old/%02d", i))
		mustSet(t, s, old[i], string(make([]byte, size)))
		if err := s.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	tmpfs.Fill(t, filepath.Join(dir, "filler"))

	// Six 24 KiB writes fit in the log (with its spare clear), but not in
	// the reserve with the copies of the old records beside them: each
	// goes between two old keys, in another leaf.
	release := s.HoldFlushes()
	t.Cleanup(release)
	var stranded []string
	for i := range 6 {
		stranded = append(stranded, old[3*i+1]+"+")
		mustSet(t, s, stranded[i], string(make([]byte, size)))
	}
	release()
	if err := s.Flush(); !errors.Is(err, store.ErrDiskFull) {
		t.Fatalf("flush of the stranded writes: %v, want ErrDiskFull", err)
	}
	if got := s.DiskState(); got != store.DiskFull {
		t.Fatalf("disk state %q, want %q", got, store.DiskFull)
	}
	if _, err := s.Set(t.Context(), "refused", []byte("x"), nil); !errors.Is(err, store.ErrDiskFull) {
		t.Fatalf("a growing write while flushes fail: %v, want ErrDiskFull", err)
	}

	for _, k := range old[:len(old)/2] {
		mustDelete(t, s, k)
	}
	for _, k := range old[len(old)/2:] {
		mustSet(t, s, k, "small")
	}
	if err := s.Flush(); err != nil {
		t.Fatalf("flush after deletes: %v", err)
	}
	if got := s.DiskState(); got != store.DiskLow {
		t.Fatalf("disk state %q after the deletes were flushed, want %q", got, store.DiskLow)
	}
	mustSet(t, s, "after/deletes", string(make([]byte, size)))
	for _, k := range append(stranded, "after/deletes") {
		if r, found := mustGet(t, s, k); !found || len(r.Value) != size {
			t.Fatalf("%s: found %v, %d bytes", k, found, len(r.Value))
		}
	}
	s = reopen(t, s, durable, store.WALSize(smallWAL))
	for _, k := range old[:len(old)/2] {
		if r, _ := mustGet(t, s, k); !r.Deleted {
			t.Fatalf("%s after reopening: %+v", k, r)
		}
	}
}
