"""Connections whose token runs out: warn them, then let them go unless they refresh."""
from __future__ import annotations

import time
from typing import Any


class TokenWatch:
    """This replica's connections and when their tokens expire."""

    def __init__(self, notice: float, grace: float):
        self.notice = notice
        self.grace = grace
        self.principals: dict[str, Any] = {}
        self.warned: set[str] = set()

    def track(self, sid: str, principal: Any) -> None:
        """Watch (or, after a refresh, watch again) a connection's token."""
        self.principals[sid] = principal
        self.warned.discard(sid)

    def forget(self, sid: str) -> None:
        """Stop watching a closed connection."""
        self.principals.pop(sid, None)
        self.warned.discard(sid)

    def due(self, now: float | None = None) -> tuple[list[tuple[str, float]], list[str]]:
        """(connections to warn with seconds left, connections past expiry and grace)."""
        now = time.time() if now is None else now
        warn, drop = [], []
        for sid, principal in list(self.principals.items()):
            left = principal.exp - now
            if left < -self.grace:
                drop.append(sid)
            elif left < self.notice and sid not in self.warned:
                self.warned.add(sid)
                warn.append((sid, left))
        return warn, drop
