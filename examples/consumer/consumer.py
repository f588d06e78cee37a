"""Prints every event Switchyard publishes on a RabbitMQ exchange, one line each.

It binds a private queue to the exchange (Evolution's global `evolution_exchange`, or an
instance's own exchange in per-instance mode) so it never competes with your workers for
messages on the durable `{event}` queues. Env: AMQP_URL, EXCHANGE, ROUTING_KEYS (comma
separated, `#` = every event, e.g. `messages.upsert,connection.update`).
"""
import json
import os
import time

import pika

URL = os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/%2f")
EXCHANGE = os.environ.get("EXCHANGE", "evolution_exchange")
KEYS = [k.strip() for k in os.environ.get("ROUTING_KEYS", "#").split(",") if k.strip()]


def connect():
    """Waits until the broker is up and Switchyard has declared the exchange."""
    while True:
        try:
            connection = pika.BlockingConnection(pika.URLParameters(URL))
            channel = connection.channel()
            channel.exchange_declare(EXCHANGE, passive=True)
            return connection, channel
        except pika.exceptions.AMQPError as error:
            print(f"waiting for exchange {EXCHANGE!r}: {error!r}", flush=True)
            time.sleep(2)


def on_message(_channel, method, _properties, body):
    try:
        event = json.loads(body)
    except ValueError:
        print(f"{method.routing_key}: {len(body)} bytes (not JSON)")
        return
    print(
        f"{method.routing_key} instance={event.get('instance')} "
        f"sequence={event.get('sequence')} id={event.get('id')}"
    )


def main():
    _connection, channel = connect()
    queue = channel.queue_declare("", exclusive=True).method.queue
    for key in KEYS:
        channel.queue_bind(queue, EXCHANGE, routing_key=key)
    print(f"consuming {EXCHANGE!r} keys {KEYS}", flush=True)
    channel.basic_consume(queue, on_message, auto_ack=True)
    channel.start_consuming()


if __name__ == "__main__":
    main()
