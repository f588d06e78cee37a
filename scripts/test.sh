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
mkdir -p target
status=0
echo "== container image (podman; scripts/image.sh)"
# Makes the base images once, then builds the unchanged Dockerfile (incremental: cache
# mounts). tests/container.rs runs the result; when the build fails those tests fail too,
# and so does the suite.
if image_env=$(bash scripts/image.sh); then
  eval "$image_env"
else
  status=1
  echo "scripts/image.sh failed: the container tests will fail"
fi
echo "== cargo test"
# Benches are compiled (not run) by clippy --all-targets above, so they cannot rot.
cargo test --no-fail-fast 2>&1 | tee target/test-output.log || status=$?
echo "== the behavioural server tests again, on the Kafka log engine"
# The same tests against the other engine: every server they start runs with
# log.engine = "kafka" on the broker services.sh started (see tests/common).
SWITCHYARD_TEST_ENGINE=kafka cargo test --no-fail-fast \
  --test api_core --test api_conventions --test delivery_server --test webhook_apis \
  --test provider_http --test websocket_listeners --test broker_server --test metrics \
  --test delivery_ordering --test cli --test subscription_policy --test subscription_filters \
  --test delivery_lookup --test console --test operational_events --test openapi_contract \
  2>&1 | tee -a target/test-output.log || status=$?
# One closing line for the whole suite, summed over every test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "suite: %d passed, %d failed\n", p, f }' target/test-output.log
exit "$status"
