//go:build linux

// Package tmpfs gives tests a real, small file system they can fill to the
// last byte: a tmpfs mounted on a directory for the test's lifetime. Used
// by the full-disk tests of the store and of the real daemon.
package tmpfs

import (
	"errors"
	"os"
	"syscall"
	"testing"
	"time"
)

// Mount mounts a tmpfs of size ("4m", "160m") on dir, creating dir, and
// unmounts it when the test ends; it skips the test, saying why, when this
// process may not mount (not root, no CAP_SYS_ADMIN, a restricted
// container). Call it before anything opens files there: cleanups run in
// reverse, so the unmount then follows theirs. A file still open when the
// test ends (a killed daemon still exiting) is waited for, up to 10 s, and
// then the mount is detached.
func Mount(t testing.TB, dir, size string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Skipf("needs to mount a tmpfs (root or CAP_SYS_ADMIN): %v", err)
	}
	t.Cleanup(func() {
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := syscall.Unmount(dir, 0)
			if err == nil {
				return
			}
			if !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline) {
				t.Errorf("unmount %s: %v", dir, err)
				_ = syscall.Unmount(dir, syscall.MNT_DETACH)
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// Fill writes a file at path until its file system has not a byte left
// for it, and checks that none is.
func Fill(t testing.TB, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, n := range []int{1 << 20, 4096, 1} {
		buf := make([]byte, n)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filling %s: %v", path, err)
				}
				break
			}
		}
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil || st.Bavail != 0 {
		t.Fatalf("filled %s, yet %d blocks free (%v)", path, st.Bavail, err)
	}
}
