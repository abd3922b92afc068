#!/usr/bin/env bash
# Replicated writes side by side, in one run on this host (issue 12's
# targets; ratios hold on a noisy machine where absolute figures do not):
# three ckd nodes on lo, a three-member etcd and a three-server NATS
# JetStream cluster (a KV bucket with 3 replicas, sync_interval always),
# all on loopback with their data in one file system, driven by one load
# generator (ckbench: its raw client for ckd, etcd's HTTP gateway, NATS KV
# through nats.go; cmd/ckbench/others.go says why), 256-byte values over
# 1,000 keys, 16 clients and one. Durability is alike: ckd --wait 1 answers
# once the write is durable on its node and one peer (2 of 3), etcd once a
# majority has the Raft entry in its fsynced WAL, JetStream once a quorum
# of the stream's replicas stored it (each fsyncing every write).
#
#   cmd/ckbench/replicated.sh [REQUESTS [ROUNDS]]   (defaults 10000, 3)
#
# Each round runs every system in turn (the order rotating from round to
# round; ckd's --wait 1 and --wait 2 runs back to back), each run after a
# warm-up of a tenth of its requests that is not counted, with the load
# average and an fdatasync probe (4 KiB write + fdatasync in the data file
# system) beside it; the ratios printed at the end are the medians of the
# rounds' ratios. etcd's client talks to its
# leader (no forwarding hop); NATS's to server 1, which may not lead the
# bucket's stream; ckd's to node a (every ckd node takes writes).
#
# Needs etcd (Debian's etcd-server: installed with apt-get when missing and
# run as root) and Go; nats-server is built from the module cache (it is in
# go.mod for the tests), or taken from $NATS_SERVER; etcd from $ETCD.
# CK_BASE=REV (a git revision) also builds ckd as it was at REV and runs
# three nodes of it beside the others (a cluster of their own), in every
# round, so that a change is measured before and after in the same run.
# CK_PROFILE=SECONDS also samples node a with perf for that long under the
# 16-client --wait 1 load and prints the hottest symbols (to
# $CK_PROFILE_OUT, default ./ckd-replicated.perf.txt, too).
# Beside each ckd run: the CPU (user + system, from /proc) its three
# nodes spent per put and their thread switches per put, every thread
# counted, and the writer's mean group commit (from its metrics; none
# from a CK_BASE build without them); medians of the CPU and of the
# batch at the end.
# Everything the script starts is stopped, and its temporary directory
# removed, on exit.
set -euo pipefail
n=${1:-10000}
rounds=${2:-3}
n1=$(( n / 5 < 2000 ? n / 5 : 2000 )) # one client: fewer requests
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /var/tmp/ck-replicated-XXXXXX)
declare -A pid
cleanup() {
  for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pid[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

etcd_bin=${ETCD:-$(command -v etcd || true)}
if [ -z "$etcd_bin" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing etcd-server (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y etcd-server etcd-client >"$work/apt.log" 2>&1 ||
      { cat "$work/apt.log" >&2; exit 2; }
    etcd_bin=$(command -v etcd)
  else
    echo "needs etcd (apt-get install etcd-server, or ETCD=path)" >&2
    exit 2
  fi
fi
(cd "$root" && go build -o "$work/bin/" ./cmd/ckd ./cmd/ckctl ./cmd/ckbench)
nats_server=${NATS_SERVER:-}
if [ -z "$nats_server" ]; then
  (cd "$root" && go build -o "$work/bin/nats-server" github.com/nats-io/nats-server/v2)
  nats_server="$work/bin/nats-server"
fi
bench() { "$work/bin/ckbench" "$@"; }
ckbase=${CK_BASE:-}
if [ -n "$ckbase" ]; then
  mkdir -p "$work/base-src"
  git -C "$root" archive "$ckbase" | tar -x -C "$work/base-src"
  (cd "$work/base-src" && go build -o "$work/base/" ./cmd/ckd)
fi

# Ports: one random block of 50 for everything (ckd's UDP port, etcd's
# client and peer ports, NATS's client and route ports).
base=$((20000 + RANDOM % 40000))
port() { echo $((base + $1)); }

# --- ckd: three nodes of a cluster of their own (cluster.sh's launch)
export XDG_CONFIG_HOME="$work/xdg"
ckcl="repl-$$-$RANDOM"
for s in a b c; do
  printf 'cluster {\n  name = "%s"\n  port = %s\n}\n' "$ckcl" "$(port 0)" >"$work/$s.hcl"
  "$work/bin/ckd" -config "$work/$s.hcl" -data-dir "$work/ck-$s" -socket "$work/$s.sock" -node-name "$s" >"$work/ck-$s.log" 2>&1 &
  pid[ck-$s]=$!
done

if [ -n "$ckbase" ]; then
  for s in x y z; do
    printf 'cluster {\n  name = "%s-base"\n  port = %s\n}\n' "$ckcl" "$(port 1)" >"$work/$s.hcl"
    "$work/base/ckd" -config "$work/$s.hcl" -data-dir "$work/ck-$s" -socket "$work/$s.sock" -node-name "$s" >"$work/ck-$s.log" 2>&1 &
    pid[ck-$s]=$!
  done
fi

# --- etcd: three members
cluster="" token="ck-$$-$RANDOM"
for i in 1 2 3; do cluster+="${cluster:+,}e$i=http://127.0.0.1:$(port $((10 + i)))"; done
for i in 1 2 3; do
  "$etcd_bin" --name "e$i" --data-dir "$work/etcd$i" \
    --listen-client-urls "http://127.0.0.1:$(port $((20 + i)))" --advertise-client-urls "http://127.0.0.1:$(port $((20 + i)))" \
    --listen-peer-urls "http://127.0.0.1:$(port $((10 + i)))" --initial-advertise-peer-urls "http://127.0.0.1:$(port $((10 + i)))" \
    --initial-cluster "$cluster" --initial-cluster-token "$token" --initial-cluster-state new \
    >"$work/etcd$i.log" 2>&1 &
  pid[etcd$i]=$!
done
etcd_eps="http://127.0.0.1:$(port 21),http://127.0.0.1:$(port 22),http://127.0.0.1:$(port 23)"

# --- NATS: three JetStream servers, every write synced
routes="nats://127.0.0.1:$(port 31), nats://127.0.0.1:$(port 32), nats://127.0.0.1:$(port 33)"
for i in 1 2 3; do
  cat >"$work/nats$i.conf" <<CONF
server_name: n$i
listen: 127.0.0.1:$(port $((40 + i)))
jetstream { store_dir: "$work/nats$i", sync_interval: always }
cluster { name: "ckbench-$$", listen: 127.0.0.1:$(port $((30 + i))), routes: [$routes] }
CONF
  "$nats_server" -c "$work/nats$i.conf" >"$work/nats$i.log" 2>&1 &
  pid[nats$i]=$!
done
nats_url="nats://127.0.0.1:$(port 41)"

# --- everyone ready: ckd nodes see each other, etcd has a leader, the
# NATS bucket takes a put (JetStream has a meta leader and the stream R3)
ready() { # WHAT CMD...: retry CMD for up to 60 s
  local what=$1; shift
  for _ in $(seq 300); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
  echo "$what did not come up; its logs:" >&2
  tail -n 20 "$work"/*.log >&2
  exit 1
}
members3() { CK_SOCKET="$work/$1.sock" "$work/bin/ckctl" status | grep -Eq '^members: *alive=3'; }
ready "ckd" members3 a
[ -z "$ckbase" ] || ready "ckd at $ckbase" members3 x
ready "etcd" env ETCDCTL_API=3 etcdctl --endpoints "$etcd_eps" endpoint health
ready "NATS JetStream" bench -client nats -url "$nats_url" -c 1 -n 5 -keys 5 -d 256 -t set
etcd_leader=$(ETCDCTL_API=3 etcdctl --endpoints "$etcd_eps" endpoint status | awk -F', ' '$5 == "true" {print $1}')
[ -n "$etcd_leader" ] || etcd_leader="http://127.0.0.1:$(port 21)"
ready "etcd put" bench -client etcd -url "$etcd_leader" -c 1 -n 5 -keys 5 -d 256 -t set

# num WORD: the number after WORD in ckbench's text ("ops/s": the one before).
num() { awk -v w="$1" '{for (i = 1; i <= NF; i++) { if (w == "ops/s" && $i == "ops/s") { print $(i-1); next } if ($i == w) { v = $(i+1); gsub(/[^0-9.]/, "", v); print v; next } } }'; }
median() { sort -g | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}'; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

echo "ckd $("$work/bin/ckd" -version | awk '{print $2}'), etcd $("$etcd_bin" --version | awk '/etcd Version/ {print $3}'), nats-server $("$nats_server" --version | awk '{print $NF}')"
echo "$n requests with 16 clients, $n1 with one; 256-byte values over 1,000 keys; etcd client -> $etcd_leader (leader), NATS -> server 1"
echo "load average at the start: $(load)"
common=(-keys 1000 -d 256 -prefix repl/ -t set)
# ckcpu NODES...: CPU ticks (user + system) of those ckd nodes; ckcsw
# NODES...: their thread switches, every thread's, voluntary or not.
ckcpu() { local s=0 n f; for n in "$@"; do f=($(cut -d' ' -f14,15 "/proc/${pid[ck-$n]}/stat")); s=$((s + f[0] + f[1])); done; echo "$s"; }
ckcsw() { local n; for n in "$@"; do cat /proc/"${pid[ck-$n]}"/task/*/status 2>/dev/null; done | awk '/ctxt_switches/ {s += $2} END {print s + 0}'; }
tck=$(getconf CLK_TCK)
# commits NODE: its store's group-commit counters, "batches requests"
# (ck_commit_batches_total, ck_commit_requests_total); nothing from a
# build without them.
commits() {
  { curl -s --unix-socket "$work/$1.sock" http://ckd/v1/metrics || true; } |
    awk '$1 == "ck_commit_batches_total" {b = $2} $1 == "ck_commit_requests_total" {r = $2} END {if (b != "") print b + 0, r + 0}'
}
one() { # SYSTEM CLIENTS REQUESTS: ckbench's line for one run
  local sys=$1 c=$2 req=$3
  case $sys in
    ckw1) bench -socket "$work/a.sock" -wait 1 -c "$c" -n "$req" "${common[@]}" ;;
    ckw2) bench -socket "$work/a.sock" -wait 2 -c "$c" -n "$req" "${common[@]}" ;;
    base) bench -socket "$work/x.sock" -wait 1 -c "$c" -n "$req" "${common[@]}" ;;
    etcd) bench -client etcd -url "$etcd_leader" -c "$c" -n "$req" "${common[@]}" ;;
    nats) bench -client nats -url "$nats_url" -c "$c" -n "$req" "${common[@]}" ;;
  esac
}
run() { # SYSTEM CLIENTS REQUESTS: a warm-up, then one ckbench run, its line tagged
  local sys=$1 c=$2 req=$3 out nodes=() cpu0 csw0 com0 per=""
  case $sys in ckw1 | ckw2) nodes=(a b c) ;; base) nodes=(x y z) ;; esac
  one "$sys" "$c" $((req / 10)) >/dev/null # a warm-up, not counted: the first requests after another system's run came out slower
  if [ ${#nodes[@]} -gt 0 ]; then cpu0=$(ckcpu "${nodes[@]}"); csw0=$(ckcsw "${nodes[@]}"); com0=$(commits "${nodes[0]}"); fi
  out=$(one "$sys" "$c" "$req")
  if [ ${#nodes[@]} -gt 0 ]; then
    per=$(awk -v c="$(( $(ckcpu "${nodes[@]}") - cpu0 ))" -v s="$(( $(ckcsw "${nodes[@]}") - csw0 ))" -v n="$req" -v t="$tck" \
      'BEGIN {printf ", 3 ckd: cpu/put %.0f µs csw/put %.1f", c / t * 1e6 / n, s / n}')
    # The writer's mean group commit: what sets the CPU per put.
    per+=$(echo "$com0 $(commits "${nodes[0]}")" | awk 'NF == 4 && $3 > $1 {printf " batch %.1f", ($4 - $2) / ($3 - $1)}')
  fi
  printf '%-5s %s   [load %s%s]\n' "$sys" "$out" "$(load)" "$per" | tee -a "$work/c$c.txt"
}
fsync_p50() { bench -t fsync -n 500 -dir "$work" | tee -a "$work/fsync.txt" | sed 's/^/      /'; }

# ckw: ckd's --wait 1 and --wait 2 runs, back to back, the one first in
# odd rounds second in even ones: their ratio compares ckd with itself,
# and other systems' runs between them (each leaving the disk and the CPU
# as it left them) only widened its spread (0.81-1.07x round by round,
# when they sat apart).
order=(ckw etcd nats) one=(ckw1 etcd nats)
[ -z "$ckbase" ] || { order+=(base); one+=(base); }
for r in $(seq "$rounds"); do
  echo "== round $r"
  fsync_p50
  for s in "${order[@]}"; do
    if [ "$s" = ckw ]; then
      if [ $((r % 2)) = 1 ]; then run ckw1 16 "$n"; run ckw2 16 "$n"; else run ckw2 16 "$n"; run ckw1 16 "$n"; fi
    else
      run "$s" 16 "$n"
    fi
  done
  for s in "${one[@]}"; do run "$s" 1 "$n1"; done
  fsync_p50
  order=("${order[@]:1}" "${order[0]}") # the next round starts with the next system
done

# ratio FILE A B FIELD: per round, A's FIELD over B's (rounds in order), median
ratio() {
  paste <(grep "^$2 " "$work/$1" | num "$4") <(grep "^$3 " "$work/$1" | num "$4") | awk '$2 > 0 {print $1 / $2}' | median
}
# The fsync p50 beside each 1-client ckd run: the mean of the probes
# before and after the round's runs.
paste <(grep '^ckw1 ' "$work/c1.txt" | num p50) \
  <(grep '^fsync' "$work/fsync.txt" | num p50 | paste - - | awk '{print ($1 + $2) / 2}') |
  awk '$2 > 0 {print $1 / $2}' | median >"$work/fs.ratio"
errors=$(cat "$work/c16.txt" "$work/c1.txt" | num errors | awk '{s += $1} END {print s + 0}')

echo "load average at the end: $(load)"
echo "== ratios (medians of $rounds rounds)"
awk -v ce="$(ratio c16.txt ckw1 etcd ops/s)" -v cn="$(ratio c16.txt ckw1 nats ops/s)" \
  -v w2="$(ratio c16.txt ckw2 ckw1 ops/s)" -v pe="$(ratio c1.txt ckw1 etcd p50)" \
  -v pn="$(ratio c1.txt ckw1 nats p50)" -v pf="$(cat "$work/fs.ratio")" 'BEGIN {
  printf "puts, 16 clients, --wait 1:  ckd/etcd        %.2fx  (target >= 2.5)\n", ce
  printf "puts, 16 clients, --wait 1:  ckd/NATS KV R3  %.2fx  (target >= 1.5)\n", cn
  printf "put p50, 1 client, --wait 1: ckd/etcd        %.2fx  (target <= 0.6)\n", pe
  printf "put p50, 1 client, --wait 1: ckd/NATS KV R3  %.2fx  (target <= 0.6)\n", pn
  printf "put p50, 1 client, --wait 1: ckd/fdatasync   %.2fx  (target <= 3)\n", pf
  printf "puts, 16 clients:            --wait 2/--wait 1 %.2fx (target >= 0.9)\n", w2
}'
# cpu FILE SYSTEM: the median CPU per put of its three ckd nodes
cpu() { grep "^$2 " "$work/$1" | sed -n 's/.*cpu\/put \([0-9.]*\) .*/\1/p' | median; }
printf "ckd CPU per put, all three nodes (median): 16 clients %s µs, 1 client %s µs\n" "$(cpu c16.txt ckw1)" "$(cpu c1.txt ckw1)"
# batch SYSTEM: the median of its writer's mean group commit at 16 clients
batch() { grep "^$1 " "$work/c16.txt" | sed -n 's/.* batch \([0-9.]*\).*/\1/p' | median; }
printf "ckd's writer, mean group commit at 16 clients (median): --wait 1 %s, --wait 2 %s writes\n" "$(batch ckw1)" "$(batch ckw2)"
if [ -n "$ckbase" ]; then
  printf "ckd at %s, CPU per put, all three nodes (median): 16 clients %s µs, 1 client %s µs\n" "$ckbase" "$(cpu c16.txt base)" "$(cpu c1.txt base)"
  printf "ckd at %s, same runs: 16 clients %.2fx etcd, %.2fx NATS; 1-client p50 %.2fx etcd, %.2fx NATS; now/then: 16 clients %.2fx, 1-client p50 %.2fx\n" \
    "$ckbase" "$(ratio c16.txt base etcd ops/s)" "$(ratio c16.txt base nats ops/s)" "$(ratio c1.txt base etcd p50)" \
    "$(ratio c1.txt base nats p50)" "$(ratio c16.txt ckw1 base ops/s)" "$(ratio c1.txt ckw1 base p50)"
fi
[ "$errors" = 0 ] || echo "requests that failed, all runs: $errors"

if [ -n "${CK_PROFILE:-}" ]; then
  echo "== CPU profile of node a, $CK_PROFILE s under 16 clients with --wait 1"
  out=${CK_PROFILE_OUT:-$PWD/ckd-replicated.perf.txt}
  perf_pid=${pid[ck-a]}
  if command -v perf >/dev/null; then
    perf record -F 999 -g -p "$perf_pid" -o "$work/perf.data" -- sleep "$CK_PROFILE" >/dev/null 2>&1 &
    ppid=$!
    run ckw1 16 $((n * 4)) >/dev/null
    wait "$ppid" || true
    { echo "-- self"; perf report -i "$work/perf.data" --no-children --sort dso,symbol -g none --stdio 2>/dev/null | grep '%' | sed -n 1,30p
      echo "-- with callees"; perf report -i "$work/perf.data" --children --sort symbol -g none --stdio 2>/dev/null | grep '%' | sed -n 1,60p
    } | sed 's/ *$//' >"$out" || true
    cat "$out"
  else
    echo "needs perf (apt-get install linux-perf)"
  fi
fi
