"""Who may use which room: public rooms, private rooms (claim or invitation), direct rooms."""
from __future__ import annotations

from collections import OrderedDict

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
        # Invitations are only ever added, so a "yes" from the store stays true: remember those
        # (a "no" is asked again every time, so an invitation counts the moment it is stored).
        self.cache_size = cache_size
        self.invited: OrderedDict[tuple[str, str], None] = OrderedDict()

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
        if key in self.invited:
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

    def forget_invitations(self) -> None:
        """Drop what is remembered (the store may have lost data: ask it again)."""
        self.invited.clear()

    def invite(self, principal, room: str, user_id: str) -> bool:
        """Let another user into a private room this principal may use."""
        if not self.is_private(room):
            raise AppError("invalid_room", "only private rooms take invitations")
        self.check(principal, room)
        return self.store.invite(room, validation.user_id(user_id, "user"))
