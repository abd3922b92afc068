#!/usr/bin/env bash
# Restart after kill -9 of one node holding many keys (docs/BENCHMARKS.md,
# "Keys: 1 M and 10 M"): the time from starting ckd until a GET is
# answered, ROUNDS times for each ckd binary given (say the code before
# and after a change), the binaries alternating round by round.
#
#   cmd/ckbench/restart.sh STORE ROUNDS CKD...
#
# STORE is a closed store file (its -wal beside it) to start from, e.g.
# the one BenchmarkRestartCrash fills and keeps
# (CK_RESTART_KEYS=1000000 go test -run X -bench RestartCrash ./store/
# leaves /var/tmp/ck-restart-1000000/store.db). Each binary gets its own
# copy as its node's ckd.db; before each timed start the node was running,
# wrote a key, flushed it (3 s) and was killed with SIGKILL, so the
# restart is a crash's, left by the same binary. A ckd that counts its
# records in the background says how long that took after it served.
# Data goes under CK_WORK
# (default /var/tmp) and is removed at the end.
set -euo pipefail
store=$1 rounds=$2
shift 2
work=$(mktemp -d "${CK_WORK:-/var/tmp}/ck-restart-XXXXXX")
declare -A pid
cleanup() { for p in "${pid[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
export XDG_CONFIG_HOME=$work/xdg
cl="restart-$$-$RANDOM"; port=$((20000 + RANDOM))
printf 'cluster {\n  name = "%s"\n  port = %s\n}\n' "$cl" "$port" >"$work/ckd.hcl"
now() { date +%s.%N; }
api() { curl -s -o /dev/null -w '%{http_code}' --unix-socket "$work/$1.sock" "${@:3}" "http://ckd$2" 2>/dev/null || true; }
launch() { # N BIN
  rm -f "$work/$1.sock"
  "$2" -config "$work/ckd.hcl" -data-dir "$work/$1" -socket "$work/$1.sock" -node-name "n$1" >"$work/$1.log" 2>&1 &
  pid[$1]=$!
}
crash() { # N BIN: running, a key written and flushed, killed
  until [ "$(api "$1" /v1/kv/restart/probe -X PUT --data-binary x)" = 200 ]; do sleep 0.01; done
  sleep 3
  kill -9 "${pid[$1]}"; wait "${pid[$1]}" 2>/dev/null || true; unset "pid[$1]"
}
i=0
for bin in "$@"; do
  mkdir -p "$work/$i"
  cp "$store" "$work/$i/ckd.db"
  cp "$store-wal" "$work/$i/ckd.db-wal"
  launch "$i" "$bin"
  crash "$i" "$bin"
  i=$((i + 1))
done
for r in $(seq "$rounds"); do
  i=0
  for bin in "$@"; do
    load=$(uptime | sed 's/.*load average: //')
    t0=$(now); launch "$i" "$bin"
    until [ "$(api "$i" /v1/kv/restart/probe)" = 200 ]; do sleep 0.005; done
    t=$(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.3f", b - a }')
    crash "$i" "$bin"
    counted=$(grep -o 'digest and keys counted.*' "$work/$i.log" | sed 's/.*took=/; counted in the background in /' || true)
    echo "round $r $bin: serves after $t s$counted (load $load)"
    i=$((i + 1))
  done
done
