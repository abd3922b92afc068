package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// fsyncTest measures the latency of a 4 KiB write plus fdatasync in dir:
// the floor under a durable write on that file system, reported beside
// the set figures so ratios hold on a noisy machine.
func fsyncTest(dir string, n int) (result, error) {
	f, err := os.CreateTemp(dir, "ckbench-fsync-")
	if err != nil {
		return result{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	lat := make([]time.Duration, 0, n)
	start := time.Now()
	for i := 0; i < n; i++ {
		t0 := time.Now()
		if _, err := f.WriteAt(buf, int64(i%256)*4096); err != nil {
			return result{}, err
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			return result{}, fmt.Errorf("fdatasync: %w", err)
		}
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	slices.Sort(lat)
	return summarize("fsync", 1, 0, 0, elapsed, lat), nil
}

// defaultFsyncDir is where the fsync test writes when -dir is not given.
func defaultFsyncDir() string { return filepath.Clean(os.TempDir()) }
