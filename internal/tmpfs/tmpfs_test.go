//go:build linux

package tmpfs_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/cloudknowledge/ck/internal/tmpfs"
)

// A mounted tmpfs is full after Fill: a byte more does not fit.
func TestMountFill(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fs")
	tmpfs.Mount(t, dir, "1m")
	tmpfs.Fill(t, filepath.Join(dir, "filler"))
	err := os.WriteFile(filepath.Join(dir, "more"), []byte("x"), 0o600)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("a byte more: %v, want ENOSPC", err)
	}
}
