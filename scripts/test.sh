#!/usr/bin/env bash
# The test command: every test in the workspace (unit, integration, property, doc), plus
# each criterion benchmark run once in test mode so the benches cannot rot.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --all-targets --locked
cargo test --workspace --doc --locked
