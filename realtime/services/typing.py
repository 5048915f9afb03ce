"""Typing indicators: volatile, throttled per user, expiring on their own."""
from __future__ import annotations

from typing import Any, Callable

from ..store import Store


class TypingService:
    """Relays `typing` to the other members of a room; nothing is persisted."""

    def __init__(self, store: Store, broadcast: Callable[..., None], throttle: float, expires: float):
        self.store = store
        self.broadcast = broadcast
        self.throttle = throttle
        self.expires = expires

    def typing(self, user: dict[str, Any], room: str, active: bool, skip_sid: str | None) -> bool:
        """Announce a change; False when a `typing: true` was throttled (not sent)."""
        key = f"typing:{room}:{user['id']}"
        if active and not self.store.claim(key, self.throttle):
            return False
        if not active:
            self.store.release(key)
        event = {"room": room, "user": user, "typing": active,
                 "expires_in": int(self.expires * 1000) if active else 0}
        self.broadcast("typing", event, room, skip_sid=skip_sid)
        return True
