#!/usr/bin/env bash
# The one test command: sets up everything the suite needs on a fresh machine (installs,
# starts services idempotently), then runs the whole suite. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."

eval "$(bash scripts/services.sh)"

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "== fuzz smoke (every provider adapter, a few seconds each)"
bash scripts/fuzz-smoke.sh
echo "== cargo test"
# Benches are compiled (not run) by clippy --all-targets above, so they cannot rot.
cargo test --no-fail-fast
