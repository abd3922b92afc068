#!/bin/sh
# Count something across the cluster: add DELTA (default +1) to the counter
# at KEY and print the count as this node sees it. Needs
# examples/hooks/pn_counter.lua attached to the key's pattern:
#
#   hook "counters/*" {
#     script = "hooks/pn_counter.lua"
#   }
#
#   counter.sh counters/deploys        # +1
#   counter.sh counters/queue -3
#
# Every increment counts exactly once, on every node, however many run at
# once and on whichever nodes: each node adds only to its own part of the
# value, and concurrent versions merge by keeping each node's largest part.
# Compare that with guarded-update.sh (compare-and-set), which is exact on
# one node only. Safe to run in parallel: nothing is written to the current
# directory.
set -eu
key=$1
delta=${2:-+1}
case $delta in
  [+-][0-9]*) ;;
  *) echo "usage: counter.sh KEY [+N|-N]" >&2; exit 2 ;;
esac
err=$(mktemp)
trap 'rm -f "$err"' EXIT

tries=0
# "--" ends ckctl's flags: a decrement such as -3 is a value, not a flag.
until ckctl set -- "$key" "$delta" 2>"$err"; do
  rc=$?
  tries=$((tries + 1))
  # 4: the key changed under the hook again and again (heavy contention on
  # this node): try again. Anything else is an answer.
  if [ "$rc" -ne 4 ] || [ "$tries" -ge 10 ]; then
    cat "$err" >&2
    exit "$rc"
  fi
done
count=$(ckctl get "$key")
case $count in
  ''|*[!0-9-]*)
    echo "counter.sh: $key holds \"$count\", not a count: attach examples/hooks/pn_counter.lua to it" >&2
    exit 1 ;;
esac
echo "$count"
