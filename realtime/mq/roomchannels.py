"""Per-room message-queue channels: which channel an emit travels on, and which ones a replica needs.

An emit to one room goes on that room's own channel, `<main>:room:<namespace>:<room>`, which only
replicas with a local member of the room subscribe; everything else (broadcasts, lists of rooms,
a connection's own sid room, callbacks, enter/leave/close_room, disconnect) stays on the main
channel, which every replica subscribes, so stock python-socketio emitters keep working. The
channel is only a route: the message still names its namespace and room, so a replica that gets a
message it has no member for delivers it to nobody.
"""
from __future__ import annotations

import collections
import re
import threading
from typing import Any

# on: subscribe room channels and publish room emits on them; subscribe: only subscribe (the
# first step of a rolling upgrade); off: the main channel only.
MODES = ("on", "subscribe", "off")
_ALIASES = {"1": "on", "true": "on", "yes": "on", "0": "off", "false": "off", "no": "off", "": "off"}
# python-engineio's session ids: 15 random bytes, URL-safe base64. A connection's own room never
# gets a channel (it would cost a SUBSCRIBE per connection); a room named like one rides on main.
SID_RE = re.compile(r"[A-Za-z0-9_-]{20}\Z")


def mode(value: Any) -> str:
    """The REALTIME_MQ_ROOM_CHANNELS setting as one of MODES (booleans read as on/off)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value).strip().lower()
    text = _ALIASES.get(text, text)
    if text not in MODES:
        raise ValueError(f"REALTIME_MQ_ROOM_CHANNELS must be one of {', '.join(MODES)}; got {value!r}")
    return text


def room_channel(main: str, namespace: str | None, room: Any, tagged: bool = False) -> str | None:
    """The channel of `room`'s own emits, or None when they go on the main channel.

    `tagged` (Redis Cluster): the room is the channel's hash tag, so it hashes to the room's slot.
    """
    if not isinstance(room, str) or not room or SID_RE.match(room):
        return None
    if tagged:
        return f"{main}:room:{namespace or '/'}:{{{room}}}"
    return f"{main}:room:{namespace or '/'}:{room}"


def channel_for(main: str, message: dict[str, Any]) -> str:
    """Where to publish a message-queue message: a single room's emit on its room's channel."""
    if message.get("method") != "emit" or message.get("callback"):
        return main
    return room_channel(main, message.get("namespace"), message.get("room")) or main


class Subscription:
    """One room channel this replica listens to; `ready` once Redis confirmed it on this connection."""

    __slots__ = ("channel", "ready", "late")

    def __init__(self, channel: str):
        self.channel = channel
        self.ready = threading.Event()
        self.late = False  # someone stopped waiting for it: catch up once it is confirmed


class Subscriptions:
    """The room channels wanted, and which SUBSCRIBE confirmation Redis owes to which of them.

    Redis confirms a channel's SUBSCRIBEs in the order they were sent on one connection, so a
    FIFO per channel tells a confirmation owed to an older subscription (one left and entered
    again meanwhile) from the current one's. No I/O here: the caller sends and serializes.
    """

    def __init__(self) -> None:
        self.wanted: dict[str, Subscription] = {}
        self.owed: dict[str, collections.deque[Subscription]] = {}

    def want(self, channel: str) -> tuple[Subscription, bool]:
        """The channel's subscription, and whether it is new (a SUBSCRIBE has to be sent)."""
        existing = self.wanted.get(channel)
        if existing is not None:
            return existing, False
        self.wanted[channel] = subscription = Subscription(channel)
        return subscription, True

    def sent(self, subscription: Subscription) -> None:
        """A SUBSCRIBE for it is about to go out: the next confirmation of its channel may be its."""
        self.owed.setdefault(subscription.channel, collections.deque()).append(subscription)

    def drop(self, channel: str) -> Subscription | None:
        """No local member is left: forget the channel (an UNSUBSCRIBE has to be sent if it was on)."""
        subscription = self.wanted.pop(channel, None)
        if subscription is not None:
            subscription.ready.set()  # nobody is left to wait for it
        return subscription

    def confirmed(self, channel: str) -> Subscription | None:
        """Redis confirmed a SUBSCRIBE of `channel`: the subscription it was for, if still wanted."""
        owed = self.owed.get(channel)
        if not owed:
            return None
        subscription = owed.popleft()
        if not owed:
            del self.owed[channel]
        if self.wanted.get(channel) is not subscription:
            return None  # an older one's confirmation (the room emptied and filled again since)
        subscription.ready.set()
        return subscription

    def restart(self) -> list[Subscription]:
        """A new connection: nothing is confirmed on it yet and every wanted channel is owed."""
        self.owed = {}
        for subscription in self.wanted.values():
            subscription.ready.clear()
            self.sent(subscription)
        return list(self.wanted.values())
