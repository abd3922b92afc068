#!/bin/sh
# Publish this host's facts under hosts/<name>/ so every node can read them:
#   ckctl list hosts/ --values
# Run it from cron or a systemd timer. Exits non-zero if ckd refused a write.
set -eu
name=${1:-$(hostname)}
prefix="hosts/$name"

ckctl set "$prefix/kernel" "$(uname -r)"
ckctl set "$prefix/cpus" "$(getconf _NPROCESSORS_ONLN)"
ckctl set "$prefix/uptime" "$(cut -d' ' -f1 /proc/uptime)"
ckctl set "$prefix/seen" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
# The address list can be empty on a bare container; empty values are fine.
ip -o -4 addr show 2>/dev/null | awk '{print $4}' | ckctl set "$prefix/addrs" -
echo "published $(ckctl list "$prefix/" | wc -l) facts under $prefix/"
