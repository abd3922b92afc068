#!/usr/bin/env bash
# Hook overhead in one run: durable sets (16 clients, 256-byte JSON values)
# against a ckd whose keys pass through examples/hooks/json_validate.lua,
# and against one without hooks.
#
#   cmd/ckbench/hooks.sh [REQUESTS]
set -euo pipefail
n=${1:-50000}
root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d /var/tmp/ck-hooks-XXXXXX)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
(cd "$root" && go build -o "$work/bin/" ./cmd/ckd ./cmd/ckbench)

start() { # NAME [HOOK-BLOCK]
  printf 'cluster {\n  name = "hooks-%s-%s"\n  port = %s\n}\n%s\n' "$1" "$$" $((20000 + RANDOM)) "${2:-}" >"$work/$1.hcl"
  "$work/bin/ckd" -config "$work/$1.hcl" -data-dir "$work/$1" -socket "$work/$1.sock" -node-name "$1" >"$work/$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do [ -S "$work/$1.sock" ] && break; sleep 0.05; done
}
start plain
start hooked "hook \"bench/*\" {
  script = \"$root/examples/hooks/json_validate.lua\"
}"
# ckbench's values are letters: JSON only when quoted. -json-values makes
# them a JSON document of the requested size.
for s in plain hooked plain hooked; do
  printf '%-7s' "$s"
  "$work/bin/ckbench" -socket "$work/$s.sock" -c 16 -n "$n" -d 256 -json-values -t set
done
