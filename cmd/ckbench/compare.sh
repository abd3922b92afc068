#!/usr/bin/env bash
# Single-node figures side by side, in one run (ratios hold on a noisy
# machine where absolute times do not): ckbench against ckd, and
# redis-benchmark against Redis with appendfsync always on its Unix socket,
# both with their data on the same file system; the fdatasync latency there;
# and `ckctl get` as a whole process against a Go hello-world (hyperfine).
# It ends with the ratios the targets are stated in (docs/BENCHMARKS.md).
#
#   cmd/ckbench/compare.sh [REQUESTS [ROUNDS]]   (needs redis-server, hyperfine)
#
# Throughput runs ROUNDS times (default 3), Redis and ckd taking turns; the
# one-client latency five times, each time right next to an fdatasync probe
# (disk latency drifts by half within a minute on a shared machine). The
# ratios are the medians of the rounds' ratios.
#
# ckbench uses its loop client (CK_CLIENT, default loop: every client's
# lean HTTP/1.1 connection driven from one thread with epoll, as
# redis-benchmark drives its lean RESP ones, so that both load generators
# take about as much of the shared CPU); figures with the raw client (a
# goroutine per connection) and the Go client (rpc.Client) follow for
# reference. The CPU each server and load generator spent per set (from
# /proc and GNU time) is printed with the ratios. ckctl is timed as `go
# build` makes it (cgo on: dynamically linked) and built with
# CGO_ENABLED=0 (static).
#
# CK_BASE=REV (a git revision) also builds ckd as it was at REV and runs it
# in every throughput round beside the current one (the two taking turns
# going first), so that a change is measured before and after in the same
# run; the median of the rounds' after/before ratios ends the output.
set -euo pipefail
n=${1:-100000}
rounds=${2:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /var/tmp/ck-compare-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT

command -v redis-server >/dev/null || { echo "needs redis-server (apt-get install redis-server)" >&2; exit 2; }
command -v hyperfine >/dev/null || { echo "needs hyperfine (apt-get install hyperfine)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "needs GNU time (apt-get install time)" >&2; exit 2; }
client=${CK_CLIENT:-loop}
(cd "$root" && go build -o "$work/bin/" ./cmd/ckd ./cmd/ckctl ./cmd/ckbench)
(cd "$root" && CGO_ENABLED=0 go build -o "$work/bin/ckctl-static" ./cmd/ckctl)
mkdir -p "$work/hello" && cat > "$work/hello/main.go" <<'GO'
package main

import "fmt"

func main() { fmt.Println("hello") }
GO
(cd "$work/hello" && GO111MODULE=off go build -o "$work/bin/hello" main.go)
base=${CK_BASE:-}
if [ -n "$base" ]; then
  mkdir -p "$work/base-src"
  git -C "$root" archive "$base" | tar -x -C "$work/base-src"
  (cd "$work/base-src" && go build -o "$work/base/" ./cmd/ckd)
fi

# num WORD: per line of ckbench's text, the number after WORD ("ops/s": the
# one before).
num() { awk -v w="$1" '{for (i = 1; i <= NF; i++) { if (w == "ops/s" && $i == "ops/s") { print $(i-1); next } if ($i == w) { v = $(i+1); gsub(/[^0-9.]/, "", v); print v; next } } }'; }
# median of the numbers on stdin
median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }

# Each ckd is a cluster of its own (a random name and port, its own default
# key): on the default cluster the nodes of one user on this host, this
# run's two among them, would replicate to each other.
export XDG_CONFIG_HOME="$work/xdg"
alone() {
  cat >"$work/$1.hcl" <<HCL
cluster {
  name = "compare-$1-$$-$RANDOM"
  port = $((20000 + RANDOM % 40000))
}
HCL
  echo "$work/$1.hcl"
}
mkdir -p "$work/redis"
redis-server --port 0 --unixsocket "$work/redis.sock" --dir "$work/redis" \
  --appendonly yes --appendfsync always --save '' --daemonize no >"$work/redis.log" 2>&1 &
pids+=($!)
"$work/bin/ckd" -config "$(alone ckd)" -data-dir "$work/ckd" -socket "$work/ckd.sock" -node-name bench >"$work/ckd.log" 2>&1 &
pids+=($!)
if [ -n "$base" ]; then
  "$work/base/ckd" -config "$(alone base)" -data-dir "$work/ckd-base" -socket "$work/base.sock" -node-name base >"$work/base.log" 2>&1 &
  pids+=($!)
fi
for _ in $(seq 100); do [ -S "$work/redis.sock" ] && [ -S "$work/ckd.sock" ] && { [ -z "$base" ] || [ -S "$work/base.sock" ]; } && break; sleep 0.05; done
export CK_SOCKET="$work/ckd.sock"
echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"
echo "Redis $(redis-server --version | sed -n 's/.*v=\([^ ]*\).*/\1/p') with appendfsync always on a Unix socket; ckd $("$work/bin/ckd" -version | awk '{print $2}'); $n requests, 16 clients, 256-byte values"

# timed PID LABEL CMD...: runs CMD, then appends to cpu.txt LABEL, the CPU
# the server PID and CMD (the load generator) took per request, in µs.
hz=$(getconf CLK_TCK)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
timed() {
  local pid=$1 label=$2 t0 t1
  shift 2
  t0=$(ticks "$pid")
  /usr/bin/time -f '%U %S' -o "$work/time.txt" "$@"
  t1=$(ticks "$pid")
  awk -v l="$label" -v s=$((t1 - t0)) -v hz="$hz" -v n="$n" '{printf "%s %.1f %.1f\n", l, s / hz / n * 1e6, ($1 + $2) / n * 1e6}' "$work/time.txt" >>"$work/cpu.txt"
  tail -1 "$work/cpu.txt" | awk '{printf "%-5s CPU per set: server %s µs, load generator %s µs\n", $1, $2, $3}' >&2
}
ckd16() { # ckd16 NAME PREFIX PID SOCKET: its set round, then its get round
  timed "$3" "$1" "$work/bin/ckbench" -socket "$4" -client "$client" -c 16 -n "$n" -d 256 -t set | sed "s/^/$2/" | tee -a "$work/$1.txt"
  "$work/bin/ckbench" -socket "$4" -client "$client" -c 16 -n "$n" -d 256 -t get | sed "s/^/$2/" | tee -a "$work/$1.txt"
}
ck16() { ckd16 ckd "ckd   " "${pids[1]}" "$work/ckd.sock"; }
base16() { ckd16 base "base  " "${pids[2]}" "$work/base.sock"; }
redis16() {
  for t in set get; do
    if [ $t = set ]; then
      timed "${pids[0]}" redis redis-benchmark -s "$work/redis.sock" -c 16 -n "$n" -d 256 -t $t -r 10000 -q
    else
      redis-benchmark -s "$work/redis.sock" -c 16 -n "$n" -d 256 -t $t -r 10000 -q
    fi | tr '\r' '\n' | grep -v 'rps=' | grep . | grep 'requests per second' | sed 's/^/redis /' | tee -a "$work/redis.txt"
  done
}
for r in $(seq "$rounds"); do
  echo "== round $r (load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null))"
  redis16
  # The two ckd take turns going first: the disk's and the machine's
  # load drift within a round.
  if [ -z "$base" ]; then
    ck16
  elif [ $((r % 2)) = 1 ]; then
    ck16
    base16
  else
    base16
    ck16
  fi
done
paste <(grep 'redis SET' "$work/redis.txt" | awk '{print $3}') <(grep 'ckd   set' "$work/ckd.txt" | num ops/s) |
  awk '{print $2 / $1}' | median >"$work/set.ratio"
paste <(grep 'redis GET' "$work/redis.txt" | awk '{print $3}') <(grep 'ckd   get' "$work/ckd.txt" | num ops/s) |
  awk '{print $2 / $1}' | median >"$work/get.ratio"

if [ -n "$base" ]; then
  for t in set get; do
    paste <(grep "base  $t" "$work/base.txt" | num ops/s) <(grep "ckd   $t" "$work/ckd.txt" | num ops/s) |
      awk '{print $2 / $1}' | median >"$work/after-$t.ratio"
    T=$(echo $t | tr a-z A-Z)
    paste <(grep "redis $T" "$work/redis.txt" | awk '{print $3}') <(grep "base  $t" "$work/base.txt" | num ops/s) |
      awk '{print $2 / $1}' | median >"$work/base-$t.ratio"
  done
fi

echo "== one client: set, next to fdatasync (4 KiB write + fdatasync in the data dir's file system)"
redis-benchmark -s "$work/redis.sock" -c 1 -n 2000 -d 256 -t set -r 10000 --precision 3 | tr '\r' '\n' |
  grep -A2 -E 'latency summary' | sed 's/^/redis /' || true
for r in 1 2 3 4 5; do
  "$work/bin/ckbench" -client "$client" -c 1 -n 1000 -d 256 -t set | tee -a "$work/ck1.txt"
  "$work/bin/ckbench" -t fsync -n 1000 -dir "$work" | tee -a "$work/fsync.txt"
done
paste <(grep '^set' "$work/ck1.txt" | num p50) <(grep '^fsync' "$work/fsync.txt" | num p50) |
  awk '{print $1 / $2}' | median >"$work/p50.ratio"

echo "== other clients instead of ckbench's $client one, for reference: raw (a goroutine per connection), then the Go client (rpc.Client)"
"$work/bin/ckbench" -client raw -c 16 -n "$n" -d 256 -t set,get
"$work/bin/ckbench" -client rpc -c 16 -n "$n" -d 256 -t set,get

echo "== ckctl get as a whole process"
"$work/bin/ckctl" set bla blub
hyperfine -N --warmup 20 --runs 300 --export-json "$work/hf.json" \
  "$work/bin/ckctl get bla" "$work/bin/ckctl-static get bla" "$work/bin/hello" 2>&1 | grep -E 'Time|Benchmark'
means=($(grep '"mean"' "$work/hf.json" | awk -F: '{gsub(/[ ,]/, "", $2); print $2}'))

echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null) (other work on the machine skews the ratios against ckd, which needs more CPU than Redis)"
echo "== ratios (medians of the rounds)"
awk -v s="$(cat "$work/set.ratio")" -v g="$(cat "$work/get.ratio")" -v p="$(cat "$work/p50.ratio")" \
  -v c="${means[0]}" -v t="${means[1]}" -v h="${means[2]}" 'BEGIN {
  printf "durable set, 16 clients:   ckd/Redis        %.2fx  (target >= 0.8)\n", s
  printf "get, 16 clients:           ckd/Redis        %.2fx  (target >= 0.7)\n", g
  printf "set p50, 1 client:         ckd/fdatasync    %.2fx  (target <= 3)\n", p
  printf "ckctl get, go build:       ckctl/hello      %.2fx  (target <= 2.5)  %.2f ms / %.2f ms\n", c / h, c * 1000, h * 1000
  printf "ckctl get, CGO_ENABLED=0:  ckctl/hello      %.2fx                  %.2f ms / %.2f ms\n", t / h, t * 1000, h * 1000
}'
# cpu LABEL COLUMN: the median of a server's (2) or its load generator's (3)
# CPU per set over the rounds
cpu() { grep "^$1 " "$work/cpu.txt" | awk -v c="$2" '{print $c}' | median; }
printf "CPU per set, µs (medians):  ckd %s + ckbench %s;  Redis %s + redis-benchmark %s\n" \
  "$(cpu ckd 2)" "$(cpu ckd 3)" "$(cpu redis 2)" "$(cpu redis 3)"
if [ -n "$base" ]; then
  printf "ckd at %s: %s + ckbench %s\n" "$base" "$(cpu base 2)" "$(cpu base 3)"
  printf "ckd at %s, same run:  durable set %.2fx, get %.2fx of Redis\n" "$base" "$(cat "$work/base-set.ratio")" "$(cat "$work/base-get.ratio")"
  printf "this ckd / ckd at %s, round by round:  durable set %.2fx, get %.2fx\n" "$base" "$(cat "$work/after-set.ratio")" "$(cat "$work/after-get.ratio")"
fi
