"""The revocation mirror on a Redis Cluster: feed, snapshot, a lost link, two mirrors, no Redis at all.

test_revocation_mirror.py's tests run again, unchanged, with this module's fixtures: `redis_url` is
the session's Redis Cluster (emptied per test) and `redis_server` stands for the whole cluster, so
"Redis stopped" stops every node (a shard's replica would otherwise be promoted and answer).
"""
from __future__ import annotations

import pytest

from chatclient import wait_until
from realtime.devcluster import start_all, stop_all

# The single-Redis tests, collected again here with this module's fixtures.
from test_revocation_mirror import (replicas,  # noqa: F401
                                    test_a_new_mirror_loads_what_was_revoked_before,
                                    test_a_revocation_reaches_the_other_replicas_mirror,
                                    test_after_a_lost_link_the_mirror_reloads_what_it_missed,
                                    test_user_revocations_and_uninvitations_reach_the_other_replica,
                                    test_without_redis_the_mirror_is_not_trusted)

pytestmark = pytest.mark.integration


class WholeCluster:
    """The session's Redis Cluster as one server: stop() stops every node, start() brings it back whole."""

    def __init__(self, nodes):
        self.nodes = nodes

    def stop(self) -> None:
        stop_all(self.nodes.nodes)

    def start(self) -> None:
        start_all([node for node in self.nodes.nodes if not node.running()])
        wait_until(self.nodes.healthy, 60)


@pytest.fixture
def redis_url(redis_cluster_url):
    """The cluster's redis+cluster:// URL, every master emptied."""
    return redis_cluster_url


@pytest.fixture
def redis_server(redis_cluster):
    """Every node of the cluster at once."""
    return WholeCluster(redis_cluster)
