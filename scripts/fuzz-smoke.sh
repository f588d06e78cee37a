#!/usr/bin/env bash
# Short fuzz run of every provider adapter and of the JSON-to-record path (`record`: a body
# the ingest limits accept must read back as a stored record), a few seconds each.
#
#   scripts/fuzz-smoke.sh            # FUZZ_SECONDS per target (default 5)
#   FUZZ_SECONDS=600 scripts/fuzz-smoke.sh   # the longer run (10 min per target)
#
# Uses cargo-fuzz (libFuzzer, needs a nightly toolchain: `rustup toolchain install nightly`,
# `cargo +nightly install cargo-fuzz --locked`) with the fixtures as seed corpus. Where
# either is missing it falls back to the proptest stand-in (tests/provider_fuzz.rs) with
# many more cases. Exits non-zero on any crash.
#
# Without nightly, the stable toolchain runs cargo-fuzz too when told it may use unstable
# flags (the long run of `record` in the notes was made so):
#   RUSTC_BOOTSTRAP=1 CARGO_TARGET_DIR=target/fuzz cargo fuzz run -O record fuzz/corpus/record \
#     -- -max_total_time=1500 -max_len=65536
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${FUZZ_SECONDS:-5}"
targets=(evolution whapi meta linq record)

if rustup toolchain list 2>/dev/null | grep -q '^nightly' && cargo +nightly fuzz --version >/dev/null 2>&1; then
    # Its own target dir: sanitizer-instrumented artifacts never mix with the main build's.
    export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-target}/fuzz}"
    for t in "${targets[@]}"; do
        corpus="fuzz/corpus/$t"
        mkdir -p "$corpus"
        # `record` takes any body: every provider's fixtures seed it.
        case "$t" in
            record)
                for f in tests/fixtures/providers/*/*.json; do
                    p="${f#tests/fixtures/providers/}"
                    cp "$f" "$corpus/${p%%/*}-${p#*/}"
                done ;;
            *) cp tests/fixtures/providers/"$t"/*.json "$corpus"/ ;;
        esac
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
