#!/usr/bin/env bash
# Cluster figures in one run, on this host (ckd nodes on lo multicast):
# replication latency A -> durable on B beside the fdatasync p50;
# replication throughput (16 writers on A, --wait 2) beside a lone node's
# durable set rate; the same latency with and without a cluster key; idle
# datagrams per node with few and with many keys; fresh-read latency over
# three nodes beside a plain get's; convergence after a heal with 10,000
# differing keys (a node restarted, and a node paused); the bootstrap rate
# of an empty node pulling BOOT_KEYS 256-byte values.
#
#   cmd/ckbench/cluster.sh [REQUESTS [BOOT_KEYS]]   (defaults 20000, 200000)
#
# Sections can be skipped: CK_SKIP="repl enc idle fresh heal boot".
set -euo pipefail
n=${1:-20000}
bootkeys=${2:-200000}
skip=" ${CK_SKIP:-} "
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /var/tmp/ck-cluster-XXXXXX)
declare -A pid
cleanup() { for p in "${pid[@]}"; do kill -CONT "$p" 2>/dev/null; kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
(cd "$root" && go build -o "$work/bin/" ./cmd/ckd ./cmd/ckctl ./cmd/ckbench)

launch() { # NAME CLUSTER PORT [KEY]: start ckd in the background
  local enc=""; [ -n "${4:-}" ] && enc="  encrypt = \"$4\""
  printf 'cluster {\n  name = "%s"\n  port = %s\n%s\n}\n' "$2" "$3" "$enc" >"$work/$1.hcl"
  "$work/bin/ckd" -config "$work/$1.hcl" -data-dir "$work/$1" -socket "$work/$1.sock" -node-name "$1" >>"$work/$1.log" 2>&1 &
  pid[$1]=$!
}
start() { # as launch, and wait for the socket
  rm -f "$work/$1.sock"
  launch "$@"
  for _ in $(seq 100); do [ -S "$work/$1.sock" ] && break; sleep 0.05; done
}
stop() { kill "${pid[$1]}"; wait "${pid[$1]}" || true; unset "pid[$1]"; }
bench() { "$work/bin/ckbench" "$@"; }
on() { case "$skip" in *" $1 "*) return 1 ;; esac; echo "== $2"; }
load() { uptime | sed 's/.*load/load/'; }

load
if on repl "a lone node (durable set rate, 16 clients)"; then
  start solo "bench-solo-$$" $((20000 + RANDOM))
  bench -socket "$work/solo.sock" -c 16 -n "$n" -d 256 -t set
  bench -t fsync -dir "$work"
  stop solo
fi

cl="bench-$$-$RANDOM"; port=$((20000 + RANDOM))
echo "== three nodes on lo"
start a "$cl" "$port"; start b "$cl" "$port"; start c "$cl" "$port"
sleep 3 # a few heartbeats: everyone alive
if on repl "replication latency and throughput"; then
  bench -socket "$work/a.sock" -peer "$work/b.sock" -n 2000 -d 256 -t repl
  bench -socket "$work/a.sock" -c 16 -n "$n" -d 256 -wait 2 -t set
  bench -t fsync -dir "$work"
fi

if on fresh "fresh reads over three nodes, one client (plain gets beside them)"; then
  for _ in 1 2; do
    bench -socket "$work/a.sock" -c 1 -n 5000 -keys 1000 -prefix fresh/ -d 256 -t get,fresh
  done
fi

if on heal "convergence after a heal, 10,000 differing keys"; then
  echo "-- c stopped (TERM); 10,000 keys written on a; c started again: from its start to equal roots"
  stop c
  bench -socket "$work/a.sock" -c 16 -keys 10000 -prefix heal1/ -d 256 -t fill
  rm -f "$work/c.sock"; launch c "$cl" "$port"
  bench -socket "$work/c.sock" -peer "$work/a.sock" -t converge
  grep 'bootstrap complete' "$work/c.log" | tail -1 | sed 's/.*bootstrap/c: bootstrap/'
  sleep 2
  echo "-- c paused (SIGSTOP); 10,000 keys written on a; c resumed: from SIGCONT to equal roots"
  kill -STOP "${pid[c]}"
  bench -socket "$work/a.sock" -c 16 -keys 10000 -prefix heal2/ -d 256 -t fill
  kill -CONT "${pid[c]}"
  bench -socket "$work/c.sock" -peer "$work/a.sock" -t converge
  CK_SOCKET="$work/c.sock" "$work/bin/ckctl" status | grep -E '^(keys|sync):' || true
  curl -s --unix-socket "$work/c.sock" http://ckd/v1/metrics | grep -E '^ck_(sync_records_total|replicated_records_total|sync_sessions_total\{outcome="(opened|completed)")' || true
fi

if on idle "idle traffic (10 s each)"; then
  bench -socket "$work/b.sock" -idle 10s -t idle
  bench -socket "$work/a.sock" -c 16 -n 20000 -keys 20000 -d 64 -t set >/dev/null
  sleep 2
  bench -socket "$work/b.sock" -idle 10s -t idle
fi

if on enc "two nodes with a cluster key, two without (replication latency)"; then
  key=$("$work/bin/ckctl" keygen)
  ecl="bench-enc-$$-$RANDOM"; eport=$((20000 + RANDOM))
  start e1 "$ecl" "$eport" "$key"; start e2 "$ecl" "$eport" "$key"
  pcl="bench-plain-$$-$RANDOM"; pport=$((20000 + RANDOM))
  start p1 "$pcl" "$pport"; start p2 "$pcl" "$pport"
  sleep 3
  for _ in 1 2; do
    printf 'plain     '; bench -socket "$work/p1.sock" -peer "$work/p2.sock" -n 2000 -d 256 -t repl
    printf 'encrypted '; bench -socket "$work/e1.sock" -peer "$work/e2.sock" -n 2000 -d 256 -t repl
  done
  stop e1; stop e2; stop p1; stop p2
fi

if on boot "bootstrap of an empty node from one holding $bootkeys keys of 256 bytes"; then
  stop b; stop c # the load goes to a alone
  bench -socket "$work/a.sock" -c 16 -keys "$bootkeys" -prefix boot/ -d 256 -t fill
  CK_SOCKET="$work/a.sock" "$work/bin/ckctl" status | grep -E '^keys:'
  sleep 3 # a at rest (its log flushed into its file), as a peer usually is
  rm -f "$work/d.sock"; launch d "$cl" "$port"
  bench -socket "$work/d.sock" -peer "$work/a.sock" -t converge
  grep -E 'bootstrap (complete|progress)' "$work/d.log" | sed 's/.*bootstrap/d: bootstrap/'
fi
load
