"""The external-process API: persist a message and publish it through the Redis message queue.

Works from a plain Python process: no gevent, no Flask app.
"""
from __future__ import annotations

from typing import Any

from .mq import queue_for
from .services import message_policy, webhook_policy
from .services.messages import MessagePolicy, MessageService
from .settings import load_settings
from .store import create_redis, redis_store

SYSTEM_SENDER = {"id": "system", "name": "system"}


class Emitter:
    """Send messages to rooms from outside the cluster, with the same rules as clients."""

    def __init__(self, redis_url: str, channel: str | None = None,
                 policy: MessagePolicy | None = None):
        settings = load_settings({"REDIS_URL": redis_url})
        self._redis = create_redis(redis_url, settings["REDIS_SOCKET_TIMEOUT"])
        self._queue = queue_for(redis_url, channel or settings["MQ_CHANNEL"], write_only=True,
                                room_channels=settings["MQ_ROOM_CHANNELS"],
                                socket_timeout=settings["REDIS_SOCKET_TIMEOUT"])
        # Same outbox as the replicas: an emitted message queues its message.created webhooks.
        policy_hooks = webhook_policy(settings)
        hooks = policy_hooks.endpoints if "message.created" in policy_hooks.events else ()
        store = redis_store(self._redis, wait_replicas=settings["REDIS_WAIT_REPLICAS"],
                            wait_timeout=settings["REDIS_WAIT_TIMEOUT"])
        self.messages = MessageService(store, self._publish,
                                       policy or message_policy(settings), webhooks=hooks)

    def _publish(self, event: str, data: dict[str, Any], to: Any, skip_sid: str | None = None) -> None:
        """Hand an event to every replica through the message queue."""
        self._queue.emit(event, data, namespace="/chat", room=to, skip_sid=skip_sid)

    def send(self, room: str, body: Any, type: str = "text",
             sender: dict[str, str] | None = None, client_id: str | None = None) -> dict[str, Any]:
        """Persist and deliver a message to `room`; returns the stored message."""
        payload = {"type": type, "body": body, "client_id": client_id}
        return self.messages.send(sender or SYSTEM_SENDER, self.messages.room(room), payload,
                                  via="emitter")

    def close(self) -> None:
        """Release the Redis connections."""
        self._redis.close()
