#!/usr/bin/env bash
# What a cluster of N real ckd nodes on this host (lo multicast) spends on
# a steady write load (docs/BENCHMARKS.md, Scale): one node takes RATE
# writes a second from 16 clients, each waiting for one ACK (--wait 1):
# WARMUP seconds for the anti-entropy pacing to settle, then SECONDS
# counted. First, before any write, it counts the datagrams each node
# receives idle (HELLOs: docs/ARCHITECTURE.md, Heartbeats at scale) over
# IDLE seconds (environment, default 20). Then it counts, over the write
# window and all nodes, the anti-entropy sessions opened (and those that
# repaired nothing), the datagrams the writer received per write beside
# the HELLOs it receives anyway (the idle rate), and the datagrams the
# kernel dropped; then a fresh read's latency, one client (the keys it
# reads are written first, so every node holds them), and its CPU: over
# all nodes, the asker's, and what one answer costs a peer.
#
#   cmd/ckbench/scale.sh N [SECONDS [RATE [WARMUP]]]   (defaults 60, 200, 90)
#   IDLE=S CKBIN=DIR READS=R PERF=1 cmd/ckbench/scale.sh ...
set -euo pipefail
nodes=${1:?usage: scale.sh N [SECONDS [RATE [WARMUP]]]}
secs=${2:-60}
rate=${3:-200}
warmup=${4:-90}
idle=${IDLE:-20}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /var/tmp/ck-scale-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
# CKBIN=DIR takes ckd, ckctl and ckbench from DIR (to compare two builds
# under the same load); else they are built from this checkout.
if [ -n "${CKBIN:-}" ]; then
  mkdir -p "$work/bin" && cp "$CKBIN/ckd" "$CKBIN/ckctl" "$CKBIN/ckbench" "$work/bin/"
else
  (cd "$root" && go build -o "$work/bin/" ./cmd/ckd ./cmd/ckctl ./cmd/ckbench)
fi

cl="scale-$$-$RANDOM"; port=$((20000 + RANDOM))
for i in $(seq 1 "$nodes"); do
  printf 'cluster {\n  name = "%s"\n  port = %s\n}\n' "$cl" "$port" >"$work/n$i.hcl"
  "$work/bin/ckd" -config "$work/n$i.hcl" -data-dir "$work/n$i" -socket "$work/n$i.sock" -node-name "n$i" >>"$work/n$i.log" 2>&1 &
  pids+=($!)
done
metrics() { curl -s --unix-socket "$work/$1.sock" http://ckd/v1/metrics; }
# value NODE METRIC: one sample's value (0 when absent)
value() { metrics "$1" | awk -v m="$2" '$1 == m { v = $2 } END { printf "%d\n", v + 0 }'; }
# total METRIC: summed over every node
total() { local s=0; for i in $(seq 1 "$nodes"); do s=$((s + $(value "n$i" "$1"))); done; echo "$s"; }

echo "== $nodes nodes on lo ($(uptime | sed 's/.*load/load/'))"
for _ in $(seq 300); do
  alive=$(CK_SOCKET="$work/n1.sock" "$work/bin/ckctl" status 2>/dev/null | sed -n 's/^members: *alive=\([0-9]*\).*/\1/p')
  [ "${alive:-0}" -ge "$nodes" ] && break
  sleep 0.2
done
echo "alive as n1 sees it: ${alive:-0} of $nodes"
sleep 3 # every node's bootstrap done, and a few HELLOs heard

opened='ck_sync_sessions_total{outcome="opened"}'
empty='ck_sync_sessions_total{outcome="empty"}'
declined='ck_sync_sessions_total{outcome="declined"}'
kernel='ck_datagrams_dropped_total{reason="kernel"}'
recv='ck_datagrams_total{direction="received"}'
self='ck_datagrams_self_total'
snap() { echo "$(total "$opened") $(total "$empty") $(total "$declined") $(total "$kernel") $(value n1 "$recv") $(value n1 "$self") $(value n1 "$kernel")"; }

# cpu: CPU time of every ckd so far, in clock ticks (/proc, Linux)
cpu() { local s=0 f; for p in "${pids[@]}"; do read -r -a f <"/proc/$p/stat"; s=$((s + f[13] + f[14])); done; echo "$s"; }
# cpu1: the same, of n1 alone (the writer, and the asker of fresh reads)
cpu1() { local f; read -r -a f <"/proc/${pids[0]}/stat"; echo $((f[13] + f[14])); }
hz=$(getconf CLK_TCK)

# idle: datagrams received per node per second, its own broadcasts aside
idlesnap() { echo "$(total "$recv") $(total "$self") $(value n1 "$recv") $(value n1 "$self") $(cpu)"; }
read -r ia0 is0 ir0 iw0 ic0 < <(idlesnap)
sleep "$idle"
read -r ia1 is1 ir1 iw1 ic1 < <(idlesnap)
writerIdle=$(awk -v d=$(((ir1 - ir0) - (iw1 - iw0))) -v s="$idle" 'BEGIN { printf "%.2f", d / s }')
awk -v n="$nodes" -v d=$(((ia1 - ia0) - (is1 - is0))) -v s="$idle" -v c=$((ic1 - ic0)) -v hz="$hz" 'BEGIN {
  printf "idle, %d s: %.2f datagrams received per node per second; all nodes together used %.3f CPU\n", s, d / n / s, c / hz / s
}'

if [ "$warmup" -gt 0 ]; then
  echo "-- warm-up, ${warmup} s"
  "$work/bin/ckbench" -socket "$work/n1.sock" -c 16 -n $((warmup * rate)) -rate "$rate" -keys 1000 -prefix scale/ -d 256 -wait 1 -t set
fi
echo "-- counted, ${secs} s"
read -r o0 e0 d0 k0 r0 s0 w0 < <(snap)
t0=$(date +%s.%N)
"$work/bin/ckbench" -socket "$work/n1.sock" -c 16 -n $((secs * rate)) -rate "$rate" -keys 1000 -prefix scale/ -d 256 -wait 1 -t set
t1=$(date +%s.%N)
read -r o1 e1 d1 k1 r1 s1 w1 < <(snap)

awk -v n="$nodes" -v t0="$t0" -v t1="$t1" -v w=$((secs * rate)) -v idle="$writerIdle" \
  -v o=$((o1 - o0)) -v e=$((e1 - e0)) -v d=$((d1 - d0)) -v k=$((k1 - k0)) -v r=$((r1 - r0 - (s1 - s0))) -v wk=$((w1 - w0)) 'BEGIN {
  el = t1 - t0; hellos = idle * el # what the writer received idle: the HELLOs of its peers
  printf "over %.1f s: sessions opened %d (%.2f per node per minute), %d of them empty, %d declined busy\n", el, o, o / n / (el / 60), e, d
  printf "writer: %d datagrams received (~%d HELLOs among them): %.2f per write besides HELLOs; the kernel dropped %d there, %d on all nodes\n", r, hellos, (r - hellos) / w, wk, k
}'
# A fresh-read run fills its 1,000 keys first (replicated to every node):
# the CPU a fill alone costs, measured just before, is taken off. The
# asker's (n1) CPU and its peers' are told apart: a peer's, per read, is
# what one answer costs it. READS (default 2000) fresh reads are made.
# PERF=1 also runs perf stat on the asker and on one peer (n2) over the
# fill alone and over the fresh-read run, and takes the one from the other.
reads=${READS:-2000}
perfs=()
perfOn() { # perfOn NAME: perf stat of n1 and n2 until perfOff
  [ -n "${PERF:-}" ] || return 0
  for i in 0 1; do
    perf stat -x, -e task-clock,context-switches -p "${pids[$i]}" -o "$work/perf.$1.n$((i + 1))" &
    perfs+=($!)
  done
  sleep 0.5
}
perfOff() { for p in "${perfs[@]}"; do kill -INT "$p"; wait "$p" || true; done; perfs=(); }
# perfVal NAME NODE EVENT: the counter's value (task-clock in ms)
perfVal() { awk -F, -v e="$3" '$3 ~ e { v = $1 } END { printf "%f\n", v + 0 }' "$work/perf.$1.$2"; }
f0=$(cpu); a0=$(cpu1)
perfOn fill
"$work/bin/ckbench" -socket "$work/n1.sock" -c 1 -keys 1000 -prefix fresh/ -d 256 -t fill >/dev/null
perfOff
f1=$(cpu); a1=$(cpu1)
perfOn fresh
"$work/bin/ckbench" -socket "$work/n1.sock" -c 1 -n "$reads" -keys 1000 -prefix fresh/ -d 256 -t fresh
perfOff
f2=$(cpu); a2=$(cpu1)
awk -v c=$(((f2 - f1) - (f1 - f0))) -v a=$(((a2 - a1) - (a1 - a0))) -v n="$nodes" -v hz="$hz" -v r="$reads" 'BEGIN {
  printf "fresh reads: %.0f µs of CPU per read over all nodes: the asker %.0f µs, each peer %.0f µs per answer\n", c / hz / r * 1e6, a / hz / r * 1e6, (c - a) / hz / r / (n > 1 ? n - 1 : 1) * 1e6
}'
if [ -n "${PERF:-}" ]; then
  for node in n1 n2; do
    awk -v r="$reads" -v node="$node" \
      -v t=$(perfVal fresh "$node" task-clock) -v t0=$(perfVal fill "$node" task-clock) \
      -v x=$(perfVal fresh "$node" context-switches) -v x0=$(perfVal fill "$node" context-switches) 'BEGIN {
      printf "perf stat, %s, per fresh read (the fill taken off): %.1f µs task-clock, %.2f context switches\n", node, (t - t0) * 1000 / r, (x - x0) / r
    }'
  done
fi
