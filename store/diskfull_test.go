//go:build linux

package store_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cloudknowledge/ck/store"
)

// mountTmpfs mounts a tmpfs of size bytes on a temporary directory, or
// skips the test when this process may not mount (not root, no
// CAP_SYS_ADMIN, a restricted container).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("disk-full test needs to mount a tmpfs (root or CAP_SYS_ADMIN): %v", err)
	}
	// Registered before the store is opened, so it runs after the store's
	// check-and-close cleanup.
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
			_ = syscall.Unmount(dir, syscall.MNT_DETACH)
		}
	})
	return dir
}

// fill writes a file until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 4096)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling: %v", err)
			}
			return
		}
	}
}

func TestDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "1m")
	s := openAt(t, filepath.Join(dir, "store.db"), durable)
	mustSet(t, s, "before", "kept")
	filler := filepath.Join(dir, "filler")
	fill(t, filler)

	keys, last, root, l := s.Keys(), s.LastIndex(), s.Root(), s.Lamport()
	value := make([]byte, 64<<10)
	var err error
	for i := 0; i < 20 && err == nil; i++ {
		_, err = s.Set(t.Context(), fmt.Sprintf("big/%d", i), value, nil)
		if err == nil {
			keys, last, root, l = s.Keys(), s.LastIndex(), s.Root(), s.Lamport()
		}
	}
	t.Logf("full: %v", err)
	if !errors.Is(err, store.ErrDiskFull) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("write on a full disk: %v, want ErrDiskFull", err)
	}
	if s.Keys() != keys || s.LastIndex() != last || s.Root() != root || s.Lamport() != l {
		t.Fatal("a failed commit changed the in-memory state")
	}
	if rec, found := mustGet(t, s, "before"); !found || string(rec.Value) != "kept" {
		t.Fatalf("read on a full disk: %+v, %v", rec, found)
	}
	if err := s.Check(); err != nil {
		t.Fatalf("check on a full disk: %v", err)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	rec, err := s.Set(t.Context(), "after", value, nil)
	if err != nil {
		t.Fatalf("write after freeing space: %v", err)
	}
	if got, found := mustGet(t, s, "after"); !found || got.Hash() != rec.Hash() {
		t.Fatalf("read back: %v", found)
	}
}
