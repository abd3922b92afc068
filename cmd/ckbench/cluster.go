package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cloudknowledge/ck/rpc"
)

// replTest measures replication latency: the time from a set on this node
// (returning once it is durable here) until the record is durable on the
// peer, as the peer's change log shows it. One write at a time.
func replTest(ctx context.Context, cfg config, peer string, n int) (result, error) {
	if peer == "" {
		return result{}, errors.New("the repl test needs -peer SOCKET (another node of the cluster)")
	}
	a, b := rpc.NewClient(cfg.socket), rpc.NewClient(peer)
	defer a.Close()
	defer b.Close()
	prefix := fmt.Sprintf("%srepl-%d/", cfg.prefix, time.Now().UnixNano())
	seen := make(chan string, 1024)
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.Watch(wctx, prefix, nil, func(e rpc.Event) error {
			seen <- e.Key
			return nil
		})
	}()
	// The watch starts "from now": write a first key until the peer's watch
	// shows one, so that no measured write can precede the watch.
	attached := false
	for try := 0; try < 50 && !attached; try++ {
		key := prefix + "start"
		if _, err := a.Put(ctx, key, nil, rpc.WriteOptions{}); err != nil {
			return result{}, err
		}
		attached = awaitKey(ctx, seen, key, 100*time.Millisecond) == nil
	}
	if !attached {
		return result{}, errors.New("the peer's watch never showed a write: are the nodes in one cluster?")
	}
	value := make([]byte, cfg.size)
	lat := make([]time.Duration, 0, n)
	start := time.Now()
	for i := 0; i < n && ctx.Err() == nil; i++ {
		key := prefix + strconv.Itoa(i)
		t0 := time.Now()
		if _, err := a.Put(ctx, key, value, rpc.WriteOptions{}); err != nil {
			return result{}, err
		}
		if err := awaitKey(ctx, seen, key, 5*time.Second); err != nil {
			return result{}, fmt.Errorf("%s never reached the peer: %w", key, err)
		}
		lat = append(lat, time.Since(t0))
	}
	elapsed := time.Since(start)
	cancel()
	wg.Wait()
	slices.Sort(lat)
	return summarize("repl", 1, cfg.size, 0, elapsed, lat), nil
}

func awaitKey(ctx context.Context, seen <-chan string, key string, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case k := <-seen:
			if k == key {
				return nil
			}
		case <-t.C:
			return context.DeadlineExceeded
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// idleTest counts the datagrams this node sends while nothing is written,
// for d: the idle cost, which must not grow with the number of keys.
func idleTest(ctx context.Context, cfg config, d time.Duration) (result, error) {
	c := rpc.NewClient(cfg.socket)
	defer c.Close()
	before, err := sentDatagrams(ctx, c)
	if err != nil {
		return result{}, err
	}
	st, err := c.Status(ctx)
	if err != nil {
		return result{}, err
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return result{}, ctx.Err()
	}
	after, err := sentDatagrams(ctx, c)
	if err != nil {
		return result{}, err
	}
	sent := after - before
	return result{Test: "idle", Seconds: d.Seconds(), Requests: int(sent), OpsPerSec: float64(sent) / d.Seconds(),
		Keys: st.Keys}, nil
}

// sentDatagrams reads ck_datagrams_total{direction="sent"} from metrics.
func sentDatagrams(ctx context.Context, c *rpc.Client) (uint64, error) {
	text, err := c.Metrics(ctx)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), `ck_datagrams_total{direction="sent"} `); ok {
			f, err := strconv.ParseFloat(v, 64)
			return uint64(f), err
		}
	}
	return 0, errors.New("no ck_datagrams_total in the metrics")
}

// convergeTest measures how long this node takes to hold what peer holds:
// from the start of the test until both report the same digest root and
// key count. It waits for this node's socket to answer first, so a script
// starts it right after starting (or resuming) the node; the time then
// includes the node's start-up. It polls every 5 ms.
func convergeTest(ctx context.Context, cfg config, peer string, timeout time.Duration) (result, error) {
	if peer == "" {
		return result{}, errors.New("the converge test needs -peer SOCKET (the node to catch up with)")
	}
	start := time.Now()
	a, b := rpc.NewClient(cfg.socket), rpc.NewClient(peer)
	defer a.Close()
	defer b.Close()
	deadline := start.Add(timeout)
	for {
		sa, errA := status(ctx, a)
		sb, errB := status(ctx, b)
		if errA == nil && errB == nil && sa.DigestRoot == sb.DigestRoot && sa.Keys == sb.Keys {
			return result{Test: "converge", Seconds: time.Since(start).Seconds(), Keys: sa.Keys}, nil
		}
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("not converged after %s: %d keys against %d (errors: %v, %v)",
				timeout, sa.Keys, sb.Keys, errA, errB)
		}
		select {
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
			return result{}, ctx.Err()
		}
	}
}

func status(ctx context.Context, c *rpc.Client) (rpc.Status, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return c.Status(ctx)
}
