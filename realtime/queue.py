"""The Socket.IO message queue on Redis, with a listener that comes back quickly and no gaps.

python-socketio's RedisManager (5.14-5.18) re-subscribes after a Redis outage with a backoff
that doubles up to 60 s, so a replica could stay deaf for a minute after Redis returns, and
whatever was published meanwhile is lost to it. This adapter overrides two hooks of the
manager (written for python-socketio 5.14-5.18; tests/unit/test_factory.py checks they exist):
- `_redis_listen_with_retries`: a short, capped backoff, TCP keepalive and health checks, and a
  catch-up from the store after every re-subscription;
- `_handle_emit` (every emit, local or from another replica, passes here): `message` events go
  through a Sequencer, which delivers each room's messages once and in id order, fetching any
  gap from the store;
- `_publish`: on a gevent replica the handler no longer waits for PUBLISH; one publisher greenlet
  sends what queued up, in order, pipelined. A message is persisted before it is published, so a
  publish that fails is a gap the other replicas fill from the store, as with the stock manager.
  An external emitter (write_only) still publishes before `emit` returns.
"""
from __future__ import annotations

import collections
import logging
import time
from typing import Any, Iterator

import socketio

from .sequencer import Sequencer
from .services.messages import audience

log = logging.getLogger(__name__)


class RedisQueue(socketio.RedisManager):
    """RedisManager whose listener retries every `retry_max` seconds at most."""

    name = "realtime-redis"

    def __init__(self, url: str, channel: str, retry_max: float = 2.0, write_only: bool = False,
                 sequencer: Sequencer | None = None):
        options = {"socket_keepalive": True, "health_check_interval": 10, "socket_connect_timeout": 5}
        super().__init__(url, channel=channel, write_only=write_only, redis_options=options)
        self.retry_max = retry_max
        self.sequencer = sequencer
        self.metrics: Any = None
        self.subscriptions = 0
        self.outbox: collections.deque = collections.deque()
        self.publisher: Any = None

    def _publish(self, data: Any) -> None:
        """Queue for the publisher greenlet (gevent replicas); elsewhere publish at once."""
        if self.write_only or getattr(self.server, "async_mode", None) != "gevent":
            return super()._publish(data)
        self.outbox.append(data)
        if self.publisher is None:
            self.publisher = self.server.start_background_task(self._publish_queued)

    def _publish_queued(self) -> None:
        """Publish everything queued, oldest first, one pipeline per batch."""
        try:
            while self.outbox:
                batch = list(self.outbox)
                self.outbox.clear()
                self._publish_batch(batch)
        finally:
            self.publisher = None

    def _publish_batch(self, batch: list[Any]) -> None:
        """PUBLISH a batch in one round trip; reconnect and retry once, as the stock manager does."""
        for attempt in (1, 2):
            try:
                if not self.connected:
                    self._redis_connect()
                pipe = self.redis.pipeline(transaction=False)
                for data in batch:
                    pipe.publish(self.channel, self.json.dumps(data))
                pipe.execute()
                return
            except Exception as exc:
                self.connected = False
                log.error("cannot publish %d message(s) to Redis (attempt %d): %s", len(batch), attempt, exc)

    def _handle_emit(self, message: dict[str, Any]) -> None:
        """Deliver locally; chat messages in per-room order, gaps filled, repeats dropped."""
        payload = message.get("data")
        chat = (self.sequencer is not None and message.get("event") == "message"
                and message.get("namespace") == "/chat" and isinstance(payload, list)
                and len(payload) == 1 and isinstance(payload[0], dict) and "id" in payload[0])
        if not chat:
            return super()._handle_emit(message)
        with self.sequencer.ordered(payload[0]["room"]):
            for item in self.sequencer.admit(payload[0]):
                super()._handle_emit({**message, "data": [item]})
                if self.metrics is not None:
                    self.metrics.message_delivered(item)

    def catch_up(self) -> None:
        """Deliver what was stored while this replica was not listening."""
        for item in self.sequencer.pending() if self.sequencer else []:
            self._handle_emit({"method": "emit", "event": "message", "data": [item],
                               "namespace": "/chat", "room": audience(item["room"]),
                               "host_id": self.host_id})

    def _redis_listen_with_retries(self) -> Iterator[dict[str, Any]]:
        """Yield pub/sub messages forever, reconnecting with a capped backoff."""
        delay = 0.1
        while True:
            try:
                self._redis_connect()
                # Our own reference: a failed publish reconnects too and swaps self.pubsub for a
                # fresh, unsubscribed one, on which listen() would end at once (a deaf replica).
                pubsub = self.pubsub
                pubsub.subscribe(self.channel)
                self.subscriptions += 1
                delay = 0.1
                if self.subscriptions > 1 and self.server is not None:
                    self.server.start_background_task(self.catch_up)
                yield from pubsub.listen()
                log.warning("message queue subscription ended; subscribing again")
            except Exception as exc:
                log.warning("message queue listener lost Redis (%s); retrying in %.1fs", exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, self.retry_max)
