#!/usr/bin/env bash
# The history target measured side by side: does a network that signed 100,000 times sign one
# at a time as fast as a fresh one? This machine's speed can move by 2x within an hour, so the
# two are not compared minutes apart: both networks run at once, and sequential runs alternate
# between them.
#
#   scripts/used-vs-fresh.sh [PAIRS] [BURST]     (default: 6 pairs, a burst of 100,000)
#
# 1. A 5-node localnet signs BURST secp256k1 signatures with 32 in flight (the "used" network).
# 2. A second, fresh 5-node localnet comes up beside it.
# 3. PAIRS times: 1,000 sequential signatures on the used network, then 1,000 on the fresh one.
# Each line is permafrost-load's (p50, p99, ..., CPU ms/sig); compare the pairs' p50s. The idle
# network costs the other little CPU. Binaries: target/release (build with
# `cargo build --release -p permafrost-cli -p permafrost-benches --bins`), or BIN=DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-6}
burst=${2:-100000}
bin=${BIN:-target/release}
for binary in permafrost permafrost-load; do
  [ -x "$bin/$binary" ] || { echo "used-vs-fresh: $bin/$binary is missing" >&2; exit 1; }
done
work=$(mktemp -d)
pids=()
stop() {
  for pid in "${pids[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
  wait || true
  rm -rf "$work"
}
trap stop EXIT

up() { # DIR: starts a localnet there and waits for it
  "$bin/permafrost" localnet up --nodes 5 --dir "$1" --api-port 0 >"$1.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 1 600); do
    [ -f "$1/localnet.json" ] && return 0
    sleep 0.2
  done
  echo "used-vs-fresh: the localnet in $1 did not come up (see $1.log)" >&2
  exit 1
}
load() { # DIR ARGS...
  "$bin/permafrost-load" --localnet "$1" --in-process 4 --threshold 3 --curve secp256k1 "${@:2}" \
    | grep '^secp256k1 '
}

up "$work/used"
echo "burst: $(load "$work/used" --requests "$burst" --concurrency 32)"
up "$work/fresh"
for i in $(seq 1 "$pairs"); do
  echo "pair $i used:  $(load "$work/used" --requests 1000)"
  echo "pair $i fresh: $(load "$work/fresh" --requests 1000)"
done
