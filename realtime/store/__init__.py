"""Backend choice happens here and nowhere else."""
from __future__ import annotations

from typing import Callable
from urllib.parse import urlsplit

from .base import (Announcement, Appended, NotReplicated, OverLimit, Quota, Retention, RoomState, Store,
                   StoreUnavailable, Uninvited, UserCutoff)
from .memory import MemoryStore
from .redis import RedisStore, create_redis

__all__ = ["Announcement", "Appended", "NotReplicated", "OverLimit", "Quota", "Retention", "RoomState", "Store",
           "StoreUnavailable", "Uninvited", "UserCutoff", "create_store", "create_redis"]

REDIS_SCHEMES = {"redis", "rediss", "unix", "redis+sentinel"}


def create_store(url: str | None, socket_timeout: float = 5.0, wait_replicas: int = 0,
                 wait_timeout: float = 1.0, observe: Callable[[str, float, bool], None] | None = None) -> Store:
    """A store for `url`: memory:// (or nothing), redis://, rediss://, unix:// or redis+sentinel://."""
    scheme = urlsplit(url).scheme if url else "memory"
    if scheme == "memory":
        return MemoryStore()
    if scheme in REDIS_SCHEMES:
        return RedisStore(create_redis(url, socket_timeout), observe=observe, wait_replicas=wait_replicas,
                          wait_timeout=wait_timeout)
    raise ValueError(f"unsupported store URL scheme {scheme!r} "
                     "(use memory://, redis:// or redis+sentinel://)")

