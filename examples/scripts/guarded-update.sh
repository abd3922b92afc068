#!/bin/sh
# Read-modify-write without losing a concurrent update on this node:
# increment the integer at KEY with compare-and-set, retrying on conflict.
#   guarded-update.sh counters/deploys
#
# Compare-and-set is exact on ONE node only. --if-version compares with the
# version this node holds; two clients on two nodes can both read version 7
# and both succeed, and when their writes meet one of them is lost (the
# cluster keeps one value). It is not a distributed lock. For a count that
# is exact on every node, use counter.sh with hooks/pn_counter.lua, which
# merges concurrent updates instead of picking one. Safe to run in
# parallel: nothing is written to the current directory.
set -eu
key=$1
ver=$(mktemp)
trap 'rm -f "$ver"' EXIT
tries=0
while :; do
  tries=$((tries + 1))
  # get -v prints the value on stdout and its version on stderr (a line
  # "version N"; other stderr lines are warnings).
  if cur=$(ckctl get -v "$key" 2>"$ver"); then
    version=$(sed -n 's/^version \([0-9][0-9]*\)$/\1/p' "$ver")
  else
    rc=$?
    [ "$rc" -eq 3 ] || exit "$rc"
    cur=0 version=0   # absent: create it, but only if still absent
  fi
  next=$((cur + 1))
  if ckctl set "$key" "$next" --if-version "$version" 2>/dev/null; then
    echo "$key = $next"
    exit 0
  else
    rc=$?
    [ "$rc" -eq 4 ] || exit "$rc"   # 4: someone else wrote first; retry
  fi
  [ "$tries" -lt 20 ] || { echo "guarded-update: gave up after $tries tries" >&2; exit 1; }
done
