"""Who may use which room: public rooms, private rooms (claim or invitation), direct rooms."""
from __future__ import annotations

from collections import OrderedDict
from typing import Any, Callable

from ..errors import AppError
from ..store import Store
from . import validation

ADMIN = "admin"


def forbidden(message: str) -> AppError:
    """The refusal for a room the caller may not use."""
    return AppError("forbidden", message, 403)


class AccessPolicy:
    """Checks a principal's right to a room; enforced on join, send, history, read and HTTP."""

    def __init__(self, store: Store, private_prefix: str = "private-", cache_size: int = 10_000):
        self.store = store
        self.private_prefix = private_prefix
        # A "yes" from the store is remembered (a "no" is asked again every time, so an invitation
        # counts the moment it is stored). Invitations taken back reach every replica through the
        # revocation feed (forget()); while that feed is not live, `trusted` says no and the store is asked.
        self.cache_size = cache_size
        self.invited: OrderedDict[tuple[str, str], None] = OrderedDict()
        self.trusted: Callable[[], bool] = lambda: True
        self.uninvited: list[Callable[[str, str], Any]] = []  # told of (room, user) on this replica

    def is_private(self, room: str) -> bool:
        """Private rooms are named with the configured prefix."""
        return bool(self.private_prefix) and room.startswith(self.private_prefix)

    def check(self, principal, room: str) -> str:
        """`room` if the principal may use it, else a `forbidden` refusal."""
        pair = validation.dm_users(room)
        if pair:
            if principal.id not in pair:
                raise forbidden("this direct-message room belongs to other users")
        elif self.is_private(room) and not self.may_enter_private(principal, room):
            raise forbidden("this private room needs an invitation or a token that grants it")
        return room

    def may_enter_private(self, principal, room: str) -> bool:
        """A `rooms` claim, the admin role, or an invitation."""
        return (room in principal.rooms or principal.has_role(ADMIN)
                or self.is_invited(room, principal.id))

    def is_invited(self, room: str, user_id: str) -> bool:
        """Whether the user was invited: remembered once the store said yes."""
        key = (room, user_id)
        if key in self.invited and self.trusted():
            self.invited.move_to_end(key)
            return True
        if not self.store.is_invited(room, user_id):
            return False
        self.remember(key)
        return True

    def remember(self, key: tuple[str, str]) -> None:
        """Keep a known invitation, dropping the least recently used past the bound."""
        if self.cache_size > 0:
            self.invited[key] = None
            if len(self.invited) > self.cache_size:
                self.invited.popitem(last=False)

    def forget(self, room: str, user_id: str) -> None:
        """Drop one remembered invitation (it was taken back)."""
        self.invited.pop((room, user_id), None)

    def forget_invitations(self) -> None:
        """Drop what is remembered (the store may have lost data: ask it again)."""
        self.invited.clear()

    def invite(self, principal, room: str, user_id: str) -> bool:
        """Let another user into a private room this principal may use."""
        user_id = self.inviting(principal, room, user_id)
        if user_id == principal.id:
            # An invitation outlives the token: a short-lived `rooms` claim must not become a lasting one.
            raise forbidden("you cannot invite yourself")
        return self.store.invite(room, user_id)

    def uninvite(self, principal, room: str, user_id: str) -> bool:
        """Take back a user's invitation into a private room this principal may use."""
        return self.take_back(room, self.inviting(principal, room, user_id))

    def take_back(self, room: str, user_id: str) -> bool:
        """Remove an invitation; this replica's members who relied on it leave at once (others by the feed)."""
        removed = self.store.uninvite(room, user_id)
        self.forget(room, user_id)
        for listener in self.uninvited:
            listener(room, user_id)
        return removed

    def inviting(self, principal, room: str, user_id: Any) -> str:
        """The invited user's id, if the principal may manage invitations of this private room."""
        if not self.is_private(room):
            raise AppError("invalid_room", "only private rooms take invitations")
        self.check(principal, room)
        return validation.user_id(user_id, "user")
