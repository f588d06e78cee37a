#!/usr/bin/env bash
# Short fuzz run of every provider adapter (a few seconds each), for the test script.
#
#   scripts/fuzz-smoke.sh            # FUZZ_SECONDS per target (default 5)
#   FUZZ_SECONDS=600 scripts/fuzz-smoke.sh   # the longer run (10 min per target)
#
# Uses cargo-fuzz (libFuzzer, needs a nightly toolchain: `rustup toolchain install nightly`,
# `cargo +nightly install cargo-fuzz --locked`) with the fixtures as seed corpus. Where
# either is missing it falls back to the proptest stand-in (tests/provider_fuzz.rs) with
# many more cases. Exits non-zero on any crash.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-5}"
targets=(evolution whapi meta linq)

if rustup toolchain list 2>/dev/null | grep -q '^nightly' && cargo +nightly fuzz --version >/dev/null 2>&1; then
    # Its own target dir: sanitizer-instrumented artifacts never mix with the main build's.
    export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-target}/fuzz}"
    for t in "${targets[@]}"; do
        corpus="fuzz/corpus/$t"
        mkdir -p "$corpus"
        cp tests/fixtures/providers/"$t"/*.json "$corpus"/
        echo "fuzz-smoke: $t for ${seconds}s (cargo-fuzz)"
        log="$CARGO_TARGET_DIR/fuzz-$t.log"
        mkdir -p "$CARGO_TARGET_DIR"
        status=0
        cargo +nightly fuzz run -O "$t" "$corpus" -- \
            -max_total_time="$seconds" -max_len=16384 -print_final_stats=0 >"$log" 2>&1 || status=$?
        grep -E '^(Done|==|SUMMARY|thread .* panicked|error)' "$log" || true
        # A build failure or a crash both fail the run; libFuzzer also leaves crash-*/leak-*/
        # timeout-* artifacts behind on a finding.
        if [ "$status" -ne 0 ] || compgen -G "fuzz/artifacts/$t/*" >/dev/null; then
            echo "fuzz-smoke: $t failed (exit $status); see $log and fuzz/artifacts/$t" >&2
            exit 1
        fi
    done
    echo "fuzz-smoke: ${#targets[@]} passed, 0 failed"
else
    echo "fuzz-smoke: nightly or cargo-fuzz missing; running the proptest stand-in"
    PROPTEST_CASES="$((seconds * 2000))" cargo test --test provider_fuzz
fi
