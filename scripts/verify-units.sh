#!/usr/bin/env bash
# Checks the systemd units in configs/systemd against the real binaries:
#   `systemd-analyze verify` must print nothing about them (it checks every directive, and that
#   ExecStart's binary exists and is executable, so the units' /usr/local/bin paths are
#   rewritten, in a temporary copy, to the binaries of this build), and
#   `systemd-analyze security --offline` must rate each unit's exposure at most MAX_EXPOSURE
#   (printed; docs/OPERATIONS.md quotes it).
#
# Usage: scripts/verify-units.sh [BIN_DIR]
#   BIN_DIR holds permafrost-node and permafrost-coordinator (default: build them in debug).
set -euo pipefail
cd "$(dirname "$0")/.."

MAX_EXPOSURE=${MAX_EXPOSURE:-1.5}

if ! command -v systemd-analyze >/dev/null; then
  echo "systemd-analyze is missing (Debian: apt-get install systemd)" >&2
  exit 1
fi

bin_dir=${1:-}
if [ -z "$bin_dir" ]; then
  cargo build --locked -p permafrost-node -p permafrost-coordinator
  bin_dir=${CARGO_TARGET_DIR:-target}/debug
fi
bin_dir=$(cd "$bin_dir" && pwd)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

units=(configs/systemd/*.service)
for unit in "${units[@]}"; do
  name=$(basename "$unit")
  binary=$(sed -n 's#^ExecStart=/usr/local/bin/\([^ ]*\).*#\1#p' "$unit")
  if [ -z "$binary" ] || [ ! -x "$bin_dir/$binary" ]; then
    echo "$unit: ExecStart must run /usr/local/bin/<a binary in $bin_dir> (found '${binary}')" >&2
    exit 1
  fi
  sed "s#^ExecStart=/usr/local/bin/#ExecStart=$bin_dir/#" "$unit" >"$tmp/$name"
done

status=0
verify=$(systemd-analyze verify --man=no "$tmp"/*.service 2>&1) || status=$?
# Only what concerns our units counts (systemd may also talk about units of the host).
ours=$(printf '%s\n' "$verify" | grep -F "$tmp/" || true)
if [ "$status" -ne 0 ] || [ -n "$ours" ]; then
  echo "systemd-analyze verify failed (status $status):" >&2
  printf '%s\n' "$verify" >&2
  exit 1
fi
echo "systemd-analyze verify: ${#units[@]} units, no warnings"

for unit in "$tmp"/*.service; do
  name=$(basename "$unit")
  report=$(systemd-analyze security --offline=yes --no-pager "$unit" 2>&1) || {
    printf '%s\n' "$report" >&2
    echo "systemd-analyze security failed on $name" >&2
    exit 1
  }
  exposure=$(printf '%s\n' "$report" | sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p')
  if [ -z "$exposure" ]; then
    printf '%s\n' "$report" >&2
    echo "$name: no exposure level in the report" >&2
    exit 1
  fi
  echo "$name: exposure $exposure (at most $MAX_EXPOSURE)"
  if ! awk -v e="$exposure" -v m="$MAX_EXPOSURE" 'BEGIN { exit !(e <= m) }'; then
    printf '%s\n' "$report" | grep '✗' >&2 || true
    echo "$name: exposure $exposure is above $MAX_EXPOSURE" >&2
    exit 1
  fi
done
