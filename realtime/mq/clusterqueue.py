"""The message queue on a Redis Cluster: sharded pub/sub, one listener connection per shard master.

python-socketio has no Redis Cluster manager. This one is RedisQueue with its transport swapped:
- every channel is a shard channel (SPUBLISH/SSUBSCRIBE). A room's channel carries the room as
  its hash tag (`<main>:room:<namespace>:{<room>}`), the slot of the room's keys, so the store's
  append script announces a message on the shard that stores it, and a message travels only to
  that shard and to the replicas with a member of the room. The main channel (everything that is
  not one room's emit) is the shard channel `<main>`, on the one shard its name hashes to;
- the listener holds one pub/sub connection per master that owns a channel it wants, each read
  by its own greenlet into one inbox. As on one Redis, it never resubscribes behind our back:
  an error on any of them, a shard channel the server drops (its slot moved: SUNSUBSCRIBE), or
  a master the slot map no longer names, makes it start over on fresh connections: refresh the
  slot map, subscribe every channel on its current owner, and once all are confirmed catch up
  from the store (realtime/mq/sequencer.py fills the gap the move or failover left).
"""
from __future__ import annotations

import collections
import logging
import queue as queues
import threading
import time
from typing import Any, Iterator

from ..store.rediscluster import create_redis_cluster
from . import roomchannels
from .queue import ListenerPubSub, RedisQueue

log = logging.getLogger(__name__)

TOPOLOGY_CHECK = 2.0  # seconds between comparisons of the masters listened to with the slot map
CATCH_UP_TRIES = 5  # catch-ups after a start-over while a shard's reads still fail


class ShardsChanged(Exception):
    """The listener's connections no longer match the cluster: start over."""


class ShardListeners:
    """Shard-channel subscriptions over one pub/sub connection per master, read into one inbox."""

    def __init__(self, cluster: Any):
        self.cluster = cluster
        self.inbox: queues.Queue = queues.Queue()
        self.by_node: dict[str, ListenerPubSub] = {}
        self.channels: dict[str, str] = {}  # channel -> node name it is subscribed on
        self.leaving: collections.Counter = collections.Counter()  # our SUNSUBSCRIBEs not confirmed yet
        self.closed = False

    def _pubsub(self, node: Any) -> ListenerPubSub:
        """The connection to `node`, opened (with its reader) on first use."""
        pubsub = self.by_node.get(node.name)
        if pubsub is None:
            pool = self.cluster.get_redis_connection(node).connection_pool
            pubsub = ListenerPubSub(pool, ignore_subscribe_messages=False)
            self.by_node[node.name] = pubsub
            threading.Thread(target=self._read, args=(node.name, pubsub), daemon=True).start()
        return pubsub

    def subscribe(self, *channels: str) -> None:
        """SSUBSCRIBE each channel on the master that owns its slot (one per command: one slot each)."""
        for channel in channels:
            node = self.cluster.get_node_from_key(channel)
            pubsub = self._pubsub(node)
            self.channels[channel] = node.name
            pubsub.ssubscribe(channel)

    def unsubscribe(self, channel: str) -> None:
        """SUNSUBSCRIBE a channel where it was subscribed."""
        name = self.channels.pop(channel, None)
        if name is not None and name in self.by_node:
            self.leaving[channel] += 1
            self.by_node[name].sunsubscribe(channel)

    def fail(self, error: BaseException) -> None:
        """Make the listener start over."""
        self.inbox.put(error if isinstance(error, ShardsChanged) else ShardsChanged(str(error)))

    def _read(self, name: str, pubsub: ListenerPubSub) -> None:
        """Hand every message of one master's connection to the inbox; an error ends it."""
        try:
            while not self.closed:
                message = pubsub.get_message(timeout=1.0)
                if message is not None:
                    self.inbox.put(message)
        except Exception as exc:
            if not self.closed:
                self.inbox.put(ShardsChanged(f"shard {name}: {exc}"))

    def masters_moved(self) -> bool:
        """Whether a channel's slot is now owned by another master than the one it is subscribed on."""
        return any(self.cluster.get_node_from_key(channel).name != name for channel, name in self.channels.items())

    def listen(self) -> Iterator[dict[str, Any]]:
        """Messages as a plain pub/sub gives them (`message`, `subscribe`); raises to start over."""
        checked = time.monotonic()
        while True:
            try:
                item = self.inbox.get(timeout=TOPOLOGY_CHECK)
            except queues.Empty:
                item = None
            if isinstance(item, BaseException):
                raise item
            if item is not None:
                kind = item["type"]
                kind = kind.decode() if isinstance(kind, bytes) else kind
                if kind == "smessage":
                    yield {**item, "type": "message"}
                elif kind == "ssubscribe":
                    yield {**item, "type": "subscribe"}
                elif kind == "sunsubscribe":
                    channel = item["channel"].decode()
                    if self.leaving[channel] > 0:  # the confirmation of our own SUNSUBSCRIBE
                        self.leaving[channel] -= 1
                    elif channel in self.channels:  # not ours: the server dropped it (slot moved)
                        raise ShardsChanged(f"Redis dropped shard channel {channel}")
            if time.monotonic() - checked >= TOPOLOGY_CHECK:
                checked = time.monotonic()
                if self.masters_moved():
                    raise ShardsChanged("a shard channel's slot has another master now")

    def close(self) -> None:
        """Close every connection (their readers end)."""
        self.closed = True
        for pubsub in list(self.by_node.values()):
            try:
                pubsub.close()
            except Exception:  # closing a broken link; nothing to do about it
                pass


class RedisClusterQueue(RedisQueue):
    """RedisQueue over a Redis Cluster's sharded pub/sub (redis+cluster:// URLs)."""

    name = "realtime-redis-cluster"
    publish_command = "spublish"  # a cluster pipeline sends each to the shard of its channel

    def __init__(self, *args: Any, socket_timeout: float = 5.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.socket_timeout = socket_timeout
        self.awaiting: set[str] = set()  # channels of a (re)subscription not confirmed yet

    # -- channels -----------------------------------------------------------------------------

    def room_channel(self, namespace: str | None, room: Any) -> str | None:
        """The shard channel of `room`'s emits, in the room's slot (None: on the main channel)."""
        return roomchannels.room_channel(self.channel, namespace, room, tagged=True)

    def channel_of(self, data: Any) -> str:
        """The channel this message goes on (a single room's emit: its room channel, if on)."""
        if (not self.room_publish or not isinstance(data, dict) or data.get("method") != "emit"
                or data.get("callback")):
            return self.channel
        return self.room_channel(data.get("namespace"), data.get("room")) or self.channel

    # -- connections --------------------------------------------------------------------------

    def _redis_connect(self) -> None:
        """One RedisCluster client for the process; on a reconnect, a fresh slot map instead."""
        if self.redis is None:
            self.redis = create_redis_cluster(self.redis_url, self.socket_timeout, socket_keepalive=True)
        else:
            self.redis.nodes_manager.initialize()
        self.pubsub = None
        self.connected = True

    # -- listening ----------------------------------------------------------------------------

    def catch_up(self) -> None:
        """Deliver what was stored meanwhile; again, a few times, while a shard cannot answer yet.

        After a failover the listener is back on every master before each shard answers reads
        (CLUSTERDOWN while the cluster agrees on the promotion): a room skipped then would wait
        for its next message to have its gap filled.
        """
        for attempt in range(CATCH_UP_TRIES):
            super().catch_up()
            if self.sequencer is None or not self.sequencer.unsettled:
                return
            time.sleep(min(self.retry_max, 0.5 * 2 ** attempt))
        log.warning("could not catch up %d room(s) after %d tries; their next message fills the gap",
                    len(self.sequencer.unsettled), CATCH_UP_TRIES)

    def subscribing(self, channels: list[str]) -> None:
        """Shards confirm in no common order: the (re)subscription is on once every channel is."""
        self.awaiting = set(channels)

    def new_listener(self) -> ShardListeners:
        """One pub/sub connection per master, opened as channels need them."""
        return ShardListeners(self.redis)

    def confirmed(self, channel: str) -> None:
        """A shard channel is confirmed: wake its joins; once a whole (re)subscription is, catch up."""
        if channel in self.awaiting:
            self.awaiting.discard(channel)
            if channel != self.channel:
                self.room_confirmed(channel)  # main_confirmed is false until the last one: no catch-up yet
            if not self.awaiting:
                self.resubscribed()
        elif channel != self.channel:
            self.room_confirmed(channel)
