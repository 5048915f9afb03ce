"""Connections and their tokens: warn those about to expire, let go of expired and revoked ones."""
from __future__ import annotations

import time
from typing import Any


class TokenWatch:
    """One namespace's authenticated connections on this replica (sid -> principal)."""

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

    def using(self, jti: str) -> list[str]:
        """The connections authenticated with the token id `jti`."""
        return [sid for sid, principal in list(self.principals.items()) if principal.jti == jti]

    def issued_before(self, user_id: str, before: float) -> list[str]:
        """The user's connections whose token was issued before `before` (or says not when)."""
        return [sid for sid, principal in list(self.principals.items())
                if principal.id == user_id and (principal.iat is None or principal.iat < before)]

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
