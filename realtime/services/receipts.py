"""Read receipts and unread counts."""
from __future__ import annotations

from typing import Any, Callable

from ..errors import ValidationError
from ..store import Store


class ReceiptService:
    """A user's last-read id per room only moves forward; moves are announced to the room."""

    def __init__(self, store: Store, broadcast: Callable[..., None]):
        self.store = store
        self.broadcast = broadcast

    def mark_read(self, user: dict[str, Any], room: str, message_id: int) -> int:
        """Record that `user` read up to `message_id`; returns the effective last-read id."""
        try:
            moved, effective = self.store.advance_read(room, user["id"], message_id)
        except ValueError as exc:
            raise ValidationError("invalid_message_id", str(exc)) from exc
        if moved:
            self.broadcast("read", {"room": room, "user": user, "message_id": effective}, room)
        return effective

    def reads(self, room: str) -> dict[str, int]:
        """Every user's last-read id in a room."""
        return self.store.read_positions(room)

    def unread(self, room: str, last_read: int, bounds: tuple[int, int] | None = None) -> int:
        """How many retained messages come after `last_read` (ids are contiguous per room)."""
        oldest, newest = bounds or self.store.room_bounds(room)
        if not oldest:
            return 0
        return max(0, newest - max(last_read, oldest - 1))
