#!/bin/sh
# Publish this host's facts under hosts/<name>/ so every node can read them:
#   ckctl list hosts/ --values      (or live-hosts.sh)
# The facts are ephemeral keys of the local ckd: they vanish from every node
# when this host's ckd stops, is cut off for dead_after, or restarts, and
# come back by themselves after a partition heals. Run it when ckd starts
# (ExecStartPost=, or a systemd timer for the facts that change).
# Exits non-zero if ckd refused a write.
set -eu
name=${1:-$(hostname)}
prefix="hosts/$name"

ckctl set --ephemeral "$prefix/kernel" "$(uname -r)"
ckctl set --ephemeral "$prefix/cpus" "$(getconf _NPROCESSORS_ONLN)"
ckctl set --ephemeral "$prefix/uptime" "$(cut -d' ' -f1 /proc/uptime)"
ckctl set --ephemeral "$prefix/seen" "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
# The address list can be empty on a bare container; empty values are fine.
ip -o -4 addr show 2>/dev/null | awk '{print $4}' | ckctl set --ephemeral "$prefix/addrs" -
echo "published $(ckctl list "$prefix/" | wc -l) facts under $prefix/"
