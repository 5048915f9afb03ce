"""The Socket.IO message queue on Redis, with a listener that comes back quickly.

python-socketio's RedisManager (5.14-5.18) re-subscribes after a Redis outage with a backoff
that doubles up to 60 s, so a replica could stay deaf for a minute after Redis returns. This
adapter overrides only that retry loop (its one private hook) with a short, capped backoff and
turns on TCP keepalive and health checks so a half-open connection is noticed.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Iterator

import socketio

log = logging.getLogger(__name__)


class RedisQueue(socketio.RedisManager):
    """RedisManager whose listener retries every `retry_max` seconds at most."""

    name = "realtime-redis"

    def __init__(self, url: str, channel: str, retry_max: float = 2.0, write_only: bool = False):
        options = {"socket_keepalive": True, "health_check_interval": 10, "socket_connect_timeout": 5}
        super().__init__(url, channel=channel, write_only=write_only, redis_options=options)
        self.retry_max = retry_max
        self.resubscribed = 0

    def _redis_listen_with_retries(self) -> Iterator[dict[str, Any]]:
        """Yield pub/sub messages forever, reconnecting with a capped backoff."""
        delay = 0.1
        subscribed = False
        while True:
            try:
                if not subscribed:
                    self._redis_connect()
                    self.pubsub.subscribe(self.channel)
                    subscribed = True
                    self.resubscribed += 1
                    delay = 0.1
                yield from self.pubsub.listen()
            except Exception as exc:
                log.warning("message queue listener lost Redis (%s); retrying in %.1fs", exc, delay)
                subscribed = False
                time.sleep(delay)
                delay = min(delay * 2, self.retry_max)
