"""Token controls on a Redis Cluster: two replicas, expiry, revocation by token and by user, invitations.

test_token_controls.py's tests run again, unchanged, with this module's `pair`: the same two replicas
on the session's Redis Cluster (revocations are plain PUBLISH, heard on every node; a user's cutoff and
an invitation live on their own slots).
"""
from __future__ import annotations

import secrets

import pytest

from realtime.devcluster import stop_all

# The single-Redis tests, collected again here with this module's fixtures.
from test_token_controls import (Pair, pair_replicas,  # noqa: F401
                                 test_a_query_string_token_is_ignored_by_default,
                                 test_admin_connections_are_warned_then_closed_unless_refreshed,
                                 test_admin_ui_sessions_close_at_expiry_and_on_revocation,
                                 test_invitations_can_be_taken_back_and_refresh_rechecks_rooms,
                                 test_revoking_a_user_closes_every_older_connection_on_every_replica,
                                 test_tokens_outside_the_servers_limits_are_refused)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def pair(redis_cluster, tmp_path_factory, start_processes):
    """test_token_controls' `pair`, on the Redis Cluster."""
    from redis.cluster import RedisCluster

    from realtime.store import create_redis
    client = create_redis(redis_cluster.url)
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    client.close()
    secret = secrets.token_urlsafe(48)
    replicas = pair_replicas(redis_cluster.url, secret, tmp_path_factory.mktemp("tokens-on-cluster"))
    try:
        start_processes(*replicas)
        yield Pair(replicas, secret)
    finally:
        stop_all(replicas)


def test_the_pair_runs_on_the_cluster(pair):
    import requests
    for replica in pair.replicas:
        assert requests.get(replica.url + "/readyz", timeout=5).json()["store"] == "redis-cluster"
