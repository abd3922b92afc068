#!/usr/bin/env bash
# Cluster figures in one run, on this host (three ckd on lo multicast):
# replication latency A -> durable on B beside the fdatasync p50;
# replication throughput (16 writers on A, --wait 2) beside a lone node's
# durable set rate; idle datagrams per node with few and with many keys.
#
#   cmd/ckbench/cluster.sh [REQUESTS]
set -euo pipefail
n=${1:-20000}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /var/tmp/ck-cluster-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
(cd "$root" && go build -o "$work/bin/" ./cmd/ckd ./cmd/ckbench)

start() { # NAME CLUSTER PORT [KEY]
  local enc=""; [ -n "${4:-}" ] && enc="  encrypt = \"$4\""
  printf 'cluster {\n  name = "%s"\n  port = %s\n%s\n}\n' "$2" "$3" "$enc" >"$work/$1.hcl"
  "$work/bin/ckd" -config "$work/$1.hcl" -data-dir "$work/$1" -socket "$work/$1.sock" -node-name "$1" >"$work/$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do [ -S "$work/$1.sock" ] && break; sleep 0.05; done
}
bench() { "$work/bin/ckbench" "$@"; }

echo "== a lone node (durable set rate, 16 clients)"
start solo "bench-solo-$$" $((20000 + RANDOM))
bench -socket "$work/solo.sock" -c 16 -n "$n" -d 256 -t set
bench -t fsync -dir "$work"

echo "== three nodes on lo"
cl="bench-$$-$RANDOM"; port=$((20000 + RANDOM))
start a "$cl" "$port"; start b "$cl" "$port"; start c "$cl" "$port"
sleep 3 # a few heartbeats: everyone alive
bench -socket "$work/a.sock" -peer "$work/b.sock" -n 2000 -d 256 -t repl
bench -socket "$work/a.sock" -c 16 -n "$n" -d 256 -wait 2 -t set
bench -t fsync -dir "$work"

echo "== two nodes with a cluster key, two without (replication latency)"
key=$(go run "$root/cmd/ckctl" keygen)
cl="bench-enc-$$-$RANDOM"; port=$((20000 + RANDOM))
start e1 "$cl" "$port" "$key"; start e2 "$cl" "$port" "$key"
cl="bench-plain-$$-$RANDOM"; port=$((20000 + RANDOM))
start p1 "$cl" "$port"; start p2 "$cl" "$port"
sleep 3
for _ in 1 2; do
  printf 'plain     '; bench -socket "$work/p1.sock" -peer "$work/p2.sock" -n 2000 -d 256 -t repl
  printf 'encrypted '; bench -socket "$work/e1.sock" -peer "$work/e2.sock" -n 2000 -d 256 -t repl
done

echo "== idle traffic (10 s each)"
bench -socket "$work/b.sock" -idle 10s -t idle
bench -socket "$work/a.sock" -c 16 -n 20000 -keys 20000 -d 64 -t set >/dev/null
sleep 2
bench -socket "$work/b.sock" -idle 10s -t idle
