#!/bin/sh
# Block until KEY exists (and, with VALUE, holds it), then print its value.
# For start-up ordering: `wait-for-key.sh services/db/ready yes && start-app`.
#   wait-for-key.sh KEY [VALUE] [TIMEOUT_SECONDS]
set -eu
key=$1
want=${2:-}
timeout=${3:-60}

check() {
  # Exit status 3 means "no such key": keep waiting. (A node that is still
  # joining asks its peers for a key it lacks, so exit 3 is never just
  # "not pulled yet".) Other failures are real: show ckctl's message and
  # stop.
  if value=$(ckctl get "$key" 2>/dev/null); then
    [ -z "$want" ] || [ "$value" = "$want" ]
  else
    rc=$?
    [ "$rc" -eq 3 ] || { ckctl get "$key" >/dev/null; exit "$rc"; }
    return 1
  fi
}

deadline=$(( $(date +%s) + timeout ))
while :; do
  if check; then printf '%s\n' "$value"; exit 0; fi
  if [ "$(date +%s)" -ge "$deadline" ]; then
    echo "wait-for-key: $key not ready after ${timeout}s" >&2
    exit 1
  fi
  # Sleep until something under the key changes, or a second passes (which
  # also covers a change that landed between the check and the watch).
  timeout 1 ckctl watch "$key" | head -n 1 >/dev/null || true
done
