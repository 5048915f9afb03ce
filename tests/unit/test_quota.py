"""Rate-limit quotas in the store: one algorithm (store.base.take_hit), the same in Redis's Lua."""
from __future__ import annotations

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from realtime.errors import AppError
from realtime.services.ratelimit import RateLimiter, parse_rules
from realtime.store import OverLimit, Quota, Retention, create_redis
from realtime.store.base import take_hit
from realtime.store.redis import TAKE_FUNCTION

KEEP = Retention(max_messages=1000, max_age=3600, idempotency_ttl=60)
SEND = Quota("send", "ana", 3, 10.0)


def text(body: str) -> dict:
    """A message as the service hands it to the store."""
    return {"from": {"id": "ana", "name": "Ana"}, "type": "text", "body": body, "ts": int(time.time() * 1000)}


def hits(counts, moments, quota=SEND):
    """take_hit over a series of moments: the waits, 0.0 for every hit counted."""
    waits = []
    for now in moments:
        counts, wait = take_hit(counts, now, quota)
        waits.append(wait)
    return waits


def test_a_full_window_refuses_until_the_earliest_moment_a_hit_fits():
    waits = hits(None, [100.0, 101.0, 102.0, 103.0])
    assert waits[:3] == [0.0, 0.0, 0.0] and waits[3] == pytest.approx(7.0)
    # At 110 the previous window still weighs 3 in full; just after it, a hit fits.
    counts = take_hit(take_hit(take_hit(None, 100.0, SEND)[0], 101.0, SEND)[0], 102.0, SEND)[0]
    assert take_hit(counts, 110.0, SEND)[1] > 0
    assert take_hit(counts, 110.001, SEND)[1] == 0.0


def test_the_previous_window_weighs_what_still_overlaps_the_last_window():
    counts = None
    for now in (100.0, 101.0, 102.0):
        counts, _ = take_hit(counts, now, SEND)
    # At 115, half the previous window overlaps: floor(3 * 0.5) = 1, so two more hits fit.
    counts, first = take_hit(counts, 115.0, SEND)
    counts, second = take_hit(counts, 115.0, SEND)
    counts, third = take_hit(counts, 115.0, SEND)
    assert (first, second) == (0.0, 0.0) and third == pytest.approx(10 * (1 - 1 / 3 - 0.5))
    assert take_hit(counts, 115.0 + third + 0.001, SEND)[1] == 0.0


def test_quiet_for_two_windows_starts_over():
    counts = None
    for now in (100.0, 101.0, 102.0):
        counts, _ = take_hit(counts, now, SEND)
    assert hits(counts, [120.0, 120.0, 120.0, 120.0])[:3] == [0.0, 0.0, 0.0]


def test_a_refused_hit_is_not_counted():
    counts = None
    for now in (100.0, 101.0, 102.0):
        counts, _ = take_hit(counts, now, SEND)
    refused, wait = take_hit(counts, 103.0, SEND)
    assert wait > 0 and refused[1] == 3


def test_the_store_counts_up_to_the_limit_per_rule_and_key(store):
    for _ in range(3):
        store.take(SEND)
    with pytest.raises(OverLimit) as refused:
        store.take(SEND)
    assert 0 < refused.value.retry_after <= 2 * SEND.window and refused.value.quota == SEND
    store.take(Quota("send", "bea", 3, 10.0))
    store.take(Quota("join", "ana", 3, 10.0))


def test_an_append_over_its_quota_writes_nothing(store):
    for n in range(3):
        store.append_message("r", text(f"m{n}"), None, KEEP, quota=SEND)
    with pytest.raises(OverLimit):
        store.append_message("r", text("too many"), "ana:k", KEEP, quota=SEND)
    assert store.room_bounds("r") == (1, 3)
    with pytest.raises(OverLimit):
        store.take(SEND)  # the appends counted
    # The refused key was not used: once allowed, the same key makes a new message.
    fresh = Quota("send", "ana-later", 3, 10.0)
    assert store.append_message("r", text("later"), "ana:k", KEEP, quota=fresh).duplicate is False


def test_rate_limiter_answers_the_contract_refusal(store):
    limiter = RateLimiter(store, parse_rules("send=2/minute; join="))
    assert limiter.quota("join", "ana") is None
    limiter.hit("join", "ana")  # off: never refused
    limiter.hit("send", "ana")
    limiter.hit("send", "ana")
    with pytest.raises(AppError) as refused:
        limiter.hit("send", "ana")
    assert refused.value.code == "rate_limited" and 0 < refused.value.retry_after <= 120


def test_work_refused_before_the_store_still_counts_its_hit(store):
    limiter = RateLimiter(store, parse_rules("send=2/minute"))
    with pytest.raises(AppError) as invalid:
        with limiter.taken_by_store("send", "ana"):
            raise AppError("invalid_payload", "bad")
    assert invalid.value.code == "invalid_payload"
    with pytest.raises(AppError) as over:
        with limiter.taken_by_store("send", "ana") as quota:
            store.append_message("r", text("one"), None, KEEP, quota=quota)
            store.append_message("r", text("two"), None, KEEP, quota=quota)
    assert over.value.code == "rate_limited" and store.room_bounds("r") == (1, 1)
    with pytest.raises(AppError) as still:  # over the limit, an invalid send is refused as limited
        with limiter.taken_by_store("send", "ana"):
            raise AppError("invalid_payload", "bad")
    assert still.value.code == "rate_limited"


moments = st.lists(st.floats(min_value=0, max_value=40, allow_nan=False), min_size=1, max_size=25).map(sorted)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(moments=moments, limit=st.integers(1, 5), window=st.sampled_from([1.0, 2.5, 10.0, 60.0]),
       weight=st.sampled_from([1, 1, 2, 3, 6]))
def test_the_lua_take_agrees_with_take_hit(redis_url, moments, limit, window, weight):
    client = create_redis(redis_url)
    script = client.register_script(TAKE_FUNCTION + """
local wait = take(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]))
if wait then return wait end
return 0
""")
    key = f"rt:limit:test:{time.monotonic_ns()}"
    quota, counts = Quota("test", "k", limit, window, weight), None
    try:
        for offset in moments:
            now = 1_764_000_000 + offset
            counts, wait = take_hit(counts, now, quota)
            lua = script(keys=[key], args=[limit, window, repr(now), weight])
            assert (lua > 0) == (wait > 0)
            if wait:
                assert 0 <= lua - wait * 1000 < 1 + 1e-6  # the same wait, rounded up to a millisecond
    finally:
        client.delete(key)
        client.close()
