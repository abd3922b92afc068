package scripting

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waiting polls until n calls are queued for a state.
func waiting(t *testing.T, e *Engine, n int) {
	t.Helper()
	checkFor(t, 10*time.Second, time.Millisecond, func() error {
		e.pool.mu.Lock()
		got := e.pool.waiters.Len()
		e.pool.mu.Unlock()
		if got != n {
			return fmt.Errorf("%d calls waiting; want %d", got, n)
		}
		return nil
	})
}

// The pool serves waiters in the order they came: with one state held by
// a call blocked in ck.get, calls queued one after the other run in that
// order once it is released.
func TestPoolIsFirstComeFirstServed(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	var order []string
	e := engine(t, `function on_set(k, v) ck.get(k) return v end`, func(c *Config) {
		c.PoolSize = 1
		c.Get = func(key string) ([]byte, bool, error) {
			if key == "hold" {
				<-release
			}
			mu.Lock()
			order = append(order, key)
			mu.Unlock()
			return nil, false, nil
		}
	})
	done := make(chan error, 6)
	call := func(key string) {
		_, err := e.OnSet(bg, key, []byte("v"), Meta{Op: "set"})
		done <- err
	}
	go call("hold")
	checkFor(t, 10*time.Second, time.Millisecond, func() error {
		if st := e.Stats(); st.PoolBusy != 1 {
			return fmt.Errorf("pool busy = %d; want 1", st.PoolBusy)
		}
		return nil
	})
	want := []string{"hold", "w1", "w2", "w3", "w4", "w5"}
	for i, key := range want[1:] {
		go call(key)
		waiting(t, e, i+1) // queued before the next one comes
	}
	close(release)
	for range want {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if got := strings.Join(order, " "); got != strings.Join(want, " ") {
		t.Errorf("calls ran in the order %q; want %q", got, strings.Join(want, " "))
	}
}

// fastHookTimeout is the hook timeout of the load test. Generous, as
// testTimeout is: on a shared machine under the race detector the whole
// process can stall for tens of milliseconds, which fails a call with the
// default 50 ms timeout whatever the pool does. The pool that woke every
// waiter at once gave up after 100 ms whatever the hook's timeout, and
// refused hundreds of these calls.
const fastHookTimeout = 5 * time.Second

// A load of fast hooks never refuses a call: 64 clients on the default
// pool of a 2-CPU machine (4 states), 100,000 calls, not one hook error.
func TestPoolManyClientsFastHook(t *testing.T) {
	if testing.Short() {
		t.Skip("100,000 calls")
	}
	e := engine(t, `function on_set(k, v) return v .. "!" end`, timeout(fastHookTimeout),
		func(c *Config) { c.PoolSize = 4 })
	const clients, total = 64, 100_000
	var next atomic.Int64
	var failed atomic.Int64
	var first atomic.Value
	var slowest atomic.Int64 // ns
	var wg sync.WaitGroup
	start := time.Now()
	for range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= total {
				t0 := time.Now()
				if _, err := e.OnSet(bg, "config/k", []byte("v"), Meta{Op: "set"}); err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err)
				}
				took := int64(time.Since(t0))
				for cur := slowest.Load(); took > cur && !slowest.CompareAndSwap(cur, took); cur = slowest.Load() {
				}
			}
		}()
	}
	wg.Wait()
	st := e.Stats()
	t.Logf("%d calls from %d clients in %v, slowest %v: %d failed; stats %+v",
		total, clients, time.Since(start), time.Duration(slowest.Load()), failed.Load(), st)
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d calls failed under ordinary contention; first: %v", n, total, first.Load())
	}
	if st.Errors != 0 || st.PoolExhausted != 0 || st.PoolLive > 4 {
		t.Errorf("stats = %+v", st)
	}
}

// Runaway scripts holding every state make the calls behind them fail
// after their own hook's timeout — not at once, and not forever — and a
// waiter whose timeout outlasts the runaway calls gets the place of the
// first abandoned state.
func TestPoolRunawayFailsWaitersAfterTheirTimeout(t *testing.T) {
	dir := t.TempDir()
	const spin, short = 1500 * time.Millisecond, 200 * time.Millisecond
	e, err := New(Config{
		Hooks: []HookSpec{
			{Pattern: "spin/*", Script: script(t, dir, "spin.lua", `function on_set() while true do end end`), Timeout: spin},
			{Pattern: "short/*", Script: script(t, dir, "short.lua", `function on_set(k, v) return v end`), Timeout: short},
			{Pattern: "*", Script: script(t, dir, "patient.lua", `function on_set(k, v) return v end`), Timeout: testTimeout},
		},
		PoolSize: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	spun := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := e.OnSet(bg, "spin/x", []byte("v"), Meta{Op: "set"})
			spun <- err
		}()
	}
	checkFor(t, 10*time.Second, time.Millisecond, func() error {
		if st := e.Stats(); st.PoolBusy != 2 {
			return fmt.Errorf("pool busy = %d; want 2", st.PoolBusy)
		}
		return nil
	})
	patient := make(chan error, 1)
	patientStart := time.Now()
	go func() {
		_, err := e.OnSet(bg, "patient", []byte("v"), Meta{Op: "set"})
		patient <- err
	}()
	waiting(t, e, 1)

	start := time.Now()
	_, err = e.OnSet(bg, "short/x", []byte("v"), Meta{Op: "set"})
	took := time.Since(start)
	if !errors.Is(err, ErrPoolExhausted) || !errors.Is(err, ErrHook) || !strings.Contains(err.Error(), "hook pool exhausted") {
		t.Fatalf("short call: %v; want hook pool exhausted", err)
	}
	if took < short || took > spin {
		t.Errorf("short call failed after %v; want its own timeout (%v), before the runaway calls' (%v)", took, short, spin)
	}
	for range 2 {
		if err := <-spun; !errors.Is(err, ErrTimeout) {
			t.Errorf("spinning call: %v; want a timeout", err)
		}
	}
	select {
	case err := <-patient:
		if err != nil {
			t.Fatalf("patient call: %v; want it served once a runaway call was abandoned", err)
		}
		t.Logf("patient call served after %v", time.Since(patientStart))
	case <-time.After(30 * time.Second):
		t.Fatal("patient call still waiting long after the runaway calls were abandoned")
	}
	settle(t, e)
	if out, err := e.OnSet(bg, "short/x", []byte("v"), Meta{Op: "set"}); err != nil || string(out) != "v" {
		t.Fatalf("after the runaway calls: %q, %v", out, err)
	}
	if st := e.Stats(); st.PoolExhausted != 1 || st.Timeouts != 2 || st.PoolLive > 2 {
		t.Errorf("stats = %+v", st)
	}
}

// A waiter whose caller gives up leaves the queue, and the pool serves
// the next one; closing the engine fails the calls still waiting.
func TestPoolWaiterLeavesAndClose(t *testing.T) {
	release := make(chan struct{})
	e := engine(t, `function on_set(k, v) ck.get(k) return v end`, func(c *Config) {
		c.PoolSize = 1
		c.Get = func(key string) ([]byte, bool, error) {
			if key == "hold" {
				<-release
			}
			return nil, false, nil
		}
	})
	held := make(chan error, 1)
	go func() {
		_, err := e.OnSet(bg, "hold", []byte("v"), Meta{Op: "set"})
		held <- err
	}()
	checkFor(t, 10*time.Second, time.Millisecond, func() error {
		if st := e.Stats(); st.PoolBusy != 1 {
			return fmt.Errorf("pool busy = %d; want 1", st.PoolBusy)
		}
		return nil
	})
	ctx, cancel := contextWithTimeout(50 * time.Millisecond)
	defer cancel()
	if _, err := e.OnSet(ctx, "gives-up", []byte("v"), Meta{Op: "set"}); !errors.Is(err, ErrPoolExhausted) {
		t.Fatalf("cancelled waiter: %v; want hook pool exhausted", err)
	}
	waiting(t, e, 0)
	queued := make(chan error, 1)
	go func() {
		_, err := e.OnSet(bg, "closed", []byte("v"), Meta{Op: "set"})
		queued <- err
	}()
	waiting(t, e, 1)
	e.Close()
	if err := <-queued; !errors.Is(err, ErrClosed) {
		t.Errorf("waiter at close: %v; want %v", err, ErrClosed)
	}
	close(release)
	if err := <-held; err != nil {
		t.Errorf("the running call: %v", err)
	}
}
