"""Rate limits for Socket.IO events, connections and server sends, counted in the store."""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Iterator

from limits import RateLimitItem, parse

from ..errors import AppError
from ..store import OverLimit, Quota, Store


def parse_rules(spec: str) -> dict[str, RateLimitItem]:
    """`"send=20/10 seconds; join=30/minute"` as {event: limit}; an empty limit disables one."""
    rules = {}
    for part in spec.split(";"):
        name, _, limit = part.partition("=")
        if name.strip() and limit.strip():
            rules[name.strip()] = parse(limit.strip())
    return rules


def rate_limited(exc: OverLimit) -> AppError:
    """The contract's refusal of a hit over its limit."""
    return AppError("rate_limited", f"too many {exc.quota.rule} requests, slow down", 429,
                    retry_after=max(0.1, math.ceil(exc.retry_after * 10) / 10))  # never too early


class RateLimiter:
    """Counts hits per (rule, key) in the store, across every replica sharing it."""

    def __init__(self, store: Store, rules: dict[str, RateLimitItem]):
        self.store = store
        self.quotas = {rule: (limit.amount, float(limit.get_expiry())) for rule, limit in rules.items()}

    def quota(self, rule: str, key: str) -> Quota | None:
        """One hit of `key` under `rule`, or None when the rule is off."""
        limit = self.quotas.get(rule)
        return Quota(rule, key, *limit) if limit else None

    def hit(self, rule: str, key: str) -> None:
        """Count one hit; raise `rate_limited` (with retry_after) when over the rule's limit."""
        quota = self.quota(rule, key)
        if quota is not None:
            self.take(quota)

    def take(self, quota: Quota, *more: Quota) -> None:
        """Count a hit of each quota, all or none; `rate_limited` when one is used up."""
        try:
            self.store.take(quota, *more)
        except OverLimit as exc:
            raise rate_limited(exc) from None

    @contextmanager
    def taken_by_store(self, rule: str, key: str) -> Iterator[Quota | None]:
        """Around work that hands the quota it yields to the store's write (one round trip for both).

        The store's refusal becomes `rate_limited`; work refused before the write (invalid input,
        no access) still counts its hit, and is refused as rate limited when over the limit, as a
        hit counted up front would have been.
        """
        quota = self.quota(rule, key)
        try:
            yield quota
        except OverLimit as exc:
            raise rate_limited(exc) from None
        except AppError:
            if quota is not None:
                self.take(quota)
            raise
