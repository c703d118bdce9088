#!/usr/bin/env bash
# Runs every fuzz target in fuzz/ (coverage-guided libFuzzer through cargo-fuzz, on the stable
# toolchain, without a sanitizer) for a bounded time each, and exits non-zero if any target
# crashes (panic, abort, out-of-memory, timeout). See docs/FUZZING.md.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]     (default: 60 s, every target)
#
# A crash's reproducer is written to fuzz/artifacts/<target>/ and the end of the target's log
# (the panic message and stack trace) is printed. Inputs found to add coverage accumulate in
# fuzz/corpus/<target>/ (not committed); the committed seeds are in fuzz/seeds/<target>/.
# Environment: FUZZ_ARGS adds libFuzzer flags to every run (e.g. FUZZ_ARGS=-seed=1 to fix the
# mutation seed). CARGO_INSTALL_ROOT, if set, is where cargo-fuzz is installed when missing.
#
# Timing: the summary ends with the wall time of the install, the build and the runs, so CI's
# cost of this step is visible in its log.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
script_start=$SECONDS
install_time=0

CARGO_FUZZ_VERSION=0.13.2
seconds=${1:-60}
shift || true
case "$seconds" in
  '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  echo "cargo-fuzz not found: installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
  start=$SECONDS
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
  install_time=$((SECONDS - start))
  echo "installed cargo-fuzz in $install_time s"
  # Where `cargo install` put it, in case that is not on PATH yet (fresh CI machine).
  export PATH="${CARGO_INSTALL_ROOT:-${CARGO_HOME:-$HOME/.cargo}}/bin:$PATH"
fi
cargo fuzz --version
case "$(cargo fuzz --version)" in
  *" $CARGO_FUZZ_VERSION") ;;
  *) echo "warning: this script is tested with cargo-fuzz $CARGO_FUZZ_VERSION" >&2 ;;
esac

# `cargo fuzz build` has no --locked: check first that fuzz/Cargo.lock agrees with the
# manifests (this workspace's and the crates it uses), so the build cannot rewrite it.
if ! cargo fetch --locked --quiet; then
  echo "fuzz/Cargo.lock is out of date with the crates it builds: run" >&2
  echo "  (cd fuzz && cargo update --workspace)  and commit fuzz/Cargo.lock" >&2
  exit 1
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

# One build for every target: release with debug assertions and overflow checks (-a), no
# sanitizer (-s none: the sanitizers need a nightly compiler; coverage instrumentation does not).
build=(-s none -a)
start=$SECONDS
cargo fuzz build "${build[@]}"
build_time=$((SECONDS - start))
echo "built ${#targets[@]} fuzz targets in $build_time s"
run_start=$SECONDS

# Per-target libFuzzer flags. wire_decode goes past the 4 and 16 KiB caps of the small kinds.
max_len() {
  case "$1" in
    wire_decode) echo 20480 ;;
    *) echo 4096 ;;
  esac
}

# Panics print their stack trace; cargo-fuzz's own error does not.
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}" RUST_LIB_BACKTRACE=0

logs=target/fuzz-logs
mkdir -p "$logs"
failed=()
summary=()
for target in "${targets[@]}"; do
  mkdir -p "corpus/$target" "artifacts/$target"
  seeds=()
  [ -d "seeds/$target" ] && seeds=("seeds/$target")
  log="$logs/$target.log"
  echo
  echo "--- fuzzing $target for ${seconds}s"
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
  if cargo fuzz run "${build[@]}" "$target" "corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len="$(max_len "$target")" \
    -print_final_stats=1 ${FUZZ_ARGS:-} \
    >"$log" 2>&1; then
    status=ok
  else
    status=CRASH
    failed+=("$target")
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  corpus=$(find "corpus/$target" -type f | wc -l)
  line="$target: $status, ${runs:-?} execs, ${rate:-?} exec/s, cov ${cov:-?}, corpus $corpus"
  summary+=("$line")
  echo "$line"
  if [ "$status" != ok ]; then
    echo "--- $log, from the crash on:"
    if grep -qE 'panicked at|ERROR: libFuzzer' "$log"; then
      sed -n '/panicked at\|ERROR: libFuzzer/,$p' "$log" | head -n 150
    else
      tail -n 80 "$log"
    fi
    echo "--- reproducer(s):"
    ls -l "artifacts/$target"
    echo "--- reproduce with: (cd fuzz && cargo fuzz run ${build[*]} $target artifacts/$target/<file>)"
  fi
done

echo
echo "=== fuzz summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
echo "wall time: $((SECONDS - script_start)) s in all (install ${install_time} s, build ${build_time} s, runs $((SECONDS - run_start)) s)"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "crashed: ${failed[*]}" >&2
  exit 1
fi
echo "no crashes"
