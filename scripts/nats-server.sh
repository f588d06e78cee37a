#!/usr/bin/env bash
# The test suite's NATS server: JetStream on 127.0.0.1:4222, its store in
# /var/lib/nats-server. `start` (idempotent: --oknodo) waits until the port answers; `stop`
# waits until the process is gone. scripts/services.sh starts it; the NATS outage test
# (tests/sink_nats_outage.rs) stops and starts it mid-stream.
set -euo pipefail

NATS_BIN=/usr/sbin/nats-server
NATS_PORT=4222

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$NATS_PORT") 2>/dev/null; }

case "${1:-}" in
  start)
    mkdir -p /var/lib/nats-server
    start-stop-daemon --start --oknodo --background --exec "$NATS_BIN" -- \
      -a 127.0.0.1 -p "$NATS_PORT" -js -sd /var/lib/nats-server -l /var/log/nats-server.log
    for _ in $(seq 1 300); do port_open && exit 0; sleep 0.1; done
    echo "nats-server did not open port $NATS_PORT within 30 s (see /var/log/nats-server.log)" >&2
    exit 1 ;;
  stop)
    start-stop-daemon --stop --oknodo --retry 10 --exec "$NATS_BIN" ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2 ;;
esac
