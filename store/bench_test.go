package store_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/cloudknowledge/ck/store"
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

// BenchmarkReceivedApply measures durable applies of received records
// arriving three to a datagram from one receive loop, as a peer takes a
// writer's coalesced UPDATEs: handed to the commit queue by an Applier,
// against the goroutine per record (at most 64 at once) the receive loop
// used before (docs/ARCHITECTURE.md, "Overlapped replication").
func BenchmarkReceivedApply(b *testing.B) {
	const perDatagram = 3
	value := make([]byte, 256)
	rec := func(i int) store.Record {
		return write(fmt.Sprintf("bench/%d", i%10000), string(value), 2, uint64(i+1), nil)
	}
	b.Run("applier", func(b *testing.B) {
		s := openTest(b, durable)
		var left sync.WaitGroup
		left.Add(b.N)
		a := s.NewApplier(func(ds []store.ApplyDone) {
			for _, d := range ds {
				if d.Err != nil {
					b.Error(d.Err)
				}
			}
			left.Add(-len(ds))
		})
		before := s.Stats()
		b.ResetTimer()
		for i := 0; i < b.N; i += perDatagram {
			n := min(perDatagram, b.N-i)
			recs, tags := make([]store.Record, n), make([]any, n)
			for j := range n {
				recs[j] = rec(i + j)
			}
			a.Apply(b.Context(), recs, tags)
		}
		left.Wait()
		b.StopTimer()
		st := s.Stats()
		b.ReportMetric(float64(st.Requests-before.Requests)/float64(st.Commits-before.Commits), "writes/commit")
	})
	b.Run("goroutine-per-record", func(b *testing.B) {
		s := openTest(b, durable)
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64)
		before := s.Stats()
		b.ResetTimer()
		for i := range b.N {
			r := rec(i)
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				if _, err := s.Apply(b.Context(), r); err != nil {
					b.Error(err)
				}
			})
		}
		wg.Wait()
		b.StopTimer()
		st := s.Stats()
		b.ReportMetric(float64(st.Requests-before.Requests)/float64(st.Commits-before.Commits), "writes/commit")
	})
}
