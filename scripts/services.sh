#!/usr/bin/env bash
# Installs (if missing) and starts (if not running) the services the test suite talks to.
# Idempotent: safe to run again and again. Prints the env the tests read.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[services] %s\n' "$*" >&2; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # port seconds name
  for _ in $(seq 1 $(( $2 * 10 ))); do port_open "$1" && return 0; sleep 0.1; done
  log "$3 did not open port $1 within $2 s"; return 1
}

# shellcheck source=scripts/apt.sh
. scripts/apt.sh  # the working directory is the repository root (cd above)

# RabbitMQ on 127.0.0.1:5672, guest/guest.
ensure_rabbitmq() {
  if port_open 5672; then return 0; fi
  apt_install rabbitmq-server
  log "starting rabbitmq"
  RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 rabbitmq-server -detached >/dev/null 2>&1 || true
  rabbitmqctl await_startup >/dev/null 2>&1 || true
  wait_port 5672 60 rabbitmq
}

# A Python virtualenv with the third-party clients tests verify against.
MOTO_VERSION=5.2.5
SCHEMATHESIS_VERSION=4.32.5
ensure_venv() {
  apt_install python3-venv >/dev/null 2>&1 || true
  # pip, not python: a venv made while python3-venv was missing has python and no pip.
  if [ ! -x .venv/bin/pip ]; then
    log "creating .venv"
    python3 -m venv --clear .venv
  fi
  # standardwebhooks: a third-party signature verifier; moto[server]: the SQS server (and
  # PyYAML); prometheus-client: its text parser reads /metrics; kubernetes-validate: the
  # Kubernetes JSON schemas, shipped in the package, so deploy/ validates offline; pusher:
  # the official Pusher Channels library, whose request signatures the Pusher sink matches;
  # nats-py: the NATS consumer of the NATS sink's tests (tests/nats/client.py).
  # moto is pinned: scripts/moto_server.py replaces a few of its internals (by name).
  if ! .venv/bin/python -c 'import standardwebhooks, moto, yaml, prometheus_client, kubernetes_validate, pusher, nats' >/dev/null 2>&1; then
    log "installing standardwebhooks, moto[server], prometheus-client, kubernetes-validate, pusher, nats-py into .venv"
    .venv/bin/pip install -q --disable-pip-version-check standardwebhooks "moto[server]==$MOTO_VERSION" \
      pyyaml prometheus-client kubernetes-validate pusher nats-py
  elif [ "$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("moto"))')" != "$MOTO_VERSION" ]; then
    log "installing moto[server]==$MOTO_VERSION into .venv"
    .venv/bin/pip install -q --disable-pip-version-check "moto[server]==$MOTO_VERSION"
  fi
  # schemathesis: fuzzes the live server against its own /openapi.json
  # (tests/openapi_contract.rs); pinned, since its checks and CLI change between releases.
  if [ "$(.venv/bin/python -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null)" != "$SCHEMATHESIS_VERSION" ]; then
    log "installing schemathesis==$SCHEMATHESIS_VERSION into .venv"
    .venv/bin/pip install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
  fi
}

# docker-compose 1.29 (Debian) parses docker-compose.yml; no engine is needed for that.
ensure_compose() {
  command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
}

# moto (SQS-compatible) on 127.0.0.1:$SQS_PORT, run by scripts/moto_server.py: moto's own
# server without its per-message queue scans (see that file), so the 10,000-event SQS tests
# take seconds, not minutes.
SQS_PORT="${SWITCHYARD_TEST_SQS_PORT:-4576}"
# The command line of the process listening on $1, empty when unknown.
listener_cmdline() {
  command -v ss >/dev/null 2>&1 || return 0
  local pid
  pid=$(ss -ltnpH "sport = :$1" 2>/dev/null | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n 1)
  [ -n "$pid" ] && tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null && echo " pid=$pid"
  return 0
}
ensure_moto() {
  if port_open "$SQS_PORT"; then
    local running
    running=$(listener_cmdline "$SQS_PORT")
    case "$running" in
      *scripts/moto_server.py*|"") ;;
      *bin/moto_server*)
        # A plain moto_server (started by an older version of this script): replace it.
        log "replacing plain moto_server on $SQS_PORT with scripts/moto_server.py"
        kill "${running##*pid=}" 2>/dev/null || true
        for _ in $(seq 1 100); do port_open "$SQS_PORT" || break; sleep 0.1; done ;;
      *) log "port $SQS_PORT is taken by something else: $running" ;;
    esac
  fi
  if port_open "$SQS_PORT"; then
    # moto keeps every queue and message in memory: start each suite from an empty server.
    .venv/bin/python -c "import urllib.request as u; u.urlopen(u.Request('http://127.0.0.1:$SQS_PORT/moto-api/reset', method='POST'), timeout=10)" \
      || log "resetting moto failed"
    return 0
  fi
  log "starting moto on $SQS_PORT"
  mkdir -p target
  nohup .venv/bin/python scripts/moto_server.py -H 127.0.0.1 -p "$SQS_PORT" >target/moto.log 2>&1 &
  wait_port "$SQS_PORT" 30 moto
}

# Tansu (a Kafka-protocol broker in Rust) on 127.0.0.1:$KAFKA_PORT, in memory. It never
# auto-creates topics: the sink creates them (kafka.auto_create_topics) and tests do too.
# Tansu 0.6.0 as published, plus one patch (scripts/tansu/): its group coordinator expired
# a dead member without a new generation, so a SIGKILLed process's partitions could stay
# unassigned. Built once (10 to 20 minutes) outside the checkout, so clean clones reuse it.
KAFKA_PORT="${SWITCHYARD_TEST_KAFKA_PORT:-19092}"
TANSU_VERSION=0.6.0
TANSU_SHA256=4fdd85473ec265140488cf8d55e82b844f5c051c8916fabdd4a71156ac053f6d
TANSU_BROKER_SHA256=93c1e91b40c2a706dfdbe9a795c08c70918c874ad23f6e0e87564cc0a180e720
TANSU_PATCH=scripts/tansu/expire-members-with-a-new-generation.patch
TANSU_HOME="${XDG_CACHE_HOME:-$HOME/.cache}/switchyard/tansu-$TANSU_VERSION-$(sha256sum "$TANSU_PATCH" | cut -c1-12)"
TANSU_BIN="$TANSU_HOME/bin/tansu"
build_tansu() {
  [ -x "$TANSU_BIN" ] && return 0
  log "building tansu $TANSU_VERSION with $TANSU_PATCH (10 to 20 minutes, once)"
  local src="$TANSU_HOME/src" patch crate sum
  patch="$(pwd)/$TANSU_PATCH"
  rm -rf "$src" && mkdir -p "$src"
  for crate in "tansu:$TANSU_SHA256" "tansu-broker:$TANSU_BROKER_SHA256"; do
    sum="${crate#*:}" crate="${crate%%:*}"
    curl -sSfL "https://static.crates.io/crates/$crate/$crate-$TANSU_VERSION.crate" -o "$src/$crate.crate"
    echo "$sum  $src/$crate.crate" | sha256sum -c --quiet - >&2
    tar xzf "$src/$crate.crate" -C "$src"
  done
  (cd "$src/tansu-broker-$TANSU_VERSION" && git apply "$patch")
  printf '\n[patch.crates-io]\ntansu-broker = { path = "../tansu-broker-%s" }\n' "$TANSU_VERSION" \
    >>"$src/tansu-$TANSU_VERSION/Cargo.toml"
  # The crate's own Cargo.lock pins every dependency; only tansu-broker's source changes.
  CARGO_TARGET_DIR="$src/target" cargo build --release --quiet --features dynostore \
    --manifest-path "$src/tansu-$TANSU_VERSION/Cargo.toml" >&2
  mkdir -p "$TANSU_HOME/bin"
  cp "$src/target/release/tansu" "$TANSU_BIN.tmp" && mv "$TANSU_BIN.tmp" "$TANSU_BIN"
  rm -rf "$src"
}
ensure_tansu() {
  if port_open "$KAFKA_PORT"; then
    local running
    running=$(listener_cmdline "$KAFKA_PORT")
    case "$running" in
      "$TANSU_BIN "*|"") return 0 ;;
      *tansu*)
        # The published build, started by an older version of this script: replace it.
        build_tansu
        log "replacing the tansu on $KAFKA_PORT with $TANSU_BIN"
        kill "${running##*pid=}" 2>/dev/null || true
        for _ in $(seq 1 100); do port_open "$KAFKA_PORT" || break; sleep 0.1; done ;;
      *) log "port $KAFKA_PORT is taken by something else: $running"; return 1 ;;
    esac
  fi
  build_tansu
  log "starting tansu on $KAFKA_PORT"
  mkdir -p target
  nohup "$TANSU_BIN" broker \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/ >target/tansu.log 2>&1 &
  wait_port "$KAFKA_PORT" 30 tansu
}

# NATS with JetStream on 127.0.0.1:4222 (Debian's nats-server), run by scripts/nats-server.sh,
# which the NATS outage test also uses to stop and start it.
ensure_nats() {
  if port_open 4222; then return 0; fi
  [ -x /usr/sbin/nats-server ] || apt_install nats-server
  log "starting nats-server"
  bash scripts/nats-server.sh start >&2
}

# cargo-fuzz for the fuzz smoke run (needs the nightly toolchain the machine ships).
ensure_cargo_fuzz() {
  rustup toolchain list 2>/dev/null | grep -q '^nightly' || { log "no nightly toolchain: fuzz smoke falls back to proptest"; return 0; }
  cargo +nightly fuzz --version >/dev/null 2>&1 && return 0
  log "installing cargo-fuzz"
  cargo +nightly install cargo-fuzz --locked --quiet >&2
}

ensure_cargo_fuzz
# An unmodified socket.io-client from npm (pinned by tests/socketio/package-lock.json), for
# tests/websocket_socketio.rs.
ensure_socketio_client() {
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  if [ -f tests/socketio/node_modules/socket.io-client/package.json ]; then return 0; fi
  log "installing socket.io-client into tests/socketio"
  npm install --prefix tests/socketio --no-audit --no-fund --silent >/dev/null
}

# Debian's chromium and playwright-core from npm (pinned by tests/console/package-lock.json;
# the core package downloads no browser), for tests/console.rs, which drives the operator's
# console in a real headless browser.
ensure_console_browser() {
  apt_install chromium
  command -v npm >/dev/null 2>&1 || apt_install nodejs npm
  if [ -f tests/console/node_modules/playwright-core/package.json ]; then return 0; fi
  log "installing playwright-core into tests/console"
  npm install --prefix tests/console --no-audit --no-fund --silent >/dev/null
}

ensure_rabbitmq
ensure_venv
ensure_socketio_client
ensure_console_browser
ensure_moto
ensure_compose
ensure_tansu
ensure_nats
echo "export SWITCHYARD_TEST_AMQP_URI=amqp://guest:guest@127.0.0.1:5672/%2f"
echo "export SWITCHYARD_TEST_SQS_ENDPOINT=http://127.0.0.1:$SQS_PORT"
echo "export SWITCHYARD_TEST_KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT"
echo "export SWITCHYARD_TEST_NATS_URL=nats://127.0.0.1:4222"
echo "export SWITCHYARD_TEST_PYTHON=$(pwd)/.venv/bin/python"
