"""Who may use which room: public rooms, private rooms (claim or invitation), direct rooms."""
from __future__ import annotations

from ..errors import AppError
from ..store import Store
from . import validation

ADMIN = "admin"


def forbidden(message: str) -> AppError:
    """The refusal for a room the caller may not use."""
    return AppError("forbidden", message, 403)


class AccessPolicy:
    """Checks a principal's right to a room; enforced on join, send, history, read and HTTP."""

    def __init__(self, store: Store, private_prefix: str = "private-"):
        self.store = store
        self.private_prefix = private_prefix

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
                or self.store.is_invited(room, principal.id))

    def invite(self, principal, room: str, user_id: str) -> bool:
        """Let another user into a private room this principal may use."""
        if not self.is_private(room):
            raise AppError("invalid_room", "only private rooms take invitations")
        self.check(principal, room)
        return self.store.invite(room, validation.user_id(user_id, "user"))
