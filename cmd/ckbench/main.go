// Command ckbench is a load generator for a running ckd, in the manner of
// redis-benchmark: it runs set, get or mixed workloads from -c concurrent
// clients over the local API and reports throughput and latency
// percentiles, as text or -json.
//
//	ckbench -socket /run/ckd/ckd.sock -c 16 -n 100000 -d 256 -t set,get
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/cloudknowledge/ck/rpc"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ckbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	socket := fs.String("socket", "", "ckd's API socket (default: $CK_SOCKET, then ckd's default)")
	var cfg config
	fs.IntVar(&cfg.clients, "c", 16, "concurrent clients")
	fs.IntVar(&cfg.requests, "n", 100000, "requests per test")
	fs.IntVar(&cfg.size, "d", 256, "value size in bytes")
	fs.IntVar(&cfg.keys, "keys", 10000, "distinct keys (the keyspace)")
	fs.StringVar(&cfg.prefix, "prefix", "bench/", "key prefix")
	fs.IntVar(&cfg.readPct, "read-pct", 80, "percentage of gets in the mixed test")
	fs.StringVar(&cfg.client, "client", "raw", "raw: a lean HTTP/1.1 connection per client, like redis-benchmark's; loop: the same requests, all clients driven from one thread with epoll as redis-benchmark drives its own (Linux; paced runs use raw); rpc: the Go client (rpc.Client), which costs as much CPU as the daemon; etcd: puts to etcd's HTTP gateway at -url; nats: puts to a JetStream KV bucket (R3) at -url")
	fs.StringVar(&cfg.url, "url", "", "etcd: an endpoint (http://127.0.0.1:2379); nats: a server URL (nats://127.0.0.1:4222)")
	fs.BoolVar(&cfg.jsonValues, "json-values", false, "send values that are JSON documents (a quoted string)")
	fs.Float64Var(&cfg.rate, "rate", 0, "pace the requests to this many per second in all (0: as fast as the clients go)")
	fs.IntVar(&cfg.wait, "wait", 0, "sets wait for this many peers to acknowledge (replication throughput)")
	peer := fs.String("peer", "", "socket of another node, for the repl and converge tests")
	idleFor := fs.Duration("idle", 10*time.Second, "how long the idle test watches")
	tests := fs.String("t", "set,get,mixed", "tests to run: set, get, mixed, fresh, fill, fsync, repl, idle, converge, import (comma-separated)")
	convergeFor := fs.Duration("timeout", 5*time.Minute, "how long the converge test waits")
	dir := fs.String("dir", defaultFsyncDir(), "directory for the fsync test: use the file system of ckd's data dir")
	asJSON := fs.Bool("json", false, "print results as JSON lines")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := cfg.validate(); err != nil {
		fmt.Fprintf(stderr, "ckbench: %v\n", err)
		return 2
	}
	sock := *socket
	if sock == "" {
		sock = os.Getenv("CK_SOCKET")
	}
	if sock == "" {
		sock = rpc.DefaultSocket(rpc.DefaultDataDir())
	}
	cfg.socket = sock
	for _, name := range strings.Split(*tests, ",") {
		name = strings.TrimSpace(name)
		var res result
		var err error
		switch kind, ok := kinds[name]; {
		case ok:
			res, err = runTest(ctx, cfg, kind)
		case name == "fsync":
			res, err = fsyncTest(*dir, min(cfg.requests, 2000))
		case name == "repl":
			res, err = replTest(ctx, cfg, *peer, min(cfg.requests, 2000))
		case name == "idle":
			res, err = idleTest(ctx, cfg, *idleFor)
		case name == "fill":
			res, err = fillTest(ctx, cfg)
		case name == "import":
			res, err = importTest(ctx, cfg)
		case name == "converge":
			res, err = convergeTest(ctx, cfg, *peer, *convergeFor)
		default:
			fmt.Fprintf(stderr, "ckbench: unknown test %q (want set, get, mixed, fresh, fill, fsync, repl, idle, converge or import)\n", name)
			return 2
		}
		if err != nil {
			fmt.Fprintf(stderr, "ckbench: %s: %v\n", name, err)
			return 1
		}
		if *asJSON {
			b, _ := json.Marshal(res)
			fmt.Fprintln(stdout, string(b))
		} else {
			res.print(stdout)
		}
	}
	return 0
}
