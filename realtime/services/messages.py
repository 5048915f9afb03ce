"""Accepting, persisting, broadcasting and reading room messages."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from ..store import Announcement, Quota, Retention, RoomState, Store
from . import validation
from ..errors import ValidationError

# broadcast(event, data, to, skip_sid=None): to is a room or a list of rooms, on every replica.
Broadcast = Callable[..., None]


class Relay(Protocol):
    """Broadcasts that the store publishes with the append (realtime.mq.queue.StoreAnnounced)."""

    def announcement(self, event: str, to: str | list[str]) -> Announcement:
        """The PUBLISH for the store to make with a new message."""

    def deliver_here(self, event: str, data: dict[str, Any], to: str | list[str]) -> None:
        """This replica's half of a broadcast the store published."""


@dataclass(frozen=True)
class MessagePolicy:
    """Limits that apply to every message, whoever sends it."""

    max_chars: int = 4000
    page_max: int = 100
    recovery_max: int = 500
    rooms: frozenset[str] = frozenset()
    retention: Retention = Retention()


def user_room(user_id: str) -> str:
    """The Socket.IO room every connection of a user is in (not joinable by clients)."""
    return f"user:{user_id}"


def audience(room: str) -> str | list[str]:
    """Where a room's messages go: the room, plus both users' own rooms for a direct room."""
    pair = validation.dm_users(room)
    return [room, *(user_room(u) for u in pair)] if pair else room


def now_ms() -> int:
    """Wall-clock time in milliseconds since the epoch."""
    return int(time.time() * 1000)


class MessageService:
    """Every accepted message is persisted first, then broadcast to its room."""

    def __init__(self, store: Store, broadcast: Broadcast, policy: MessagePolicy,
                 schemas: dict[str, Callable[[Any, str], Any]] | None = None,
                 webhooks: tuple[str, ...] = (), relay: Relay | None = None):
        self.store = store
        self.relay = relay
        self.webhooks = webhooks
        self.broadcast = broadcast
        self.policy = policy
        self.body_schemas = schemas or {"text": lambda body, room: validation.text_body(body, policy.max_chars)}

    def room(self, value: Any) -> str:
        """A valid room name under this policy (who may use it is AccessPolicy's business)."""
        if isinstance(value, str) and validation.dm_users(value):
            return value
        return validation.room_name(value, self.policy.rooms)

    def direct(self, sender: dict[str, str], to: Any) -> tuple[str, list[str]]:
        """The room of a private message and the rooms to deliver it to (every connection of both)."""
        recipient = validation.user_id(to)
        if recipient == sender["id"]:
            raise ValidationError("invalid_payload", "to must be another user")
        room = validation.dm_room(sender["id"], recipient)
        return room, audience(room)

    def conversations(self, user_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """A user's direct-message rooms, most recent first, with the peer and the newest id."""
        listing = []
        for room in self.store.conversations(user_id, limit):
            low, high = validation.dm_users(room) or (user_id, user_id)
            listing.append({"room": room, "peer": high if low == user_id else low,
                            "last_id": self.store.room_bounds(room)[1]})
        return listing

    def body(self, kind: Any, body: Any, room: str) -> Any:
        """The body validated against its type's schema, for a message to `room`."""
        schema = self.body_schemas.get(kind) if isinstance(kind, str) else None
        if schema is None:
            raise ValidationError("unsupported_type",
                                  f"type must be one of: {', '.join(sorted(self.body_schemas))}")
        return schema(body, room)

    def send(self, sender: dict[str, str], room: str, payload: dict[str, Any],
             audience: str | list[str] | None = None, quota: Quota | None = None,
             via: str | None = None) -> dict[str, Any]:
        """Persist, then broadcast to `audience` (default: the room); a repeated client_id returns the original.

        `quota` (the sender's rate limit) is taken by the store in the same step (OverLimit).
        `via` ("api", "emitter") marks a message a server sent, so clients tell it from a user's.
        """
        kind = payload.get("type", "text")
        message = {"from": {"id": sender["id"], "name": sender["name"]}, "type": kind,
                   "body": self.body(kind, payload.get("body"), room), "ts": now_ms()}
        key = validation.client_id(payload.get("client_id"))
        if key is not None:
            message["client_id"] = key
        if via is not None:
            message["via"] = via
        pair = validation.dm_users(room)
        if pair:
            # Indexed first: harmless if the append then fails, and the recipient finds it later.
            self.store.touch_conversation(list(pair), room, message["ts"])
        to = audience or room
        # With a relay the store publishes the message in the append itself: one round trip.
        announce = self.relay.announcement("message", to) if self.relay else None
        appended = self.store.append_message(
            room, message, f"{sender['id']}:{key}" if key else None, self.policy.retention,
            self.webhooks, announce, quota)
        if appended.published:
            self.relay.deliver_here("message", appended.message, to)
        elif not appended.duplicate or appended.broadcast_repeat:
            self.broadcast("message", appended.message, to)
        return appended.message

    def missed(self, room: str, since: int, bounds: tuple[int, int] | None = None,
               after: list[dict[str, Any]] | None = None) -> tuple[list[dict[str, Any]], bool]:
        """Messages after `since`, and whether some were lost to retention or the bound.

        `after`: those messages, already read with `bounds` (by the join's store call).
        """
        oldest, newest = bounds or self.store.room_bounds(room)
        if since > newest:
            # The client saw ids the store no longer has (it lost data): start over, flagged.
            return self.store.messages_after(room, 0, self.policy.recovery_max), True
        messages = after if after is not None else self.store.messages_after(room, since, self.policy.recovery_max)
        gap = oldest > since + 1 if oldest else newest > since
        cut = bool(messages) and messages[-1]["id"] < newest
        return messages, gap or cut

    def recover(self, room: str, since: int | None, epoch: str | None, state: RoomState,
                after: list[dict[str, Any]] | None = None) -> tuple[list[dict[str, Any]], bool, bool]:
        """What a joining client missed: (messages, truncated, reset).

        A client whose `epoch` is not the room's current one saw another history (the store lost
        the room's data since): it gets `reset` and the room's most recent messages, like a first
        join, never a partial recovery by ids that now name other messages. No `since`: nothing.
        `after`: the messages after `since`, when the caller read them with `state`.
        """
        if since is None:
            return [], False, False
        if epoch is not None and epoch != state.epoch:
            recent = self.store.messages_before(room, None, self.policy.recovery_max)
            return recent, bool(recent) and recent[0]["id"] > 1, True
        missed, truncated = self.missed(room, since, (state.oldest, state.newest), after)
        return missed, truncated, False

    def page(self, room: str, before: int | None, after: int | None,
             limit: int | None) -> tuple[list[dict[str, Any]], str | None]:
        """A history page and the epoch its ids count in (read from the store if it is empty)."""
        messages = self.history(room, before, after, limit)
        return messages, (messages[-1].get("epoch") if messages else self.store.room_state(room).epoch)

    def history(self, room: str, before: int | None, after: int | None,
                limit: int | None) -> list[dict[str, Any]]:
        """A page of messages, oldest first: before an id, after an id, or the newest."""
        size = validation.limit(limit, self.policy.page_max, min(50, self.policy.page_max))
        if after is not None:
            page = self.store.messages_after(room, after, size)
            return [m for m in page if before is None or m["id"] < before]
        return self.store.messages_before(room, before, size)
