"""The message queue's publisher greenlet: the handler does not wait, order is kept, on real Redis."""
from __future__ import annotations

import json

import gevent
import redis

from realtime.mq.queue import RedisQueue


class GeventServer:
    """The Socket.IO server surface the manager uses for publishing."""
    async_mode = "gevent"

    def start_background_task(self, target, *args):
        return gevent.spawn(target, *args)


def subscribed(url, channel):
    pubsub = redis.Redis.from_url(url).pubsub()
    pubsub.subscribe(channel)
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    return pubsub


def received(pubsub, count):
    out = []
    while len(out) < count:
        message = pubsub.get_message(timeout=5)
        assert message is not None, f"only {len(out)} of {count} arrived"
        if message["type"] == "message":
            out.append(json.loads(message["data"])["n"])
    return out


def test_queued_messages_are_published_in_order_in_batches(redis_url):
    queue = RedisQueue(redis_url, "rt-test", write_only=False)
    queue.server = GeventServer()
    pubsub = subscribed(redis_url, "rt-test")
    for n in range(50):
        queue._publish({"method": "emit", "n": n})
    assert len(queue.outbox) == 50 and queue.publisher is not None, "nothing was sent inline"
    queue.publisher.join(timeout=10)
    assert queue.publisher is None and not queue.outbox
    assert received(pubsub, 50) == list(range(50))


def test_an_external_emitter_publishes_before_emit_returns(redis_url):
    queue = RedisQueue(redis_url, "rt-test-2", write_only=True)
    pubsub = subscribed(redis_url, "rt-test-2")
    queue._publish({"method": "emit", "n": 7})
    assert not queue.outbox and received(pubsub, 1) == [7]


class StuckServer(GeventServer):
    """A publisher that never runs: Redis hangs and nothing leaves the outbox."""

    def start_background_task(self, target, *args):
        return object()


def test_a_stuck_publisher_keeps_a_bounded_outbox_newest_first(redis_url):
    from realtime.ops.metrics import Metrics
    from realtime.mq.queue import OUTBOX_MAX
    queue = RedisQueue(redis_url, "rt-test-3")
    queue.server, queue.metrics = StuckServer(), Metrics()
    for n in range(OUTBOX_MAX + 5):
        queue._publish({"method": "emit", "n": n})
    assert len(queue.outbox) == OUTBOX_MAX and queue.outbox_dropped == 5
    assert queue.outbox[0]["n"] == 5 and queue.outbox[-1]["n"] == OUTBOX_MAX + 4
    assert queue.metrics.queue_dropped._value.get() == 5
