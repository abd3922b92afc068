package natsbridge_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/cloudknowledge/ck/daemon/natsbridge"
)

// The benchmarks run an embedded nats-server and a store without fsync, so
// they measure the bridge, not the disk. Run them with
//
//	go test -run XXX -bench . -benchtime 2000x ./daemon/natsbridge/

// reportLatency reports the p50 and p99 of fromReturn (from the write
// returning) and fromCall (from the write being called), in microseconds.
// A subscriber can see a change before the write returns: fromReturn is
// then 0.
func reportLatency(b *testing.B, fromReturn, fromCall []time.Duration) {
	p := func(ds []time.Duration, q float64) float64 {
		slices.Sort(ds)
		return float64(ds[int(q*float64(len(ds)-1))]) / float64(time.Microsecond)
	}
	b.ReportMetric(p(fromReturn, 0.50), "p50-µs")
	b.ReportMetric(p(fromReturn, 0.99), "p99-µs")
	b.ReportMetric(p(fromCall, 0.50), "call-p50-µs")
	b.ReportMetric(p(fromCall, 0.99), "call-p99-µs")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkChangeLatency: from store.Set returning to a subscriber of
// <prefix>.kv.> receiving the change; beside it, as a reference measured in
// the same run, from a NATS KV Put returning to a KV watcher seeing it.
func BenchmarkChangeLatency(b *testing.B) {
	srv := startServer(b)
	value := make([]byte, 100)
	b.Run("bridge", func(b *testing.B) {
		st := openStore(b)
		recv := make(chan time.Time, 1)
		nc := connect(b, srv.ClientURL())
		if _, err := nc.Subscribe("ck.kv.>", func(*nats.Msg) { recv <- time.Now() }); err != nil {
			b.Fatal(err)
		}
		nc.Flush()
		br, _ := startBridge(b, natsbridge.Config{URLs: []string{srv.ClientURL()}}, st, nil)
		waitState(b, br, "connected")
		ret, call := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := range b.N {
			tc := time.Now()
			if _, err := st.Set(context.Background(), key(i), value, nil); err != nil {
				b.Fatal(err)
			}
			tr := time.Now()
			at := <-recv
			ret, call = append(ret, max(0, at.Sub(tr))), append(call, at.Sub(tc))
		}
		b.StopTimer()
		reportLatency(b, ret, call)
	})
	b.Run("natskv", func(b *testing.B) {
		nc := connect(b, srv.ClientURL())
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: "bench", Storage: jetstream.MemoryStorage})
		if err != nil {
			b.Fatal(err)
		}
		defer js.DeleteKeyValue(ctx, "bench")
		w, err := kv.WatchAll(ctx, jetstream.UpdatesOnly())
		if err != nil {
			b.Fatal(err)
		}
		defer w.Stop()
		recv := make(chan time.Time, 1)
		go func() {
			for e := range w.Updates() {
				if e != nil {
					recv <- time.Now()
				}
			}
		}()
		ret, call := make([]time.Duration, 0, b.N), make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for i := range b.N {
			tc := time.Now()
			if _, err := kv.Put(ctx, fmt.Sprintf("k.%d", i), value); err != nil {
				b.Fatal(err)
			}
			tr := time.Now()
			at := <-recv
			ret, call = append(ret, max(0, at.Sub(tr))), append(call, at.Sub(tc))
		}
		b.StopTimer()
		reportLatency(b, ret, call)
	})
}

// BenchmarkThroughput: 16 writers; the time until a subscriber has every
// change.
func BenchmarkThroughput(b *testing.B) {
	srv := startServer(b)
	st := openStore(b)
	nc := connect(b, srv.ClientURL())
	var mu sync.Mutex
	got, want := 0, 0
	all := make(chan struct{})
	sub, err := nc.Subscribe("ck.kv.>", func(*nats.Msg) {
		mu.Lock()
		got++
		if got == want {
			close(all)
		}
		mu.Unlock()
	})
	if err != nil {
		b.Fatal(err)
	}
	sub.SetPendingLimits(-1, -1)
	nc.Flush()
	br, _ := startBridge(b, natsbridge.Config{URLs: []string{srv.ClientURL()}}, st, nil)
	waitState(b, br, "connected")
	mu.Lock()
	want = b.N
	mu.Unlock()
	value := make([]byte, 100)
	const writers = 16
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < b.N; i += writers {
				if _, err := st.Set(context.Background(), key(i), value, nil); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	writes := time.Since(start)
	select {
	case <-all:
	case <-time.After(time.Minute):
		b.Fatalf("subscriber has %d of %d changes", got, b.N)
	}
	total := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/total.Seconds(), "changes/s")
	b.ReportMetric(float64(b.N)/writes.Seconds(), "writes/s")
}

// BenchmarkBacklog: the bridge's own pace — changes committed before Run
// starts, published as fast as the bridge can read, send and confirm them.
func BenchmarkBacklog(b *testing.B) {
	srv := startServer(b)
	st := openStore(b)
	nc := connect(b, srv.ClientURL())
	var mu sync.Mutex
	got := 0
	all := make(chan struct{})
	sub, err := nc.Subscribe("ck.kv.>", func(*nats.Msg) {
		mu.Lock()
		if got++; got == b.N {
			close(all)
		}
		mu.Unlock()
	})
	if err != nil {
		b.Fatal(err)
	}
	sub.SetPendingLimits(-1, -1)
	nc.Flush()
	br, err := natsbridge.New(natsbridge.Config{URLs: []string{srv.ClientURL()}, NodeName: "bench"}, st, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 100)
	for i := range b.N {
		if _, err := st.Set(context.Background(), key(i), value, nil); err != nil {
			b.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	b.ResetTimer()
	start := time.Now()
	go func() { done <- br.Run(ctx) }()
	select {
	case <-all:
	case <-time.After(time.Minute):
		b.Fatalf("subscriber has %d of %d changes", got, b.N)
	}
	elapsed := time.Since(start)
	b.StopTimer()
	cancel()
	<-done
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "changes/s")
}
