package store_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

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

// BenchmarkPeerApply is a peer's share of a replicated write (issue 12):
// an Applier, with a Resolver set as ckd sets one, receiving a writer's
// group commits of 11 records (256-byte values, keys over 1,000, each
// record descending from the one stored) with their hashes, as UPDATEs
// bring them, and committing them. One op is one record. cpu-ns/op is the process's CPU (user and system, every
// thread) per record, which ns/op (wall time) is not on a shared host.
//
//	go test -run '^$' -bench PeerApply -benchmem -cpuprofile /tmp/p.prof ./store/
func BenchmarkPeerApply(b *testing.B) {
	const perBatch, keys = 11, 1000
	s := openTest(b, func(o *store.Options) { o.Resolver = union })
	value := make([]byte, 256)
	// Keys as the other nodes left them: every key written by all three.
	base := store.VV{id(2): 7, id(3): 9}
	lamport := make([]uint64, keys)
	rec := func(i int) store.Record {
		k := i % keys
		lamport[k] += 10
		return write(fmt.Sprintf("bench/%04d", k), string(value), 1, 100+lamport[k], base)
	}
	var left sync.WaitGroup
	a := s.NewApplier(func(ds []store.ApplyDone) {
		for _, d := range ds {
			if d.Err != nil || d.Result.Outcome != store.Applied {
				b.Errorf("%v %v", d.Result.Outcome, d.Err)
			}
		}
		left.Add(-len(ds))
	})
	batches := make([][]store.Record, 0, b.N/perBatch+1)
	hashes := make([][]store.Hash, 0, b.N/perBatch+1)
	for i := 0; i < b.N; i += perBatch {
		n := min(perBatch, b.N-i)
		recs, hs := make([]store.Record, n), make([]store.Hash, n)
		for j := range recs {
			recs[j] = rec(i + j)
			hs[j] = recs[j].Hash()
		}
		batches, hashes = append(batches, recs), append(hashes, hs)
	}
	tags := make([]any, perBatch)
	left.Add(b.N)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := processCPU(b)
	for i, recs := range batches {
		a.ApplyHashed(b.Context(), recs, nil, hashes[i], tags[:len(recs)])
	}
	left.Wait()
	b.StopTimer()
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
}

// processCPU is the CPU time this process used so far (user and system,
// every thread).
func processCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
