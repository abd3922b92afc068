package store_test

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/cloudknowledge/ck/store"
)

// bootstrapRecords returns records from..to-1 of a stream of 256-byte
// values in key order, with keys shaped like ckbench's import keys, as a
// bootstrap's sender streams them (store.PeekAll). Made a frame at a
// time, so that the receiver's memory is what a benchmark's heap holds.
func bootstrapRecords(from, to int) []store.Record {
	value := make([]byte, 256)
	recs := make([]store.Record, to-from)
	for j := range recs {
		i := from + j
		l := uint64(i + 1)
		recs[j] = store.Record{
			Key: fmt.Sprintf("bench/import-1765100000000000000/%09d", i), Value: value,
			VV: store.VV{id(9): l}, Lamport: l, Origin: id(9), LWW: store.Stamp{Lamport: l, Origin: id(9)}, At: 1765100000000,
		}
	}
	return recs
}

// benchKeys is the number of records a bootstrap benchmark copies
// ($CK_BENCH_KEYS, default 100,000).
func benchKeys(b *testing.B) int {
	if v := os.Getenv("CK_BENCH_KEYS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	return 100000
}

// frameRecords is how many records of 256 B a sync session's frame
// carries (its 256 KiB).
const frameRecords = 800

// BenchmarkBootstrap copies CK_BENCH_KEYS records in key order into an
// empty durable store, a frame at a time, as a bootstrap's receiver
// does: through ApplyBatch (the log and the pending set) and through a
// Loader (sorted bbolt transactions of its own). ns/op is per record.
func BenchmarkBootstrap(b *testing.B) {
	n := benchKeys(b)
	frames := func(fn func([]store.Record)) {
		for i := 0; i < n; i += frameRecords {
			fn(bootstrapRecords(i, min(i+frameRecords, n)))
		}
	}
	b.Run("applybatch", func(b *testing.B) {
		benchCopy(b, n, func(s *store.Store) {
			frames(func(recs []store.Record) {
				if _, _, err := s.ApplyBatch(b.Context(), recs); err != nil {
					b.Fatal(err)
				}
			})
		})
	})
	b.Run("loader", func(b *testing.B) {
		benchCopy(b, n, func(s *store.Store) {
			l := s.NewLoader()
			defer l.Close()
			frames(func(recs []store.Record) {
				if _, err := l.Load(b.Context(), recs); err != nil {
					b.Fatal(err)
				}
			})
			if _, err := l.Finish(b.Context()); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("peekall", func(b *testing.B) {
		// The sender's side: every record read in key order.
		s := openTest(b, durable)
		l := s.NewLoader()
		defer l.Close()
		frames(func(recs []store.Record) {
			if _, err := l.Load(b.Context(), recs); err != nil {
				b.Fatal(err)
			}
		})
		if _, err := l.Finish(b.Context()); err != nil {
			b.Fatal(err)
		}
		c0 := cpuTime(b)
		b.ResetTimer()
		for range b.N {
			got := 0
			if err := s.PeekAll(func(store.Record) error { got++; return nil }); err != nil || got != n {
				b.Fatal(got, err)
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
		b.ReportMetric(float64((cpuTime(b)-c0).Nanoseconds())/float64(b.N*n), "cpu-ns/record")
	})
}

// benchCopy runs copy into a fresh durable store b.N times and reports
// the wall-clock and the process's CPU time (user + system) per record.
func benchCopy(b *testing.B, n int, copy func(*store.Store)) {
	var cpu time.Duration
	for range b.N {
		b.StopTimer()
		s := openTest(b, durable)
		c0 := cpuTime(b)
		b.StartTimer()
		copy(s)
		b.StopTimer()
		cpu += cpuTime(b) - c0
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N*n), "cpu-ns/record")
}

func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
