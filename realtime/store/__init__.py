"""Backend choice happens here and nowhere else."""
from __future__ import annotations

from urllib.parse import urlsplit

import redis

from .base import Appended, Retention, Store, StoreUnavailable
from .memory import MemoryStore
from .redis import RedisStore

__all__ = ["Appended", "Retention", "Store", "StoreUnavailable", "create_store", "create_redis"]

REDIS_SCHEMES = {"redis", "rediss", "unix"}


def create_redis(url: str, socket_timeout: float = 5.0) -> redis.Redis:
    """The process's one Redis connection pool, with timeouts on every call."""
    return redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                socket_connect_timeout=socket_timeout, health_check_interval=30)


def create_store(url: str | None, client: redis.Redis | None = None) -> Store:
    """A store for `url`: memory:// (or nothing) or redis://; anything else is an error."""
    scheme = urlsplit(url).scheme if url else "memory"
    if scheme == "memory":
        return MemoryStore()
    if scheme in REDIS_SCHEMES:
        return RedisStore(client if client is not None else create_redis(url))
    raise ValueError(f"unsupported store URL scheme {scheme!r} (use memory:// or redis://)")
