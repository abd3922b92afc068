package store

import (
	"fmt"
	"runtime"
	"testing"
	"time"
)

// BenchmarkTTLMemory measures the memory a record with a TTL costs beyond
// the record itself: its deadline in the map and the expirer's heap, with
// its key (docs/BENCHMARKS.md, "Expiring keys"). The records stay in the
// file, as any record does.
func BenchmarkTTLMemory(b *testing.B) {
	const keys = 100_000
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		l := newLifetimes(time.Now())
		l.mu.Lock()
		for i := range keys {
			key := fmt.Sprintf("hosts/%06d/addr", i)
			l.set(key, hashBytes([]byte(key)), int64(i)*int64(time.Millisecond))
		}
		l.dirty = map[string]bool{} // what the next persist empties
		l.mu.Unlock()
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/keys, "B/ttl-key")
		runtime.KeepAlive(l)
	}
}
