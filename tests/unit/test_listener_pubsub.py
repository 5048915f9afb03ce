"""The listener's pub/sub connection on a real Redis: what it spares per message, and what it keeps."""
from __future__ import annotations

import time

import pytest
import redis
import redis._parsers.resp3

from realtime.mq.queue import ListenerPubSub, as_received


class CountingLock:
    """A lock that counts how often it was taken."""

    def __init__(self):
        self.taken = 0

    def __enter__(self):
        self.taken += 1

    def __exit__(self, *exc):
        return False


@pytest.fixture
def pubsub(redis_url):
    client = redis.Redis.from_url(redis_url, health_check_interval=10)
    listener = ListenerPubSub(client.connection_pool, ignore_subscribe_messages=True)
    listener.subscribe("rt-listener-test")
    yield client, listener
    listener.close()
    client.close()


def next_message(listener, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        message = listener.get_message(timeout=0.1)
        if message is not None:
            return message
    raise AssertionError("no message in time")


def test_messages_arrive_without_the_per_message_debug_logging(pubsub, monkeypatch):
    client, listener = pubsub
    assert listener.push_handler_func is as_received
    # redis-py's default push handler looks its logger up and formats every message for DEBUG.
    monkeypatch.setattr(redis._parsers.resp3, "getLogger", lambda name: pytest.fail("default push handler ran"))
    client.publish("rt-listener-test", "hello")
    message = next_message(listener)
    assert (message["type"], message["channel"], message["data"]) == ("message", b"rt-listener-test", b"hello")


def test_the_health_check_lock_is_taken_only_when_a_ping_is_due(pubsub):
    client, listener = pubsub
    listener._lock = lock = CountingLock()
    listener.connection.next_health_check = time.monotonic() + 60
    listener.check_health()
    assert lock.taken == 0 and listener.health_check_response_counter == 0
    listener.connection.next_health_check = 0  # due: PING under the lock, its answer swallowed
    listener.check_health()
    assert lock.taken == 1 and listener.health_check_response_counter == 1
    client.publish("rt-listener-test", "after the ping")  # may overtake the PING's answer
    assert next_message(listener)["data"] == b"after the ping"
    deadline = time.monotonic() + 5
    while listener.health_check_response_counter and time.monotonic() < deadline:
        assert listener.get_message(timeout=0.1) is None, "the PING's answer is not a message"
    assert listener.health_check_response_counter == 0
