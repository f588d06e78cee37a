"""A NATS client for the NATS sink's tests, on nats-py (a third-party client, as users run).

Every command prints JSON lines on stdout; a message is
{"subject", "msg_id" and "event_id" (its Nats-Msg-Id and event_id headers), "body" (the
parsed JSON)} and, from a stream,
"seq" (its stream sequence).

  subscribe URL COUNT TIMEOUT LINGER SUBJECT...  core subscriptions: prints {"ready": true}
      once subscribed, then, after COUNT distinct messages (by subject and Nats-Msg-Id; or TIMEOUT
      seconds) and LINGER seconds more for late copies, every message received (copies
      included), in arrival order.
  stream-create URL NAME SUBJECT...              a file stream (duplicate window 2 min,
      messages kept 10 min, so a stream a failed test leaves behind goes away by itself).
  stream-read URL NAME FILTER TIMEOUT            every message of the stream on FILTER, in
      stream order (an ephemeral pull consumer).
  stream-count URL NAME                          {"messages": N}.
  stream-delete URL NAME                         deletes the stream (missing is fine).
"""

import asyncio
import json
import sys

import nats
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig


def line(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def message(msg, seq=None):
    out = {
        "subject": msg.subject,
        "msg_id": (msg.headers or {}).get("Nats-Msg-Id"),
        "event_id": (msg.headers or {}).get("event_id"),
        "body": json.loads(msg.data),
    }
    if seq is not None:
        out["seq"] = seq
    return out


async def connect(url):
    # Retries its first connection too: a test may start it while the server restarts.
    return await nats.connect(
        url,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.2,
        connect_timeout=5,
        allow_reconnect=True,
    )


async def subscribe(url, count, timeout, linger, subjects):
    nc = await connect(url)
    got = []
    ids = set()
    enough = asyncio.Event()

    async def on_message(msg):
        got.append(message(msg))
        ids.add((msg.subject, got[-1]["msg_id"]))
        if len(ids) >= count:
            enough.set()

    for subject in subjects:
        await nc.subscribe(subject, cb=on_message, pending_msgs_limit=1_000_000)
    await nc.flush()
    line({"ready": True})
    try:
        await asyncio.wait_for(enough.wait(), timeout)
    except asyncio.TimeoutError:
        pass
    await asyncio.sleep(linger)
    for m in list(got):
        line(m)
    await nc.close()


async def stream_create(url, name, subjects):
    nc = await connect(url)
    js = nc.jetstream()
    await js.add_stream(
        StreamConfig(
            name=name,
            subjects=subjects,
            duplicate_window=120.0,
            max_age=600.0,
        )
    )
    line({"created": name})
    await nc.close()


async def stream_read(url, name, subject, timeout):
    nc = await connect(url)
    js = nc.jetstream()
    config = ConsumerConfig(
        ack_policy=AckPolicy.NONE,
        deliver_policy=DeliverPolicy.ALL,
        filter_subject=subject,
    )
    sub = await js.pull_subscribe(subject, stream=name, config=config)
    info = await sub.consumer_info()
    pending = info.num_pending
    read = 0
    while read < pending:
        msgs = await sub.fetch(batch=min(500, pending - read), timeout=timeout)
        for msg in msgs:
            line(message(msg, msg.metadata.sequence.stream))
            read += 1
    await sub.unsubscribe()
    await nc.close()


async def stream_count(url, name):
    nc = await connect(url)
    info = await nc.jetstream().stream_info(name)
    line({"messages": info.state.messages})
    await nc.close()


async def stream_delete(url, name):
    nc = await connect(url)
    try:
        await nc.jetstream().delete_stream(name)
    except nats.js.errors.NotFoundError:
        pass
    line({"deleted": name})
    await nc.close()


def main(argv):
    command, url, rest = argv[1], argv[2], argv[3:]
    if command == "subscribe":
        count, timeout, linger = int(rest[0]), float(rest[1]), float(rest[2])
        return subscribe(url, count, timeout, linger, rest[3:])
    if command == "stream-create":
        return stream_create(url, rest[0], rest[1:])
    if command == "stream-read":
        return stream_read(url, rest[0], rest[1], float(rest[2]))
    if command == "stream-count":
        return stream_count(url, rest[0])
    if command == "stream-delete":
        return stream_delete(url, rest[0])
    raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv))
