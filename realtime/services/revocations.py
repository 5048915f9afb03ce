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

from ..store import Store, Uninvited, UserCutoff

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
        self.users: dict[str, tuple[float, float]] = {}  # user -> (revoked before, entry expires)
        self.listeners: list[Callable[[str], Any]] = []  # told of every revoked jti
        self.user_listeners: list[Callable[[str, float], Any]] = []  # told of (user, before)
        self.uninvite_listeners: list[Callable[[str, str], Any]] = []  # told of (room, user)
        self.resynced: list[Callable[[], Any]] = []      # told whenever the mirror was reloaded

    def is_revoked(self, jti: str) -> bool:
        """Whether a token id is on the denylist."""
        if not self.synced:
            return self.store.is_revoked(jti)
        expires = self.revoked.get(jti)
        return expires is not None and expires > self.clock()

    def revoked_before(self, user_id: str) -> float | None:
        """The time before which every token of the user is revoked, if any."""
        if not self.synced:
            return self.store.revoked_before(user_id)
        before, until = self.users.get(user_id, (0.0, 0.0))
        return before if until > self.clock() else None

    def revoke_user(self, user_id: str, before: float, ttl: float) -> float:
        """Deny every token of a user issued before `before`, everywhere; returns the time in force."""
        in_force = self.store.revoke_user(user_id, before, ttl)
        self.apply_user(UserCutoff(user_id, in_force, ttl))
        return in_force

    def apply_user(self, cutoff: UserCutoff) -> None:
        """Note one per-user revocation (from this replica or the feed) and tell the listeners."""
        old_before, old_until = self.users.get(cutoff.user, (0.0, 0.0))
        self.users[cutoff.user] = (max(cutoff.before, old_before), max(self.clock() + cutoff.ttl, old_until))
        self.tell(self.user_listeners, cutoff.user, cutoff.before)

    def uninvited(self, change: Uninvited) -> None:
        """Tell the listeners an invitation was taken back (from this replica or the feed)."""
        self.tell(self.uninvite_listeners, change.room, change.user)

    @staticmethod
    def tell(listeners: list[Callable[..., Any]], *args: Any) -> None:
        """Call each listener; one that fails is logged and the others still run."""
        for listener in listeners:
            try:
                listener(*args)
            except Exception:
                log.exception("revocation listener failed for %s", args)

    def revoke(self, jti: str, ttl: float) -> None:
        """Deny a token id everywhere for `ttl` seconds; this replica acts on it at once."""
        self.store.revoke_token(jti, ttl)
        self.apply(jti, ttl)

    def apply(self, jti: str, ttl: float) -> None:
        """Note one revocation (from this replica or the feed) and tell the listeners."""
        self.revoked[jti] = self.clock() + ttl
        self.tell(self.listeners, jti)

    def follow(self) -> None:
        """Mirror the denylist until the feed ends or fails (the caller runs this again)."""
        feed = self.store.revocation_feed() if self.mirror else None
        if feed is None:
            return
        try:
            for event in feed:
                if event is None:  # subscribed: everything revoked from now on will arrive
                    self.reload()
                elif isinstance(event, UserCutoff):
                    self.apply_user(event)
                elif isinstance(event, Uninvited):
                    self.uninvited(event)
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
        self.users = {user: (before, now + ttl) for user, (before, ttl) in self.store.revoked_users().items()}
        self.synced = True
        log.info("revocation mirror loaded: %d token id(s), %d user(s) denied", len(self.revoked), len(self.users))
        for hook in self.resynced:
            hook()

    def prune(self) -> None:
        """Forget entries whose tokens have expired anyway (at most once a minute)."""
        now = self.clock()
        if now - self.pruned_at > 60:
            self.pruned_at = now
            self.revoked = {jti: until for jti, until in self.revoked.items() if until > now}
            self.users = {user: entry for user, entry in self.users.items() if entry[1] > now}
