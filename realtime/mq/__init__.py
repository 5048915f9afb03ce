"""The message queue between replicas: the Redis queue, per-room channels, in-order delivery."""
from __future__ import annotations

from typing import Any


def queue_for(url: str, channel: str, retry_max: float = 2.0, socket_timeout: float = 5.0, **options: Any) -> Any:
    """The message queue for `url`: RedisClusterQueue for redis+cluster://, else RedisQueue."""
    from ..store.rediscluster import is_cluster_url
    if is_cluster_url(url):
        from .clusterqueue import RedisClusterQueue
        return RedisClusterQueue(url, channel, retry_max, socket_timeout=socket_timeout, **options)
    from .queue import RedisQueue
    return RedisQueue(url, channel, retry_max, **options)
