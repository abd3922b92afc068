#!/bin/sh
# A service registry from the facts publish-host-facts.sh publishes: one
# line per live host, "NAME CPUS ADDRS". A host whose ckd stopped, is cut
# off, or restarted without publishing again is not listed (its keys are
# ephemeral), with no cleanup job and no leader.
#   live-hosts.sh            every live host
#   live-hosts.sh --watch    print the list again whenever a host's facts change
set -eu

list() {
	ckctl list hosts/ | cut -d/ -f2 | sort -u | while read -r host; do
		cpus=$(ckctl get "hosts/$host/cpus" 2>/dev/null || echo '?')
		addrs=$(ckctl get "hosts/$host/addrs" 2>/dev/null | tr '\n' ' ' || true)
		echo "$host $cpus ${addrs% }"
	done
}

list
if [ "${1:-}" = "--watch" ]; then
	ckctl watch hosts/ | while read -r _; do
		echo "--"
		list
	done
fi
