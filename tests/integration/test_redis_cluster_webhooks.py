"""Outbound webhooks on a Redis Cluster: the queue on its own slot, queued outside the append script.

The single-Redis webhook tests run again, unchanged, with this module's `hooked` fixture: two
replicas and the webhook testing service on the session's Redis Cluster (`realtime webhooks` too).
"""
from __future__ import annotations

import types

import pytest

from realtime.devcluster import stop_all

# The single-Redis tests, collected again here with this module's fixtures.
import test_webhooks
from test_webhooks import (API_KEY, Hooked, _clean, start_hooked,  # noqa: F401
                           test_delivery_claimed_by_a_killed_replica_is_delivered_by_another,
                           test_events_arrive_signed_with_the_message,
                           test_failures_are_retried_then_dead_lettered_and_replayed)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def hooked(redis_cluster, tmp_path_factory, start_processes):
    """test_webhooks' `hooked`, on the Redis Cluster."""
    from redis.cluster import RedisCluster

    from realtime.store import create_redis
    client = create_redis(redis_cluster.url)
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    client.close()
    tester, replicas = start_hooked(redis_cluster.url, tmp_path_factory.mktemp("hooked-on-cluster"),
                                    start_processes)
    try:
        yield Hooked(types.SimpleNamespace(url=redis_cluster.url), replicas, tester)
    finally:
        stop_all([*replicas, tester])


def test_the_queue_lives_under_its_cluster_names(hooked, redis_cluster):
    from realtime.store import create_redis
    client = create_redis(redis_cluster.url)
    try:
        assert client.exists("rt:{webhooks}") and not client.exists("rt:webhooks")
    finally:
        client.close()
    assert test_webhooks.API_KEY == API_KEY
