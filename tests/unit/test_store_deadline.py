"""A Redis that does not answer: timeouts are not retried, writes say their outcome is unknown,
and a store call past its event's deadline fails at once (real redis-server, CLIENT PAUSE)."""
from __future__ import annotations

import time

import pytest
import redis

from realtime.mq.sequencer import Sequencer
from realtime.store import Retention, StoreUnavailable, create_redis
from realtime.store import deadline
from realtime.store.redis import RedisStore

KEEP = Retention(max_messages=1000, max_age=3600, idempotency_ttl=60)
TEXT = {"type": "text", "body": "x", "user": {"id": "u", "name": "u"}, "ts": 1}


@pytest.fixture
def paused(redis_url):
    """A store with a short socket timeout, and a function that pauses Redis's writes for a while."""
    admin = redis.Redis.from_url(redis_url)
    store = RedisStore(create_redis(redis_url, socket_timeout=0.3))

    def pause(seconds: float, mode: str = "WRITE") -> None:
        admin.execute_command("CLIENT", "PAUSE", int(seconds * 1000), mode)
    yield store, pause
    admin.execute_command("CLIENT", "UNPAUSE")
    admin.close()
    store.client.close()


def test_a_write_that_times_out_is_not_retried_and_its_outcome_is_unknown(paused):
    store, pause = paused
    pause(3)
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        store.append_message("hang", dict(TEXT), "k1", KEEP)
    # One socket timeout, not one per retry (the old Retry ran a timed-out command 4 times).
    assert time.monotonic() - started < 1.0
    assert caught.value.outcome_unknown


def test_a_read_that_times_out_is_unavailable_with_a_known_outcome(paused):
    store, pause = paused
    pause(3, "ALL")
    with pytest.raises(StoreUnavailable) as caught:
        store.messages_after("hang", 0, 10)
    assert not caught.value.outcome_unknown


def test_past_its_deadline_a_store_call_fails_at_once_without_sending(paused):
    store, _ = paused
    with deadline.within(0.01):
        time.sleep(0.02)
        with pytest.raises(deadline.Expired) as caught:
            store.append_message("late", dict(TEXT), "k2", KEEP)
    assert not caught.value.outcome_unknown  # nothing was sent
    assert store.messages_after("late", 0, 10) == []
    assert deadline.remaining() is None  # the block's deadline ends with it


def test_a_gap_fetch_cut_by_a_deadline_admits_nothing_and_a_retry_fills_the_gap():
    calls = []

    def fetch(room, after, limit):
        calls.append(after)
        if len(calls) == 1:
            raise deadline.Expired()
        return [{"room": room, "id": i} for i in range(after + 1, after + 1 + limit)]
    sequencer = Sequencer(fetch)
    assert sequencer.admit({"room": "r", "id": 1}) == [{"room": "r", "id": 1}]
    with pytest.raises(deadline.Expired):
        sequencer.admit({"room": "r", "id": 4})
    assert [m["id"] for m in sequencer.admit({"room": "r", "id": 4})] == [2, 3, 4]
    assert calls == [1, 1]
