"""moto_server, the SQS server the tests talk to, without its avoidable per-request costs.

Profiled on the 10,000-event SQS test (3 FIFO queues, sent and drained at once), moto spent
nearly all of its CPU on work whose result it throws away or already knows:

- `Queue.attributes` builds every attribute of the queue, including the three
  `ApproximateNumberOf*` counts, each a scan of all its messages that reads the clock per
  message. The send and receive paths call it about ten times per message, only to read
  `ContentBasedDeduplication` or `MessageRetentionPeriod`: per-message cost grew with the
  queue's length, so a queue that got ahead of its consumer slowed everything down.
- each attribute name goes through a character-by-character CamelCase to snake_case
  conversion, every time;
- the clock (`unix_time`) builds two datetimes per reading;
- routing a request to its backend lists moto's package directory (about 200 `stat`s)
  and tries every service's URL regex, under a global lock, on every request.

This runs moto's own server with those four costs removed and nothing else changed: the
counts are skipped only inside the four internal look-ups named in `_INTERNAL` (none of them
returns a count), a `GetQueueAttributes` still counts; the other three are caches or an
equal clock. SQS semantics (FIFO order, message groups, deduplication, visibility) are
moto's, untouched. A moto release that renames what a patch replaces starts unpatched for
that part, and says so on stderr.

Usage: the arguments of `moto_server` (`-H 127.0.0.1 -p 4576`).
"""

import functools
import sys
import threading
import time

# Queue properties that scan every message of the queue.
_COUNTS = (
    "approximate_number_of_messages",
    "approximate_number_of_messages_delayed",
    "approximate_number_of_messages_not_visible",
)

# (class, method): internal look-ups that read `queue.attributes` for one setting only.
_INTERNAL = (
    ("SQSBackend", "_validate_message"),
    ("SQSBackend", "send_message"),
    ("SQSBackend", "is_message_valid_based_on_retention_period"),
    ("Queue", "add_message"),
)


def _skip_counts_in_internal_lookups() -> None:
    import moto.sqs.models as sqs_models

    classes = {"Queue": sqs_models.Queue, "SQSBackend": sqs_models.SQSBackend}
    counts = {name: getattr(sqs_models.Queue, name) for name in _COUNTS}
    methods = {(c, m): getattr(classes[c], m) for c, m in _INTERNAL}
    if not all(isinstance(p, property) for p in counts.values()):
        raise AttributeError("Queue's message counts are no longer properties")
    inside = threading.local()

    def count(prop: property) -> property:
        def get(self):
            return 0 if getattr(inside, "depth", 0) else prop.fget(self)

        return property(get)

    def internal(method):
        @functools.wraps(method)
        def wrapper(*args, **kwargs):
            inside.depth = getattr(inside, "depth", 0) + 1
            try:
                return method(*args, **kwargs)
            finally:
                inside.depth -= 1

        return wrapper

    for name, prop in counts.items():
        setattr(sqs_models.Queue, name, count(prop))
    for (c, m), method in methods.items():
        setattr(classes[c], m, internal(method))


def _cache_attribute_names() -> None:
    import moto.sqs.models as sqs_models

    sqs_models.camelcase_to_underscores = functools.lru_cache(maxsize=4096)(
        sqs_models.camelcase_to_underscores
    )


def _plain_clock() -> None:
    import moto.sqs.models as sqs_models

    unix_time = sqs_models.unix_time

    def plain_unix_time(dt=None):
        return time.time() if dt is None else unix_time(dt)

    def plain_unix_time_millis(dt=None):
        return plain_unix_time(dt) * 1000.0

    sqs_models.unix_time = plain_unix_time
    sqs_models.unix_time_millis = plain_unix_time_millis


def _cache_backend_lookup() -> None:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication

    lookup = DomainDispatcherApplication.get_backend_for_host
    known: dict = {}

    @functools.wraps(lookup)
    def get_backend_for_host(self, host):
        # Called under the dispatcher's lock; the answer depends on `host` only.
        if host not in known:
            known[host] = lookup(self, host)
        return known[host]

    DomainDispatcherApplication.get_backend_for_host = get_backend_for_host


PATCHES = (
    _skip_counts_in_internal_lookups,
    _cache_attribute_names,
    _plain_clock,
    _cache_backend_lookup,
)


def main() -> None:
    for patch in PATCHES:
        try:
            patch()
        except (ImportError, AttributeError) as e:
            print(f"moto_server.py: {patch.__name__} not applied: {e}", file=sys.stderr)
    from moto.server import main as moto_main

    moto_main(sys.argv[1:])


if __name__ == "__main__":
    main()
