"""Accepting, persisting, broadcasting and reading room messages."""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

from ..store import Retention, Store
from . import validation
from ..errors import ValidationError

Broadcast = Callable[[str, dict[str, Any], str], None]


@dataclass(frozen=True)
class MessagePolicy:
    """Limits that apply to every message, whoever sends it."""

    max_chars: int = 4000
    page_max: int = 100
    recovery_max: int = 500
    rooms: frozenset[str] = frozenset()
    retention: Retention = Retention()


def now_ms() -> int:
    """Wall-clock time in milliseconds since the epoch."""
    return int(time.time() * 1000)


class MessageService:
    """Every accepted message is persisted first, then broadcast to its room."""

    def __init__(self, store: Store, broadcast: Broadcast, policy: MessagePolicy):
        self.store = store
        self.broadcast = broadcast
        self.policy = policy
        self.body_schemas = {"text": lambda body: validation.text_body(body, policy.max_chars)}

    def room(self, value: Any) -> str:
        """A valid room name under this policy."""
        return validation.room_name(value, self.policy.rooms)

    def body(self, kind: Any, body: Any) -> Any:
        """The body validated against its type's schema."""
        schema = self.body_schemas.get(kind) if isinstance(kind, str) else None
        if schema is None:
            raise ValidationError("unsupported_type",
                                  f"type must be one of: {', '.join(sorted(self.body_schemas))}")
        return schema(body)

    def send(self, sender: dict[str, str], room: str, payload: dict[str, Any]) -> dict[str, Any]:
        """Persist and broadcast a message; a repeated client_id returns the original."""
        kind = payload.get("type", "text")
        message = {"from": {"id": sender["id"], "name": sender["name"]}, "type": kind,
                   "body": self.body(kind, payload.get("body")), "ts": now_ms()}
        key = validation.client_id(payload.get("client_id"))
        if key is not None:
            message["client_id"] = key
        appended = self.store.append_message(
            room, message, f"{sender['id']}:{key}" if key else None, self.policy.retention)
        if not appended.duplicate:
            self.broadcast("message", appended.message, room)
        return appended.message

    def missed(self, room: str, since: int) -> tuple[list[dict[str, Any]], bool]:
        """Messages after `since`, and whether some were lost to retention or the bound."""
        oldest, newest = self.store.room_bounds(room)
        messages = self.store.messages_after(room, since, self.policy.recovery_max)
        gap = oldest > since + 1 if oldest else newest > since
        cut = bool(messages) and messages[-1]["id"] < newest
        return messages, gap or cut

    def history(self, room: str, before: int | None, after: int | None,
                limit: int | None) -> list[dict[str, Any]]:
        """A page of messages, oldest first: before an id, after an id, or the newest."""
        size = validation.limit(limit, self.policy.page_max, min(50, self.policy.page_max))
        if after is not None:
            page = self.store.messages_after(room, after, size)
            return [m for m in page if before is None or m["id"] < before]
        return self.store.messages_before(room, before, size)
