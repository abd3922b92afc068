#!/usr/bin/env bash
# One node holding many keys (docs/BENCHMARKS.md, "Keys: 1 M and 10 M"):
# fill it with KEYS records of SIZE bytes (POST /v1/import, as a restore
# does); restart it cleanly, then after kill -9, each time measuring from
# the start of ckd until a GET is answered; export everything to a file;
# then start an empty second node in the same cluster and measure its
# bootstrap: keys a second, the CPU both nodes spent on it, and their memory (RSS, anonymous
# memory and its peak, sampled every 0.2 s, beside the file sizes).
#
#   cmd/ckbench/keys.sh [KEYS [SIZE]]   (defaults 1000000, 256)
#
# The data goes under CK_WORK (default /var/tmp) and is removed at the
# end; 10 M keys of 256 B take ~15 GB there (two nodes and the export).
# Steps can be skipped: CK_SKIP="crash export boot"; the bootstrap is given
# up after CK_BOOT_TIMEOUT seconds (default 3600).
set -euo pipefail
keys=${1:-1000000}
size=${2:-256}
skip=" ${CK_SKIP:-} "
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d "${CK_WORK:-/var/tmp}/ck-keys-XXXXXX")
declare -A pid
cleanup() { for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
(cd "$root" && go build -o "$work/bin/" ./cmd/ckd ./cmd/ckctl ./cmd/ckbench)
cl="keys-$$-$RANDOM"; port=$((20000 + RANDOM))
printf 'cluster {\n  name = "%s"\n  port = %s\n}\n' "$cl" "$port" >"$work/ckd.hcl"

launch() { # NAME: start ckd in the background
  rm -f "$work/$1.sock"
  "$work/bin/ckd" -config "$work/ckd.hcl" -data-dir "$work/$1" -socket "$work/$1.sock" -node-name "$1" >>"$work/$1.log" 2>&1 &
  pid[$1]=$!
}
stop() { kill "$1" "${pid[$2]}" 2>/dev/null; wait "${pid[$2]}" || true; unset "pid[$2]"; }
api() { curl -s -o /dev/null -w '%{http_code}' --unix-socket "$work/$1.sock" "http://ckd$2" 2>/dev/null || true; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f s", b - a }'; }
# mem NAME: resident, anonymous and peak memory of a node, and its files
mem() {
  awk '/^(VmRSS|RssAnon|VmHWM):/ { printf "%s %d MB  ", $1, $2 / 1024 }' "/proc/${pid[$1]}/status"
  du -sm "$work/$1" | awk '{ printf "data dir %d MB\n", $1 }'
}
# cpu NAME: CPU seconds (user + system) the node used so far
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f\n", ($14 + $15) / hz }' "/proc/${pid[$1]}/stat"; }
# per SECONDS: microseconds a key
per() { awk -v s="$1" -v n="$keys" 'BEGIN { printf "%.1f", s * 1e6 / n }'; }
# serves NAME: seconds from now until GET /v1/kv/keys/probe answers 200
serves() {
  local t0; t0=$(now); launch "$1"
  until [ "$(api "$1" /v1/kv/keys/probe)" = 200 ]; do sleep 0.01; done
  echo "$1 serves after $(since "$t0")"
}
load() { uptime | sed 's/.*load/load/'; }

echo "== $keys keys of $size B ($(load))"
launch a
until [ "$(api a /v1/health)" = 200 ]; do sleep 0.05; done
t0=$(now)
"$work/bin/ckbench" -socket "$work/a.sock" -n "$keys" -d "$size" -t import
echo "filled in $(since "$t0")"
curl -s --unix-socket "$work/a.sock" -X PUT --data-binary probe http://ckd/v1/kv/keys/probe >/dev/null
sleep 3 # its log flushed into its file, as a node at rest
echo "a filled: $(mem a)"

echo "-- clean restart ($(load))"
t0=$(now); stop -TERM a; echo "a stopped in $(since "$t0")"
serves a
echo "a restarted: $(mem a)"

case "$skip" in *" crash "*) ;; *)
  echo "-- restart after kill -9 ($(load))"
  sleep 2
  stop -KILL a
  serves a
  echo "a restarted: $(mem a)"
  sleep 3
esac

case "$skip" in *" export "*) ;; *)
  echo "-- export ($(load))"
  t0=$(now)
  CK_SOCKET="$work/a.sock" "$work/bin/ckctl" export >"$work/export.jsonl"
  echo "exported $(wc -l <"$work/export.jsonl") records, $(du -m "$work/export.jsonl" | cut -f1) MB, in $(since "$t0"); a: $(mem a)"
  rm -f "$work/export.jsonl"
esac

case "$skip" in *" boot "*) ;; *)
  # a settled first: once synced after its restart it scans its records
  # for stale ephemeral keys, which would count as the sender's CPU.
  until [ "$(api a /v1/health)" = 200 ]; do sleep 0.05; done
  sleep 5
  echo "-- bootstrap of an empty node ($(load))"
  ca=$(cpu a); t0=$(now); launch d
  until [ -e "/proc/${pid[d]}/status" ]; do sleep 0.01; done
  peak=0
  deadline=$(( $(date +%s) + ${CK_BOOT_TIMEOUT:-3600} ))
  until grep -q 'bootstrap complete' "$work/d.log" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "d: no bootstrap after ${CK_BOOT_TIMEOUT:-3600} s"; break; }
    a=$(awk '/^RssAnon:/ { print int($2 / 1024) }' "/proc/${pid[d]}/status")
    [ "${a:-0}" -gt "$peak" ] && peak=$a
    sleep 0.2
  done
  echo "d synced after $(since "$t0") ($(load)); peak anonymous memory while bootstrapping: $peak MB"
  cd_=$(cpu d); ca_=$(awk -v a="$(cpu a)" -v b="$ca" 'BEGIN { printf "%.2f", a - b }')
  echo "CPU: d $cd_ s ($(per "$cd_") µs a key), a $ca_ s ($(per "$ca_") µs a key)"
  # The bulk load's index is merged once the node is synced
  # (docs/ARCHITECTURE.md, "The bootstrap pipeline"): its CPU too.
  for _ in $(seq 600); do grep -q 'index merged' "$work/d.log" && break; sleep 0.1; done
  cd_=$(cpu d)
  echo "index merged after $(since "$t0"): CPU d $cd_ s ($(per "$cd_") µs a key) with the merge"
  grep -E 'bootstrap (complete|progress)|index merged' "$work/d.log" | sed 's/.*bootstrap/d: bootstrap/'
  echo "d: $(mem d)"
  echo "a: $(mem a)"
esac
load
