#!/usr/bin/env bash
# ckd builds side by side on replicated writes, nothing else: three ckd
# nodes of each build (a cluster of their own per build, on lo), driven in
# alternating rounds (the order rotating) by one ckbench: 16 clients with
# --wait 1, 16 with --wait 2, one with --wait 1, 256-byte values over
# 1,000 keys. Beside each run the CPU (user + system, from /proc) of that
# build's three nodes per put and the 1-minute load; at the end the
# medians per build. Quicker than replicated.sh (no etcd or NATS), for
# telling builds apart on a noisy machine: compare CPU per put first.
#
#   cmd/ckbench/replicated-ab.sh REQUESTS ROUNDS REV...   (REV "." : the working tree)
#
# Everything the script starts is stopped, and its directory removed, on exit.
set -euo pipefail
n=$1 rounds=$2
shift 2
revs=("$@")
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /var/tmp/ck-ab-XXXXXX)
declare -A pid
cleanup() {
  for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pid[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

(cd "$root" && go build -o "$work/bin/" ./cmd/ckctl ./cmd/ckbench)
for i in "${!revs[@]}"; do
  if [ "${revs[$i]}" = . ]; then
    (cd "$root" && go build -o "$work/b$i/" ./cmd/ckd)
  else
    mkdir -p "$work/src$i"
    git -C "$root" archive "${revs[$i]}" | tar -x -C "$work/src$i"
    (cd "$work/src$i" && go build -o "$work/b$i/" ./cmd/ckd)
  fi
done
export XDG_CONFIG_HOME="$work/xdg"
base=$((20000 + RANDOM % 40000))
for i in "${!revs[@]}"; do
  for s in a b c; do
    printf 'cluster {\n  name = "ab-%s-%s"\n  port = %s\n}\n' "$$" "$i" "$((base + i))" >"$work/$i$s.hcl"
    "$work/b$i/ckd" -config "$work/$i$s.hcl" -data-dir "$work/ck-$i$s" -socket "$work/$i$s.sock" -node-name "$s" >"$work/ck-$i$s.log" 2>&1 &
    pid[$i$s]=$!
  done
done
for i in "${!revs[@]}"; do
  up=""
  for _ in $(seq 300); do
    if CK_SOCKET="$work/${i}a.sock" "$work/bin/ckctl" status 2>/dev/null | grep -Eq '^members: *alive=3'; then up=1; break; fi
    sleep 0.2
  done
  [ -n "$up" ] || { echo "ckd ${revs[$i]} did not come up; its logs:" >&2; tail -n 20 "$work"/ck-"$i"?.log >&2; exit 1; }
done

# ckcpu I: CPU ticks (user + system) of build I's three nodes.
ckcpu() { local s=0 f x; for x in a b c; do f=($(cut -d' ' -f14,15 "/proc/${pid[$1$x]}/stat")); s=$((s + f[0] + f[1])); done; echo "$s"; }
tck=$(getconf CLK_TCK)
run() { # I CLIENTS WAIT REQUESTS
  local c0 out
  c0=$(ckcpu "$1")
  out=$("$work/bin/ckbench" -socket "$work/$1a.sock" -wait "$3" -c "$2" -n "$4" -keys 1000 -d 256 -prefix repl/ -t set)
  awk -v c="$(($(ckcpu "$1") - c0))" -v n="$4" -v t="$tck" -v o="$out" -v tag="${revs[$1]} c$2 w$3" -v l="$(cut -d' ' -f1 /proc/loadavg)" \
    'BEGIN {printf "%-10s %s cpu/put %.0f load %s\n", tag, o, c / t * 1e6 / n, l}' | tee -a "$work/res.txt"
}
idx=("${!revs[@]}")
for _ in $(seq "$rounds"); do
  for i in "${idx[@]}"; do run "$i" 16 1 "$n"; done
  for i in "${idx[@]}"; do run "$i" 16 2 "$n"; done
  for i in "${idx[@]}"; do run "$i" 1 1 $((n / 5)); done
  idx=("${idx[@]:1}" "${idx[0]}")
done

echo "== medians"
med() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
field() { awk -v w="$1" '{for (i = 1; i <= NF; i++) { if (w == "ops/s" && $i == w) print $(i-1); else if ($i == w && w != "ops/s") { v = $(i+1); gsub(/[^0-9.]/, "", v); print v } } }'; }
for r in "${revs[@]}"; do
  for k in "c16 w1" "c16 w2" "c1 w1"; do
    rows=$(awk -v r="$r" -v k="$k" '$1 == r && $2 " " $3 == k' "$work/res.txt")
    printf "%-10s %-7s puts/s %6.0f  p50 %5.0f µs  cpu/put %4.0f µs\n" "$r" "$k" \
      "$(field ops/s <<<"$rows" | med)" "$(field p50 <<<"$rows" | med)" "$(field cpu/put <<<"$rows" | med)"
  done
done
