package store_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/cloudknowledge/ck/internal/testseed"
	"github.com/cloudknowledge/ck/store"
)

// BenchmarkRestartCrash times the Open of a store of CK_RESTART_KEYS keys
// of 256 B (skipped without it) after a crash: a copy of its files taken
// while it ran, after a write flushed following a clean restart, so the
// digest snapshot is stale (docs/BENCHMARKS.md, "Keys: 1 M and 10 M").
// Open serves at once and counts in the background; the round also
// reports how long the count took after Open.
// The filled store is kept under CK_RESTART_DIR (default /var/tmp) across
// runs, since filling it takes a minute. Each round reports the Open and
// the first Get, then bbolt's own open of the same copy (which walks
// every page to rebuild its freelist unless the last commit wrote it) and
// a read of every record, to tell the parts apart.
func BenchmarkRestartCrash(b *testing.B) {
	filled, _ := restartStore(b)
	crashed := crashedAfterRestart(b, filled)
	for b.Loop() {
		to := filepath.Join(b.TempDir(), "c.db")
		copyFile(b, crashed, to)
		copyFile(b, store.WALPath(crashed), store.WALPath(to))
		t0 := time.Now()
		s, err := store.Open(to, store.Options{NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		opened := time.Since(t0)
		if _, found, err := s.Get("keys/000000001"); err != nil || !found {
			b.Fatalf("get: %v %v", found, err)
		}
		served := time.Since(t0)
		t1 := time.Now()
		if c, ok := any(s).(interface{ Counting() bool }); ok {
			for c.Counting() {
				time.Sleep(time.Millisecond)
			}
		}
		counted := time.Since(t1)
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		copyFile(b, crashed, to)
		t2 := time.Now()
		db, err := bolt.Open(to, 0o600, &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType, NoSync: true})
		if err != nil {
			b.Fatal(err)
		}
		boltOpen := time.Since(t2)
		t3 := time.Now()
		recs := 0
		err = db.View(func(tx *bolt.Tx) error {
			return tx.Bucket([]byte("kv")).ForEach(func(k, v []byte) error { recs++; return nil })
		})
		walk := time.Since(t3)
		if err := errors.Join(err, db.Close()); err != nil {
			b.Fatal(err)
		}
		b.Logf("open %v, first get %v, then counting %v; bbolt open %v, reading %d records %v",
			opened, served, counted, boltOpen, recs, walk)
	}
}

// fillOnce creates the store at path with n keys unless it exists.
func fillOnce(b *testing.B, path string, n int) {
	if _, err := os.Stat(path); err == nil {
		return
	}
	tmp := path + ".filling"
	os.Remove(tmp)
	os.Remove(store.WALPath(tmp))
	s, err := store.Open(tmp, store.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	value := string(make([]byte, 256))
	const batch = 1000
	t0 := time.Now()
	for i := 0; i < n; i += batch {
		recs := make([]store.Record, 0, batch)
		for j := i; j < min(i+batch, n); j++ {
			recs = append(recs, write(fmt.Sprintf("keys/%09d", j), value, 2, uint64(j+1), nil))
		}
		if _, _, err := s.ApplyBatch(b.Context(), recs); err != nil {
			b.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.Logf("filled %d keys in %v", n, time.Since(t0))
	if err := os.Rename(store.WALPath(tmp), store.WALPath(path)); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
}

// crashedAfterRestart returns a crash copy of the store at filled: opened,
// one write flushed (the snapshot is stale from then on), copied while
// open.
func crashedAfterRestart(b *testing.B, filled string) string {
	s, err := store.Open(filled, store.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Set(b.Context(), "keys/probe", []byte("probe"), nil); err != nil {
		b.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		b.Fatal(err)
	}
	to := filepath.Join(b.TempDir(), "crashed.db")
	copyFile(b, filled, to)
	copyFile(b, store.WALPath(filled), store.WALPath(to))
	return to
}

// BenchmarkFreelistSync measures what writing bbolt's freelist in every
// commit costs a flush of the CK_RESTART_KEYS-key store
// (BenchmarkRestartCrash): rounds of CK_FLUSH_KEYS (default 2,000)
// overwrites of random keys,
// each flushed, bbolt's freelist synced in every other round. It reports
// per mode the flush's wall time and the bytes it wrote
// (/proc/self/io).
func BenchmarkFreelistSync(b *testing.B) {
	filled, n := restartStore(b)
	to := filepath.Join(b.TempDir(), "c.db")
	copyFile(b, filled, to)
	copyFile(b, store.WALPath(filled), store.WALPath(to))
	s, err := store.Open(to, store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	rng := testseed.Rand(b)
	value := make([]byte, 256)
	per, _ := strconv.Atoi(os.Getenv("CK_FLUSH_KEYS"))
	if per <= 0 {
		per = 2000
	}
	if _, err := s.Set(b.Context(), "keys/probe", value, nil); err != nil {
		b.Fatal(err)
	}
	if err := s.Flush(); err != nil { // the copy's pages are written back here
		b.Fatal(err)
	}
	var took, cpu [2]time.Duration
	var wrote, writes [2]int64
	var rounds [2]int
	for i := 0; b.Loop(); i++ {
		mode := i % 2
		s.SetFreelistSync(mode == 1)
		for range per {
			if _, err := s.Set(b.Context(), fmt.Sprintf("keys/%09d", rng.IntN(n)), value, nil); err != nil {
				b.Fatal(err)
			}
		}
		w0, c0, p0 := ioWritten(b), restartCPU(b), s.PageWrites()
		t0 := time.Now()
		if err := s.Flush(); err != nil {
			b.Fatal(err)
		}
		took[mode] += time.Since(t0)
		cpu[mode] += restartCPU(b) - c0
		wrote[mode] += ioWritten(b) - w0
		writes[mode] += s.PageWrites() - p0
		rounds[mode]++
	}
	for mode, name := range []string{"NoFreelistSync", "freelist synced"} {
		if rounds[mode] > 0 {
			r := int64(rounds[mode])
			b.Logf("%s: %d flushes; a flush %v, CPU %v, %d KiB written, %d bbolt writes; %d free pages",
				name, r, took[mode]/time.Duration(r), cpu[mode]/time.Duration(r), wrote[mode]/r>>10, writes[mode]/r, s.FreePages())
		}
	}
}

// restartCPU is the CPU time (user and system) this process used so far.
func restartCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// ioWritten is the bytes this process has caused to be written to
// storage so far.
func ioWritten(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		b.Fatal(err)
	}
	var v int64
	for _, line := range strings.Split(string(data), "\n") {
		if rest, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			v, _ = strconv.ParseInt(rest, 10, 64)
		}
	}
	return v
}

// restartStore is the store of CK_RESTART_KEYS records the restart
// benchmarks share, under CK_RESTART_DIR (default /var/tmp), filled on
// first use, and its number of records; it skips b when CK_RESTART_KEYS
// is not set.
func restartStore(b *testing.B) (path string, records int) {
	n, _ := strconv.Atoi(os.Getenv("CK_RESTART_KEYS"))
	if n <= 0 {
		b.Skip("CK_RESTART_KEYS not set")
	}
	dir := os.Getenv("CK_RESTART_DIR")
	if dir == "" {
		dir = "/var/tmp"
	}
	filled := filepath.Join(dir, fmt.Sprintf("ck-restart-%d", n), "store.db")
	fillOnce(b, filled, n)
	return filled, n
}
