package store_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
)

// BenchmarkSetParallel measures durable (fsynced) writes of 256-byte values
// from 16 goroutines: what group commit is for. Compare ns/op with
// BenchmarkFdatasync on the same file system.
func BenchmarkSetParallel(b *testing.B) {
	s := openTest(b, durable)
	value := make([]byte, 256)
	before := s.Stats()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	for range 16 {
		wg.Go(func() {
			for i := next.Add(1); i <= int64(b.N); i = next.Add(1) {
				if _, err := s.Set(b.Context(), fmt.Sprintf("bench/%d", i%10000), value, nil); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	st := s.Stats()
	b.ReportMetric(float64(st.Requests-before.Requests)/float64(st.Commits-before.Commits), "writes/commit")
}

func BenchmarkGet(b *testing.B) {
	s := openTest(b)
	value := make([]byte, 256)
	for i := range 1000 {
		if _, err := s.Set(b.Context(), fmt.Sprintf("bench/%d", i), value, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		if _, found, err := s.Get(fmt.Sprintf("bench/%d", i%1000)); err != nil || !found {
			b.Fatal(found, err)
		}
	}
}

// BenchmarkFdatasync is the floor for one durable commit: a small write and
// an fdatasync on the file system the store tests use.
func BenchmarkFdatasync(b *testing.B) {
	f, err := os.Create(filepath.Join(b.TempDir(), "sync"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 256)
	b.ResetTimer()
	for range b.N {
		if _, err := f.WriteAt(buf, 0); err != nil {
			b.Fatal(err)
		}
		if err := syscall.Fdatasync(int(f.Fd())); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSetSerial measures one durable writer: the latency of a commit
// of one record. Compare with BenchmarkFdatasync.
func BenchmarkSetSerial(b *testing.B) {
	s := openTest(b, durable)
	value := make([]byte, 256)
	for i := range 10000 { // a store of realistic depth
		if _, err := s.Set(b.Context(), fmt.Sprintf("bench/%d", i), value, nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := range b.N {
		if _, err := s.Set(b.Context(), fmt.Sprintf("bench/%d", (i*7919)%10000), value, nil); err != nil {
			b.Fatal(err)
		}
	}
}
