#!/bin/sh
# Read-modify-write without losing a concurrent update on this node:
# increment the integer at KEY with compare-and-set, retrying on conflict.
#   guarded-update.sh counters/deploys
# (Across nodes, racing writes become a detected conflict resolved by the
# cluster; --if-version is not a distributed lock.)
set -eu
key=$1
tries=0
while :; do
  tries=$((tries + 1))
  # get -v prints the value on stdout and its version on stderr (a line
  # of digits; other stderr lines are warnings).
  if cur=$(ckctl get -v "$key" 2>ver); then
    version=$(grep -E '^[0-9]+$' ver)
  else
    rc=$?
    [ "$rc" -eq 3 ] || exit "$rc"
    cur=0 version=0   # absent: create it, but only if still absent
  fi
  rm -f ver
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
