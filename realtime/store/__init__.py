"""Backend choice happens here and nowhere else."""
from __future__ import annotations

from typing import Any, Callable
from urllib.parse import urlsplit

from .base import (Announcement, Appended, Joined, NotReplicated, OverLimit, Quota, Retention, RoomState, Store,
                   StoreUnavailable, Uninvited, UserCutoff)
from .memory import MemoryStore
from .redis import RedisStore, create_redis as create_single_redis
from .rediscluster import CLUSTER_SCHEMES, RedisClusterStore, create_redis_cluster, is_cluster_url

__all__ = ["Announcement", "Appended", "Joined", "NotReplicated", "OverLimit", "Quota", "Retention", "RoomState",
           "Store", "StoreUnavailable", "Uninvited", "UserCutoff", "create_store", "create_redis", "redis_store",
           "is_cluster_url"]

REDIS_SCHEMES = {"redis", "rediss", "unix", "redis+sentinel"}


def create_redis(url: str, socket_timeout: float = 5.0, max_connections: int = 200) -> Any:
    """The process's Redis client for `url`: a RedisCluster for redis+cluster://, else one pool."""
    if is_cluster_url(url):
        return create_redis_cluster(url, socket_timeout, max_connections)
    return create_single_redis(url, socket_timeout, max_connections)


def redis_store(client: Any, **options: Any) -> RedisStore:
    """The Redis store over a client create_redis made (the cluster variant for a RedisCluster)."""
    return (RedisClusterStore if is_cluster_client(client) else RedisStore)(client, **options)


def is_cluster_client(client: Any) -> bool:
    """Whether `client` is a redis-py RedisCluster."""
    from redis.cluster import RedisCluster
    return isinstance(client, RedisCluster)


def create_store(url: str | None, socket_timeout: float = 5.0, wait_replicas: int = 0,
                 wait_timeout: float = 1.0, observe: Callable[[str, float, bool], None] | None = None,
                 group_commit: bool = False) -> Store:
    """A store for `url`: memory:// (or nothing), redis://, rediss://, unix://, redis+sentinel://
    or redis+cluster:// (rediss+cluster://)."""
    scheme = urlsplit(url).scheme if url else "memory"
    if scheme == "memory":
        return MemoryStore()
    if scheme in REDIS_SCHEMES or scheme in CLUSTER_SCHEMES:
        return redis_store(create_redis(url, socket_timeout), observe=observe, wait_replicas=wait_replicas,
                           wait_timeout=wait_timeout, group_commit=group_commit)
    raise ValueError(f"unsupported store URL scheme {scheme!r} "
                     "(use memory://, redis://, redis+sentinel:// or redis+cluster://)")

