"""Fixtures for every test: a real redis-server for the session (never the system one on 6379)."""
from __future__ import annotations

import os

import pytest
import redis

from realtime.devcluster import (RedisClusterNodes, RedisServer, StartupError, find_executable,
                                 free_cluster_ports, free_port, start_all)


def require(executable: str) -> str:
    """Path of a system executable; missing fails under CI (it must be installed), else skips."""
    try:
        return find_executable(executable)
    except StartupError:
        message = f"{executable} is not installed (`make system-deps` installs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)


@pytest.fixture(scope="session")
def system_executable():
    """`require(name)`: the path of a system binary, or skip (fail under CI=true) without it."""
    return require


def start_or_fail(*processes) -> None:
    """Start processes together; one that dies or hangs fails the test with its log tail."""
    try:
        start_all(processes, timeout=60)
    except StartupError as error:
        pytest.fail(str(error), pytrace=False)


@pytest.fixture(scope="session")
def start_processes():
    """`start_or_fail(*processes)`: start devcluster processes, failing with their log tail."""
    return start_or_fail


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory, system_executable):
    """A redis-server on a free port for the session: `.url`, `.port`, `.stop()`, `.start()`."""
    system_executable("redis-server")
    server = RedisServer(free_port(), tmp_path_factory.mktemp("redis"))
    try:
        start_or_fail(server)
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_url(redis_server):
    """The session server's URL, emptied (FLUSHALL) for this test."""
    if not redis_server.running():
        start_or_fail(redis_server)  # an earlier test stopped it
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory, system_executable):
    """A Redis Cluster for the session: 3 masters + 3 replicas on free loopback ports (`.url`, `.nodes`)."""
    system_executable("redis-server")
    system_executable("redis-cli")
    cluster = RedisClusterNodes(free_cluster_ports(6), tmp_path_factory.mktemp("redis-cluster"))
    try:
        cluster.start()
    except StartupError as error:
        cluster.stop()
        pytest.fail(str(error), pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def redis_cluster_url(redis_cluster):
    """The session cluster's redis+cluster:// URL, every master emptied (FLUSHALL) for this test."""
    from redis.cluster import RedisCluster

    from realtime.store import create_redis
    if not redis_cluster.healthy():
        pytest.fail("an earlier test left the Redis Cluster unhealthy", pytrace=False)
    client = create_redis(redis_cluster.url)
    try:
        client.flushall(target_nodes=RedisCluster.PRIMARIES)
    finally:
        client.close()
    return redis_cluster.url
