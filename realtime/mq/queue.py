"""The Socket.IO message queue on Redis, with a listener that comes back quickly and no gaps.

python-socketio's RedisManager (5.14-5.18) re-subscribes after a Redis outage with a backoff
that doubles up to 60 s, so a replica could stay deaf for a minute after Redis returns, and
whatever was published meanwhile is lost to it. This adapter overrides hooks of the manager
(written for python-socketio 5.14-5.18; tests/unit/test_factory.py and
tests/unit/test_roomchannels.py check they exist):
- `_redis_listen_with_retries`: a short, capped backoff, TCP keepalive and health checks, and a
  catch-up from the store after every re-subscription;
- `_handle_emit` (every emit, local or from another replica, passes here): `message` events go
  through a Sequencer, which delivers each room's messages once and in id order, fetching any
  gap from the store;
- `_publish`: on a gevent replica the handler no longer waits for PUBLISH; one publisher greenlet
  sends what queued up, in order, pipelined. A message is persisted before it is published, so a
  publish that fails is a gap the other replicas fill from the store, as with the stock manager.
  An external emitter (write_only) still publishes before `emit` returns;
- chat messages skip `_publish` altogether: the store's append script publishes them
  (`StoreAnnounced` builds the message-queue message around the stored one, and delivers the
  local half through `_handle_emit` like any emit);
- per-room channels (realtime/mq/roomchannels.py): an emit to one room is published on that room's
  channel, and `basic_enter_room`/`basic_leave_room` (every join, leave, close and disconnect
  passes there) subscribe a room's channel when its first local member enters, waiting for Redis
  to confirm, and unsubscribe it when the last one leaves. The listener owns the pub/sub
  connection: after any error it builds a new one, subscribes every channel again, then catches up.
"""
from __future__ import annotations

import collections
import functools
import json
import logging
import threading
import time
from typing import Any, Iterator

import redis
import socketio

from . import roomchannels
from ..transport.roomindex import RoomIndex
from .sequencer import Sequencer
from ..services.messages import audience
from ..store import Announcement, deadline

log = logging.getLogger(__name__)
# Stands for the message while the message-queue message around it is encoded.
SLOT = "\u0000message\u0000"
# Emits waiting for the publisher. While Redis hangs the publisher waits with them; what waits is
# never a chat message (the store publishes those, and they are recoverable by id) but typing,
# presence and read notices, whose state a client gets again on join: past this many, the oldest
# go, so a long hang cannot grow the replica's memory without bound.
OUTBOX_MAX = 10_000


class ListenerPubSub(redis.client.PubSub):
    """A PubSub that never reconnects behind the listener's back.

    redis-py reconnects a broken pub/sub connection inside a read and re-subscribes what it knows,
    silently: the listener would then neither catch up nor know which room channels are confirmed.
    Here an error reaches the listener, which starts over on a new connection.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # redis-py's default handler of a RESP3 push (every message) looks up a logger under
        # logging's lock and builds the DEBUG text of the whole message, DEBUG on or not.
        kwargs.setdefault("push_handler_func", as_received)
        super().__init__(*args, **kwargs)

    def fail(self, error: BaseException) -> None:
        """Make the listener start over: its blocked read ends with an error."""
        connection = self.connection
        if connection is not None:
            connection.disconnect()

    def _execute(self, conn: Any, command: Any, *args: Any, **kwargs: Any) -> Any:
        """Run the command once; errors go to the caller."""
        return command(*args, **kwargs)

    def check_health(self) -> None:
        """Send the health-check PING under the lock the joins' SUBSCRIBEs take (no interleaving)."""
        conn = self.connection
        # Asked before every message read: the lock is only worth taking when the PING is due.
        if conn is not None and conn.health_check_interval and time.monotonic() <= conn.next_health_check:
            return
        with self._lock:
            super().check_health()


def as_received(response: Any) -> Any:
    """A pub/sub push message, handed on as read."""
    return response


class RedisQueue(RoomIndex, socketio.RedisManager):
    """RedisManager whose listener retries every `retry_max` seconds at most (rooms indexed)."""

    name = "realtime-redis"
    publish_command = "publish"

    def __init__(self, url: str, channel: str, retry_max: float = 2.0, write_only: bool = False,
                 sequencer: Sequencer | None = None, room_channels: Any = "on",
                 subscribe_timeout: float = 5.0, metrics: Any = None):
        options = {"socket_keepalive": True, "health_check_interval": 10, "socket_connect_timeout": 5}
        super().__init__(url, channel=channel, write_only=write_only, redis_options=options)
        self.retry_max = retry_max
        self.sequencer = sequencer
        self.metrics = metrics  # realtime.ops.metrics.Metrics: deliveries counted here
        self.subscriptions = 0
        self.outbox: collections.deque = collections.deque()
        self.outbox_dropped = 0
        self.publisher: Any = None
        mode = roomchannels.mode(room_channels)
        self.room_publish = mode == "on"
        self.room_subscribe = mode != "off" and not write_only
        self.subscribe_timeout = subscribe_timeout
        self.rooms_wanted = roomchannels.Subscriptions()
        self.listening: ListenerPubSub | None = None  # the listener's connection, once subscribed
        self.listener_ident: int | None = None
        self.main_confirmed = False
        self.catch_up_due = False
        self._subscribing = threading.Lock()  # one SUBSCRIBE/UNSUBSCRIBE on the wire at a time

    def set_server(self, server: Any) -> None:
        """Attach to the server, but decode queue messages with the standard JSON module.

        The server's module (realtime.transport.wirejson) guards against hostile client packets at a cost
        on every decode; queue messages come from our replicas and emitters.
        """
        super().set_server(server)
        self.json = json

    # -- publishing ---------------------------------------------------------------------------

    def _publish(self, data: Any) -> None:
        """Queue for the publisher greenlet (gevent replicas); elsewhere publish at once."""
        if self.write_only or getattr(self.server, "async_mode", None) != "gevent":
            return self._publish_batch([data])
        if len(self.outbox) >= OUTBOX_MAX:
            self.drop_oldest()
        self.outbox.append(data)
        if self.publisher is None:
            self.publisher = self.server.start_background_task(self._publish_queued)

    def drop_oldest(self) -> None:
        """Make room in a full outbox (the publisher is stuck on Redis): the oldest emit goes."""
        self.outbox.popleft()
        self.outbox_dropped += 1
        if self.metrics is not None:
            self.metrics.queue_dropped.inc()
        if self.outbox_dropped % OUTBOX_MAX == 1:  # once per outbox-full of drops, not per emit
            log.warning("message-queue outbox full (%d waiting for Redis): dropped %d oldest emit(s) so far",
                        len(self.outbox), self.outbox_dropped)

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
        # One connection, commands in order: a room's emits keep their order on its channel, and a
        # replica subscribed to several of our channels gets them in the order they were sent.
        channels = [self.channel_of(data) for data in batch]
        for attempt in (1, 2):
            try:
                if not self.connected:
                    self._redis_connect()
                pipe = self.redis.pipeline(transaction=False)
                publish = getattr(pipe, self.publish_command)
                for channel, data in zip(channels, batch):
                    publish(channel, self.json.dumps(data))
                pipe.execute()
                return
            except Exception as exc:
                self.connected = False
                log.error("cannot publish %d message(s) to Redis (attempt %d): %s", len(batch), attempt, exc)

    def envelope(self, event: str, data: Any, to: Any, namespace: str) -> dict[str, Any]:
        """The message-queue message of an emit, as python-socketio's PubSubManager.emit makes it."""
        return {"method": "emit", "event": event, "data": [data], "binary": False,
                "namespace": namespace, "room": to, "skip_sid": None, "callback": None,
                "host_id": self.host_id}

    def room_channel(self, namespace: str | None, room: Any) -> str | None:
        """The channel of `room`'s own emits, or None when they go on the main channel."""
        return roomchannels.room_channel(self.channel, namespace, room)

    def channel_of(self, data: Any) -> str:
        """The channel this message goes on (a single room's emit: its room channel, if on)."""
        if not self.room_publish or not isinstance(data, dict):
            return self.channel
        return roomchannels.channel_for(self.channel, data)

    # -- local delivery -----------------------------------------------------------------------

    def _handle_emit(self, message: dict[str, Any]) -> None:
        """Deliver locally; chat messages in per-room order, gaps filled, repeats dropped."""
        payload = message.get("data")
        chat = (self.sequencer is not None and message.get("event") == "message"
                and message.get("namespace") == "/chat" and isinstance(payload, list)
                and len(payload) == 1 and isinstance(payload[0], dict) and "id" in payload[0])
        if not chat:
            return super()._handle_emit(message)
        room = payload[0]["room"]
        if not self.has_members("/chat", message.get("room")):
            # Nobody here to deliver to: remembering the id would leave it stale once this
            # replica stops hearing the room, and a later join would "fill" an old gap.
            self.sequencer.forget(room)
            return
        with self.sequencer.ordered(room):
            try:
                batch = self.sequencer.admit(payload[0])
            except deadline.Expired:
                # The event that stored it ran out of time filling a gap before it: a greenlet
                # without that deadline delivers it (or a later message of the room does first).
                self.server.start_background_task(self._handle_emit, message)
                return
            for item in batch:
                super()._handle_emit({**message, "data": [item]})
                if self.metrics is not None:
                    self.metrics.message_delivered(item)

    def has_members(self, namespace: str, to: Any) -> bool:
        """True if a connection of this replica is in `to` (a room, a list of rooms, or all)."""
        rooms = self.rooms.get(namespace, {})
        targets = to if isinstance(to, (list, tuple)) else [to]
        return any(target in rooms for target in targets)

    def catch_up(self) -> None:
        """Deliver what was stored while this replica was not listening."""
        for item in self.sequencer.pending() if self.sequencer else []:
            self._handle_emit({"method": "emit", "event": "message", "data": [item],
                               "namespace": "/chat", "room": audience(item["room"]),
                               "host_id": self.host_id})

    # -- room membership: subscribe a room's channel while it has local members ----------------

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: Any = None) -> None:
        """Enter the room; its first local member subscribes its channel (and waits for Redis)."""
        first = room not in self.rooms.get(namespace, {})
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        if not first or room is None or room == sid:
            return
        if namespace == "/chat" and self.sequencer is not None:
            self.sequencer.forget(room)  # what it last delivered here, before the room emptied, is stale
        channel = self.room_channel(namespace, room) if self.room_subscribe else None
        if channel is not None:
            self.listen_to(channel)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        """Leave the room; after its last local member, stop listening to its channel."""
        super().basic_leave_room(sid, namespace, room)
        if room is None or room in self.rooms.get(namespace, {}):
            return
        if namespace == "/chat" and self.sequencer is not None:
            self.sequencer.forget(room)
        channel = self.room_channel(namespace, room) if self.room_subscribe else None
        if channel is not None:
            self.stop_listening(channel)

    def listen_to(self, channel: str) -> None:
        """Subscribe `channel`; return once Redis confirmed it (or the wait timed out)."""
        with self._subscribing:
            subscription, new = self.rooms_wanted.want(channel)
            if new and self.listening is not None:
                self.rooms_wanted.sent(subscription)
                self.send_to_listener("subscribe", channel)
        if subscription.ready.is_set() or threading.get_ident() == self.listener_ident:
            return  # the listener itself (a remote enter_room) cannot wait for its own read
        # Down or reconnecting: no wait. The listener subscribes it with the others, then catches up.
        left = deadline.remaining()  # an event's deadline (a Redis that hangs) cuts the wait short
        wait = self.subscribe_timeout if left is None else max(0.0, min(self.subscribe_timeout, left))
        if self.listening is None or not subscription.ready.wait(wait):
            subscription.late = True
            if self.listening is not None:
                log.warning("Redis has not confirmed the subscription to %s within %.1fs; "
                            "catching up once it does", channel, self.subscribe_timeout)

    def stop_listening(self, channel: str) -> None:
        """Unsubscribe `channel` (no wait: what still arrives on it finds no member)."""
        with self._subscribing:
            if self.rooms_wanted.drop(channel) is not None and self.listening is not None:
                self.send_to_listener("unsubscribe", channel)

    def send_to_listener(self, command: str, channel: str) -> None:
        """(S)SUBSCRIBE/(S)UNSUBSCRIBE through the listener; on failure, make it start over."""
        listener = self.listening
        try:
            getattr(listener, command)(channel)
        except Exception as exc:
            log.warning("cannot %s %s (%s); the listener reconnects", command, channel, exc)
            listener.fail(exc)

    # -- listening ----------------------------------------------------------------------------

    def _listen(self) -> Iterator[Any]:
        """Messages of every channel we subscribe; confirmations go to the waiting joins."""
        # Our own emits come back on every channel we publish and listen to; python-socketio
        # would decode each only to drop it by its host_id, which its messages put last (a
        # callback, which must be handled here, puts it second).
        own = f'"host_id": {self.json.dumps(self.host_id)}}}'.encode()
        for message in self._redis_listen_with_retries():
            kind = message["type"]
            if kind == "message" and "data" in message:
                data = message["data"]
                if not (isinstance(data, bytes) and data.endswith(own)):
                    yield data
            elif kind == "subscribe":
                self.confirmed(message["channel"].decode())

    def confirmed(self, channel: str) -> None:
        """Redis confirmed a SUBSCRIBE: wake its joins; after a reconnect or a late one, catch up."""
        if channel == self.channel:
            # Subscribed last in a (re)subscription: every room channel before it is on, too.
            self.resubscribed()
        else:
            self.room_confirmed(channel)

    def resubscribed(self) -> None:
        """A whole (re)subscription is on: after a reconnect, or a room confirmed late, catch up."""
        self.main_confirmed = True
        if self.subscriptions > 1 or self.catch_up_due:
            self.catch_up_due = False
            self.server.start_background_task(self.catch_up)

    def room_confirmed(self, channel: str) -> None:
        """A room channel is on: wake its joins; one confirmed late catches up (now or with the rest)."""
        subscription = self.rooms_wanted.confirmed(channel)
        if subscription is not None and subscription.late:
            subscription.late = False
            if self.main_confirmed:
                self.server.start_background_task(self.catch_up)
            else:
                self.catch_up_due = True

    def _redis_listen_with_retries(self) -> Iterator[dict[str, Any]]:
        """Yield pub/sub messages forever, starting over on fresh connections with a capped backoff."""
        self.listener_ident = threading.get_ident()
        delay = 0.1
        while True:
            listener = None
            try:
                self._redis_connect()
                listener = self.new_listener()
                with self._subscribing:
                    self.main_confirmed = False
                    channels = [*(s.channel for s in self.rooms_wanted.restart()), self.channel]
                    self.subscribing(channels)
                    listener.subscribe(*channels)  # main last: on one Redis its confirmation ends the batch
                    self.listening = listener
                self.subscriptions += 1
                delay = 0.1
                yield from listener.listen()
                log.warning("message queue subscription ended; subscribing again")
            except Exception as exc:
                log.warning("message queue listener lost Redis (%s); retrying in %.1fs", exc, delay)
            finally:
                with self._subscribing:
                    if self.listening is listener:
                        self.listening = None
                if listener is not None:
                    listener.close()
            time.sleep(delay)
            delay = min(delay * 2, self.retry_max)

    def new_listener(self) -> Any:
        """The listener's own connection: a failed publish reconnects too and swaps self.pubsub."""
        return ListenerPubSub(self.redis.connection_pool, ignore_subscribe_messages=False)

    def subscribing(self, channels: list[str]) -> None:
        """A (re)subscription of `channels` starts (a hook: one Redis confirms them in order)."""


class StoreAnnounced:
    """Emits of stored messages whose PUBLISH the store makes in the append (one round trip)."""

    def __init__(self, queue: RedisQueue, namespace: str):
        self.queue = queue
        self.namespace = namespace
        # Per message only the stored body changes: what goes around it is built once per audience.
        self._around = functools.lru_cache(maxsize=1024)(self._build)

    def announcement(self, event: str, to: Any) -> Announcement:
        """The PUBLISH of `event` to `to`, with the stored message still to be spliced in."""
        return self._around(event, tuple(to) if isinstance(to, list) else to)

    def _build(self, event: str, to: Any) -> Announcement:
        """The channel and the JSON before and after the message, for one event and audience."""
        envelope = self.queue.envelope(event, SLOT, list(to) if isinstance(to, tuple) else to,
                                       self.namespace)
        prefix, suffix = self.queue.json.dumps(envelope).split(self.queue.json.dumps(SLOT), 1)
        return Announcement(self.queue.channel_of(envelope), prefix, suffix)

    def deliver_here(self, event: str, data: dict[str, Any], to: Any) -> None:
        """The local half of an emit the store published: this replica's members, in order."""
        self.queue._handle_emit(self.queue.envelope(event, data, to, self.namespace))
