"""Rate limits for Socket.IO events and connections, on the same `limits` storage as HTTP."""
from __future__ import annotations

import time

from limits import RateLimitItem, parse
from limits.storage import Storage
from limits.strategies import SlidingWindowCounterRateLimiter

from ..errors import AppError
from ..store import StoreUnavailable


def parse_rules(spec: str) -> dict[str, RateLimitItem]:
    """`"send=20/10 seconds; join=30/minute"` as {event: limit}; an empty limit disables one."""
    rules = {}
    for part in spec.split(";"):
        name, _, limit = part.partition("=")
        if name.strip() and limit.strip():
            rules[name.strip()] = parse(limit.strip())
    return rules


class RateLimiter:
    """Counts hits per (rule, key) across every replica sharing the storage."""

    def __init__(self, storage: Storage, rules: dict[str, RateLimitItem]):
        self.storage = storage
        self.rules = rules
        self.strategy = SlidingWindowCounterRateLimiter(storage)

    def hit(self, rule: str, key: str) -> None:
        """Count one hit; raise `rate_limited` (with retry_after) when over the rule's limit."""
        limit = self.rules.get(rule)
        if limit is None:
            return
        try:
            if self.strategy.hit(limit, rule, key):
                return
            reset = self.strategy.get_window_stats(limit, rule, key).reset_time
        except Exception as exc:  # the shared counters are unreachable: retryable, not a bug
            raise StoreUnavailable(f"rate-limit storage: {exc}") from exc
        raise AppError("rate_limited", f"too many {rule} requests, slow down", 429,
                       retry_after=round(max(0.1, reset - time.time()), 1))
