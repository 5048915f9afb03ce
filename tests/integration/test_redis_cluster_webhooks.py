"""Outbound webhooks on a Redis Cluster: the queue on its own slot, queued outside the append script.

The single-Redis webhook tests run again, unchanged, with this module's `hooked` fixture: two
replicas and the webhook testing service on the session's Redis Cluster (`realtime webhooks` too).
"""
from __future__ import annotations

import secrets
import types

import pytest

from realtime.devcluster import Replica, WebhookReceiver, clean_environ, free_ports, stop_all
from realtime.services.apikeys import hash_key

# The single-Redis tests, collected again here with this module's fixtures.
import test_webhooks
from test_webhooks import (API_KEY, UI_TOKEN, Hooked, _clean,  # noqa: F401
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
    workdir = tmp_path_factory.mktemp("hooked-on-cluster")
    tester_port, *ports = free_ports(3)
    secret = secrets.token_urlsafe(32)
    tester = WebhookReceiver(tester_port, workdir, env={**clean_environ(), "WEBHOOK_SECRET": secret,
                                                        "WEBHOOK_REDIS_URL": redis_cluster.url,
                                                        "WEBHOOK_UI_TOKEN": UI_TOKEN})
    env = {**clean_environ(), "REALTIME_ENV_FILE": str(workdir / "no.env"), "REALTIME_REDIS_URL": redis_cluster.url,
           "REALTIME_JWT_SECRET_KEY": secrets.token_urlsafe(32), "REALTIME_DEMO_LOGIN": "1",
           "REALTIME_API_KEYS": f"tests:{hash_key(API_KEY)}", "REALTIME_RATE_LIMITS": "",
           "REALTIME_WEBHOOK_URLS": tester.url + "/webhook", "REALTIME_WEBHOOK_SECRET": secret,
           "REALTIME_WEBHOOK_READ_TIMEOUT": "1", "REALTIME_WEBHOOK_MAX_ATTEMPTS": "3",
           "REALTIME_WEBHOOK_BACKOFF_INITIAL": "0.2", "REALTIME_WEBHOOK_BACKOFF_MAX": "0.5",
           "REALTIME_WEBHOOK_BREAKER_FAILURES": "3", "REALTIME_WEBHOOK_BREAKER_RESET": "2",
           "REALTIME_WEBHOOK_RECLAIM_IDLE": "4", "REALTIME_UPLOAD_DIR": str(workdir / "uploads")}
    replicas = [Replica(port, env, workdir, instance_id=f"hooks-{n}") for n, port in enumerate(ports)]
    try:
        start_processes(tester, *replicas)
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
