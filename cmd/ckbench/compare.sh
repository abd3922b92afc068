#!/usr/bin/env bash
# Single-node figures side by side, in one run (ratios hold on a noisy
# machine where absolute times do not): ckbench against ckd, and
# redis-benchmark against Redis with appendfsync always on its Unix socket,
# both with their data on the same file system; the fdatasync latency there;
# and `ckctl get` as a whole process against a Go hello-world (hyperfine).
#
#   cmd/ckbench/compare.sh [REQUESTS]      (needs redis-server, hyperfine)
set -euo pipefail
n=${1:-100000}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /var/tmp/ck-compare-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 2; }
command -v hyperfine >/dev/null || { echo "needs hyperfine (apt-get install hyperfine)" >&2; exit 2; }
(cd "$root" && go build -o "$work/bin/" ./cmd/ckd ./cmd/ckctl ./cmd/ckbench)
mkdir -p "$work/hello" && cat > "$work/hello/main.go" <<'GO'
package main

import "fmt"

func main() { fmt.Println("hello") }
GO
(cd "$work/hello" && GO111MODULE=off go build -o "$work/bin/hello" main.go)

echo "== Redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p'), appendfsync always, Unix socket"
mkdir -p "$work/redis"
redis-server --port 0 --unixsocket "$work/redis.sock" --dir "$work/redis" \
  --appendonly yes --appendfsync always --save '' --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$work/redis.sock" ] && break; sleep 0.05; done
redis-benchmark -s "$work/redis.sock" -c 16 -n "$n" -d 256 -t set,get -r 10000 -q
redis-benchmark -s "$work/redis.sock" -c 1 -n 2000 -d 256 -t set -r 10000 --precision 3 | grep -E 'throughput|^ +[0-9.]+ +[0-9.]+' | head -4 || true

echo "== ckd"
"$work/bin/ckd" -data-dir "$work/ckd" -socket "$work/ckd.sock" -node-name bench >"$work/ckd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do [ -S "$work/ckd.sock" ] && break; sleep 0.05; done
export CK_SOCKET="$work/ckd.sock"
"$work/bin/ckbench" -c 16 -n "$n" -d 256 -t set,get
"$work/bin/ckbench" -c 1 -n 2000 -d 256 -t set
"$work/bin/ckbench" -t fsync -dir "$work"

echo "== ckctl get as a whole process"
"$work/bin/ckctl" set bla blub
hyperfine -N --warmup 20 --runs 300 "$work/bin/ckctl get bla" "$work/bin/hello" 2>&1 | grep -E 'Time|±|faster|Benchmark'
