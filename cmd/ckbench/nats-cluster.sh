#!/usr/bin/env bash
# Replication latency over the nats cluster transport beside UDP, in one
# run on this host: two ckd nodes on transport = "nats" (through a local
# nats-server) and two on lo multicast, both with a cluster key; a set on
# one node -> durable on the other, for a value that fits a datagram
# (UPDATE) and one that does not (ANNOUNCE, then a fetch over a stream).
# Rounds alternate between the transports so that both see the same load.
#
#   cmd/ckbench/nats-cluster.sh [REQUESTS [ROUNDS]]   (defaults 2000, 2)
#
# nats-server is built from the module cache (it is in go.mod for the
# tests), or taken from $NATS_SERVER.
set -euo pipefail
n=${1:-2000}
rounds=${2:-2}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /var/tmp/ck-nats-cluster-XXXXXX)
declare -A pid
cleanup() { for p in "${pid[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
(cd "$root" && go build -o "$work/bin/" ./cmd/ckd ./cmd/ckctl ./cmd/ckbench)
nats_server=${NATS_SERVER:-}
if [ -z "$nats_server" ]; then
  (cd "$root" && go build -o "$work/bin/nats-server" github.com/nats-io/nats-server/v2)
  nats_server="$work/bin/nats-server"
fi

nport=$((20000 + RANDOM))
"$nats_server" -a 127.0.0.1 -p "$nport" >"$work/nats-server.log" 2>&1 &
pid[nats]=$!
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$nport") 2>/dev/null && break; sleep 0.05; done

key=$("$work/bin/ckctl" keygen)
start() { # NAME CONFIG: start ckd and wait for its socket
  printf '%s\n' "$2" >"$work/$1.hcl"
  "$work/bin/ckd" -config "$work/$1.hcl" -data-dir "$work/$1" -socket "$work/$1.sock" -node-name "$1" >>"$work/$1.log" 2>&1 &
  pid[$1]=$!
  for _ in $(seq 100); do [ -S "$work/$1.sock" ] && break; sleep 0.05; done
}
ncl="bench-nats-$$-$RANDOM"
natscfg=$(printf 'cluster {\n  name = "%s"\n  transport = "nats"\n  encrypt = "%s"\n}\nnats {\n  url = "nats://127.0.0.1:%s"\n  publish = "off"\n}' "$ncl" "$key" "$nport")
ucl="bench-udp-$$-$RANDOM"
udpcfg=$(printf 'cluster {\n  name = "%s"\n  port = %s\n  encrypt = "%s"\n}' "$ucl" $((20000 + RANDOM)) "$key")
start n1 "$natscfg"; start n2 "$natscfg"
start u1 "$udpcfg"; start u2 "$udpcfg"
sleep 3 # a few heartbeats: everyone alive
for s in n1 u1; do CK_SOCKET="$work/$s.sock" "$work/bin/ckctl" status | grep -E '^(transport|address|members):' | tr '\n' ' '; echo; done

uptime | sed 's/.*load/load/'
for round in $(seq "$rounds"); do
  echo "== round $round"
  for d in 256 8000; do
    printf 'udp  %5d B  ' "$d"; "$work/bin/ckbench" -socket "$work/u1.sock" -peer "$work/u2.sock" -n "$n" -d "$d" -t repl
    printf 'nats %5d B  ' "$d"; "$work/bin/ckbench" -socket "$work/n1.sock" -peer "$work/n2.sock" -n "$n" -d "$d" -t repl
  done
done
uptime | sed 's/.*load/load/'
curl -s --unix-socket "$work/n2.sock" http://ckd/v1/metrics | grep -E '^ck_(streams_total|datagrams_dropped_total\{reason="(send_buffer|queue_full)")' || true
