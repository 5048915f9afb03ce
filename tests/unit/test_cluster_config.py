"""redis+cluster:// URLs: parsing, the backend and queue they pick, flask-limiter's storage."""
from __future__ import annotations

import pytest

from realtime import limiter_config, limiter_storage_uri
from realtime.store import create_store, is_cluster_url
from realtime.store.rediscluster import cluster_address, limiter_storage


def test_cluster_urls_name_seed_nodes_and_credentials():
    seeds, options = cluster_address("redis+cluster://app:s%40cret@10.0.0.1:7000,10.0.0.2:7001/")
    assert seeds == [("10.0.0.1", 7000), ("10.0.0.2", 7001)]
    assert options == {"ssl": False, "username": "app", "password": "s@cret"}
    assert cluster_address("rediss+cluster://:pw@h:6379")[1] == {"ssl": True, "password": "pw"}
    assert is_cluster_url("redis+cluster://h:1/") and not is_cluster_url("redis://h:1/0")
    assert not is_cluster_url(None)


@pytest.mark.parametrize("url", ["redis+cluster://h/", "redis+cluster://h:x/", "redis+cluster://h:1/3",
                                 "redis://h:1/0"])
def test_bad_cluster_urls_are_refused(url):
    with pytest.raises(ValueError):
        cluster_address(url)


def test_flask_limiter_gets_limits_redis_cluster_storage():
    url = "rediss+cluster://app:pw@h1:7000,h2:7001/"
    assert limiter_storage(url) == ("redis+cluster://app:pw@h1:7000,h2:7001", {"ssl": True})
    assert limiter_storage_uri(url) == "redis+cluster://app:pw@h1:7000,h2:7001"
    assert limiter_storage_uri("redis://h:1/0") == "redis://"
    assert limiter_storage_uri(None) == "memory://"
    assert limiter_config({"REDIS_URL": url, "HTTP_RATE_LIMIT": "1/second"})["RATELIMIT_STORAGE_URI"].startswith(
        "redis+cluster://")


def test_a_cluster_url_builds_the_cluster_store_and_queue(app_factory_with, redis_cluster_url):
    from realtime.extensions import socketio
    from realtime.mq.clusterqueue import RedisClusterQueue
    from realtime.mq.queue import StoreAnnounced
    assert create_store(redis_cluster_url).name == "redis-cluster"
    app = app_factory_with(REDIS_URL=redis_cluster_url)
    assert isinstance(socketio.server.manager, RedisClusterQueue)
    assert isinstance(app.extensions["realtime"].messages.relay, StoreAnnounced)
    assert app.config["RATELIMIT_STORAGE_URI"].startswith("redis+cluster://127.0.0.1:")
    assert "connection_pool" not in app.config["RATELIMIT_STORAGE_OPTIONS"]


def test_make_cluster_runs_its_replicas_on_a_redis_cluster_url(tmp_path):
    """`make cluster REDIS_URL=redis+cluster://...`: no Redis of its own, every process on that URL."""
    from realtime.devcluster import ClusterConfig, RedisServer, cluster_plan
    url = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001/"
    config = ClusterConfig.from_env({"REDIS_URL": url, "CLUSTER_STATE_DIR": str(tmp_path)})
    processes = [p for wave in cluster_plan(config) for p in wave]
    assert config.redis_url == url and not any(isinstance(p, RedisServer) for p in processes)
    assert all(p.env["REALTIME_REDIS_URL"] == url for p in processes if p.name.startswith("replica"))


def test_a_burst_larger_than_the_pool_waits_for_a_connection(redis_cluster_url):
    """As with one Redis (a blocking pool): more concurrent calls on a node than its pool holds
    queue for a connection instead of failing with "Too many connections" (a disconnect storm of
    a replica's clients makes hundreds of store calls at once)."""
    import threading

    from realtime.store.rediscluster import create_redis_cluster
    client = create_redis_cluster(redis_cluster_url, max_connections=2)
    errors = []

    def hold_a_connection():
        try:
            client.blpop(["{burst}:nothing"], timeout=0.2)
        except Exception as exc:  # what the test is about
            errors.append(exc)
    try:
        threads = [threading.Thread(target=hold_a_connection) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert errors == []
    finally:
        client.close()
