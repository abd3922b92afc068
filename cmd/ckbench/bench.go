package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

type config struct {
	socket                  string
	client                  string // raw, loop, rpc, etcd or nats: see newClient
	url                     string // etcd or nats: where the system listens
	wait                    int    // sets wait for this many peer acknowledgements
	jsonValues              bool   // values are JSON documents
	clients, requests, size int
	keys, readPct           int
	prefix                  string
	rate                    float64 // requests per second in all, paced; 0: as fast as the clients go
}

func (c config) validate() error {
	switch {
	case c.clients < 1:
		return errors.New("-c must be at least 1")
	case c.requests < 1:
		return errors.New("-n must be at least 1")
	case c.size < 0:
		return errors.New("-d must not be negative")
	case c.keys < 1:
		return errors.New("-keys must be at least 1")
	case c.rate < 0:
		return errors.New("-rate must not be negative")
	case c.readPct < 0 || c.readPct > 100:
		return errors.New("-read-pct must be between 0 and 100")
	case c.client != "raw" && c.client != "loop" && c.client != "rpc" && c.client != "etcd" && c.client != "nats":
		return errors.New("-client must be raw, loop, rpc, etcd or nats")
	case (c.client == "etcd" || c.client == "nats") && c.url == "":
		return fmt.Errorf("-client %s needs -url", c.client)
	}
	return nil
}

type kind int

const (
	kindSet kind = iota
	kindGet
	kindMixed
	kindFresh // gets with ?fresh: every node of the cluster asked
)

var kinds = map[string]kind{"set": kindSet, "get": kindGet, "mixed": kindMixed, "fresh": kindFresh}

func (k kind) String() string { return [...]string{"set", "get", "mixed", "fresh"}[k] }

// result is one test's figures. Latencies are in microseconds.
type result struct {
	Test      string  `json:"test"`
	Clients   int     `json:"clients"`
	Requests  int     `json:"requests"`
	Size      int     `json:"value_size"`
	Errors    int64   `json:"errors"`
	Seconds   float64 `json:"seconds"`
	OpsPerSec float64 `json:"ops_per_sec"`
	P50us     float64 `json:"p50_us"`
	P99us     float64 `json:"p99_us"`
	P999us    float64 `json:"p999_us"`
	MaxUs     float64 `json:"max_us"`
	Keys      uint64  `json:"keys,omitempty"` // idle: keys the node held
}

func (r result) print(w io.Writer) {
	switch r.Test {
	case "idle":
		fmt.Fprintf(w, "idle  %d datagrams sent in %.0fs (%.2f/s) holding %d keys\n", r.Requests, r.Seconds, r.OpsPerSec, r.Keys)
		return
	case "fill":
		fmt.Fprintf(w, "fill  %d keys, %d-byte values, %d clients: %.2fs, %.0f sets/s\n", r.Requests, r.Size, r.Clients, r.Seconds, r.OpsPerSec)
		return
	case "import":
		fmt.Fprintf(w, "import  %d records, %d-byte values: %.2fs, %.0f records/s\n", r.Requests, r.Size, r.Seconds, r.OpsPerSec)
		return
	case "converge":
		fmt.Fprintf(w, "converge  same digest root and %d keys after %.3fs\n", r.Keys, r.Seconds)
		return
	}
	fmt.Fprintf(w, "%-5s %d clients, %d requests, %d-byte values: %.0f ops/s  p50 %.0fµs  p99 %.0fµs  p99.9 %.0fµs  max %.0fµs  errors %d\n",
		r.Test, r.Clients, r.Requests, r.Size, r.OpsPerSec, r.P50us, r.P99us, r.P999us, r.MaxUs, r.Errors)
}

// runTest runs one workload. For get and mixed the keyspace is filled
// first, so that every get finds its key.
func runTest(ctx context.Context, cfg config, k kind) (result, error) {
	if cfg.client == "loop" && cfg.rate == 0 {
		return runLoop(ctx, cfg, k)
	}
	value := makeValue(cfg.size, cfg.jsonValues)
	if cfg.client == "etcd" || cfg.client == "nats" {
		if k != kindSet {
			return result{}, fmt.Errorf("-client %s runs the set test only", cfg.client)
		}
		if cfg.client == "nats" {
			if err := prepareNATS(ctx, cfg.url, 3); err != nil {
				return result{}, fmt.Errorf("nats bucket: %w", err)
			}
		}
	}
	if k != kindSet {
		if err := fill(ctx, cfg, value); err != nil {
			return result{}, fmt.Errorf("filling the keyspace: %w", err)
		}
	}
	var (
		next  atomic.Int64
		errs  atomic.Int64
		wg    sync.WaitGroup
		lat   = make([][]time.Duration, cfg.clients)
		first error
		errMu sync.Mutex
	)
	start := time.Now()
	for c := 0; c < cfg.clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := newClient(cfg.client, cfg.socket, cfg.url) // a connection per client, as redis-benchmark
			if err != nil {
				errMu.Lock()
				first = cmpErr(first, err)
				errMu.Unlock()
				errs.Add(int64(cfg.requests))
				return
			}
			defer cl.close()
			rng := rand.New(rand.NewPCG(uint64(c), 1))
			mine := make([]time.Duration, 0, cfg.requests/cfg.clients+1)
			for i := next.Add(1); i <= int64(cfg.requests) && ctx.Err() == nil; i = next.Add(1) {
				if cfg.rate > 0 { // request i is due at its place in a steady stream
					time.Sleep(time.Until(start.Add(time.Duration(float64(i-1) / cfg.rate * float64(time.Second)))))
				}
				key := cfg.prefix + strconv.Itoa(rng.IntN(cfg.keys))
				t0 := time.Now()
				err := op(ctx, cl, k, key, value, rng.IntN(100) < cfg.readPct, cfg.wait)
				mine = append(mine, time.Since(t0))
				if err != nil {
					errs.Add(1)
					errMu.Lock()
					if first == nil {
						first = err
					}
					errMu.Unlock()
				}
			}
			lat[c] = mine
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if first != nil && errs.Load() >= int64(cfg.requests) {
		return result{}, first
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	return summarize(k.String(), cfg.clients, cfg.size, errs.Load(), elapsed, all), ctx.Err()
}

// summarize turns sorted latencies into a result.
func summarize(test string, clients, size int, errs int64, elapsed time.Duration, sorted []time.Duration) result {
	us := func(q float64) float64 {
		if len(sorted) == 0 {
			return 0
		}
		return float64(sorted[min(len(sorted)-1, int(q*float64(len(sorted))))].Nanoseconds()) / 1e3
	}
	return result{
		Test: test, Clients: clients, Requests: len(sorted), Size: size, Errors: errs,
		Seconds: elapsed.Seconds(), OpsPerSec: float64(len(sorted)) / elapsed.Seconds(),
		P50us: us(0.50), P99us: us(0.99), P999us: us(0.999), MaxUs: us(1),
	}
}

func op(ctx context.Context, cl benchClient, k kind, key string, value []byte, read bool, wait int) error {
	if k == kindFresh {
		return cl.fresh(ctx, key)
	}
	if k == kindGet || (k == kindMixed && read) {
		return cl.get(ctx, key)
	}
	return cl.set(ctx, key, value, wait)
}

// makeValue is the value every write sends: letters, or with asJSON a JSON
// string of that many bytes (quotes included), for hooks that validate JSON.
func makeValue(size int, asJSON bool) []byte {
	value := make([]byte, size)
	for i := range value {
		value[i] = 'a' + byte(i%26)
	}
	if asJSON && size >= 2 {
		value[0], value[size-1] = '"', '"'
	}
	return value
}

// fillTest writes every key of the keyspace once, with all clients, and
// reports the rate: a bulk load of distinct keys (for the cluster's
// convergence and bootstrap figures).
func fillTest(ctx context.Context, cfg config) (result, error) {
	start := time.Now()
	if err := fill(ctx, cfg, makeValue(cfg.size, cfg.jsonValues)); err != nil {
		return result{}, err
	}
	elapsed := time.Since(start)
	return result{Test: "fill", Clients: cfg.clients, Requests: cfg.keys, Size: cfg.size,
		Seconds: elapsed.Seconds(), OpsPerSec: float64(cfg.keys) / elapsed.Seconds()}, nil
}

// fill writes every key of the keyspace once, with all clients.
func fill(ctx context.Context, cfg config, value []byte) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, cfg.clients)
	for c := 0; c < cfg.clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl, err := newClient(cfg.client, cfg.socket, cfg.url)
			if err != nil {
				errc <- err
				return
			}
			defer cl.close()
			for i := next.Add(1) - 1; i < int64(cfg.keys); i = next.Add(1) - 1 {
				if err := cl.set(ctx, cfg.prefix+strconv.FormatInt(i, 10), value, 0); err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	return <-errc
}

// cmpErr is the first of a and b that is not nil.
func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}
