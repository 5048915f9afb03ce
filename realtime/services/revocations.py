"""Revoked token ids: a replica's in-memory mirror of the store's denylist, kept current by a feed.

Checking the denylist in Redis costs a round trip on every connect, refresh and API call. Each
replica instead keeps the denylist in memory: it subscribes to the store's revocation feed first,
then loads the whole list, then applies every revocation the feed brings. Until that is done, and
from the moment the feed breaks (Redis gone, failover) until it is done again, every check goes to
the store, so a replica never answers from a mirror that could have missed a revocation.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

from ..store import Store

log = logging.getLogger(__name__)


class Revocations:
    """`is_revoked` from memory while the feed is live, else from the store."""

    def __init__(self, store: Store, mirror: bool = True, clock: Callable[[], float] = time.time):
        self.store = store
        self.mirror = mirror
        self.clock = clock
        self.synced = False
        self.pruned_at = 0.0
        self.revoked: dict[str, float] = {}  # jti -> when its entry expires (clock time)
        self.listeners: list[Callable[[str], Any]] = []  # told of every revoked jti
        self.resynced: list[Callable[[], Any]] = []      # told whenever the mirror was reloaded

    def is_revoked(self, jti: str) -> bool:
        """Whether a token id is on the denylist."""
        if not self.synced:
            return self.store.is_revoked(jti)
        expires = self.revoked.get(jti)
        return expires is not None and expires > self.clock()

    def revoke(self, jti: str, ttl: float) -> None:
        """Deny a token id everywhere for `ttl` seconds; this replica acts on it at once."""
        self.store.revoke_token(jti, ttl)
        self.apply(jti, ttl)

    def apply(self, jti: str, ttl: float) -> None:
        """Note one revocation (from this replica or the feed) and tell the listeners."""
        self.revoked[jti] = self.clock() + ttl
        for listener in self.listeners:
            try:
                listener(jti)
            except Exception:
                log.exception("revocation listener failed for %s", jti)

    def follow(self) -> None:
        """Mirror the denylist until the feed ends or fails (the caller runs this again)."""
        feed = self.store.revocation_feed() if self.mirror else None
        if feed is None:
            return
        try:
            for event in feed:
                if event is None:  # subscribed: everything revoked from now on will arrive
                    self.reload()
                else:
                    self.apply(*event)
                    self.prune()
        finally:
            if self.synced:
                log.warning("revocation feed lost; checking revocations in the store until it is back")
            self.synced = False

    def reload(self) -> None:
        """Replace the mirror with the store's whole denylist."""
        now = self.clock()
        self.revoked = {jti: now + ttl for jti, ttl in self.store.revoked_tokens().items()}
        self.synced = True
        log.info("revocation mirror loaded: %d token id(s) denied", len(self.revoked))
        for hook in self.resynced:
            hook()

    def prune(self) -> None:
        """Forget entries whose tokens have expired anyway (at most once a minute)."""
        now = self.clock()
        if now - self.pruned_at > 60:
            self.pruned_at = now
            self.revoked = {jti: until for jti, until in self.revoked.items() if until > now}
