"""Schemas for payloads that come from outside; each failure names the field."""
from __future__ import annotations

import re
from typing import Any

from ..errors import ValidationError

ROOM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}\Z")
USERNAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,32}\Z")
USER_ID_RE = re.compile(r"^[a-z0-9_.\-]{1,32}\Z")
DM_RE = re.compile(r"^dm:([a-z0-9_.\-]{1,32}):([a-z0-9_.\-]{1,32})\Z")
CLIENT_ID_RE = re.compile(r"^[A-Za-z0-9_.:\-]{1,64}\Z")
EPOCH_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}\Z")


def payload_dict(payload: Any) -> dict[str, Any]:
    """The payload as an object, or a structured refusal."""
    if not isinstance(payload, dict):
        raise ValidationError("invalid_payload", "payload must be a JSON object")
    return payload


def dm_users(room: str) -> tuple[str, str] | None:
    """The two user ids of a direct-message room name, or None if it is not one."""
    match = DM_RE.match(room)
    if not match or match.group(1) >= match.group(2):
        return None
    return match.group(1), match.group(2)


def dm_room(a: str, b: str) -> str:
    """The one direct-message room of two users: `dm:<smaller id>:<larger id>`."""
    low, high = sorted((a, b))
    return f"dm:{low}:{high}"


def user_id(value: Any, field: str = "to") -> str:
    """A user id (lower-case name)."""
    if not isinstance(value, str) or not USER_ID_RE.match(value):
        raise ValidationError("invalid_payload",
                              f"{field} must be a user id: 1-32 lower-case letters, digits, '_', '.' or '-'")
    return value


def room_name(value: Any, allowed: frozenset[str] = frozenset()) -> str:
    """A syntactically valid, known room name (public, or a direct-message room)."""
    if not isinstance(value, str) or not ROOM_RE.match(value):
        raise ValidationError("invalid_room",
                              "room must be 1-64 characters of letters, digits, '_', '.' or '-'")
    if allowed and value not in allowed:
        raise ValidationError("unknown_room", f"room {value!r} does not exist")
    return value


def username(value: Any) -> str:
    """A display name usable as a user id."""
    if not isinstance(value, str) or not USERNAME_RE.match(value):
        raise ValidationError("invalid_username",
                              "username must be 1-32 characters of letters, digits, '_', '.' or '-'")
    return value


def message_id(value: Any, field: str, required: bool = False) -> int | None:
    """A non-negative integer message id, or None when absent and optional."""
    if value is None and not required:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 2**53:
        raise ValidationError("invalid_payload", f"{field} must be a non-negative integer message id")
    return value


def epoch(value: Any) -> str | None:
    """An optional history epoch, as the server handed it out (null or absent: none)."""
    if value is None:
        return None
    if not isinstance(value, str) or not EPOCH_RE.match(value):
        raise ValidationError("invalid_payload", "epoch must be a string of up to 64 letters, digits, _ or -")
    return value


def limit(value: Any, maximum: int, default: int) -> int:
    """A page size between 1 and `maximum`."""
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ValidationError("invalid_payload", f"limit must be an integer from 1 to {maximum}")
    return value


def client_id(value: Any) -> str | None:
    """An optional idempotency key chosen by the client."""
    if value is None:
        return None
    if not isinstance(value, str) or not CLIENT_ID_RE.match(value):
        raise ValidationError("invalid_payload",
                              "client_id must be 1-64 characters of letters, digits, '_', '.', ':' or '-'")
    return value


def is_unicode(value: str) -> bool:
    """Whether a string is valid Unicode (no lone surrogates, which UTF-8 cannot carry)."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_body(value: Any, max_chars: int) -> str:
    """A non-blank text message within the length limit."""
    if not isinstance(value, str) or not is_unicode(value):
        raise ValidationError("invalid_body", "body of a text message must be a valid Unicode string")
    if not value.strip():
        raise ValidationError("invalid_body", "body must not be empty")
    if len(value) > max_chars:
        raise ValidationError("body_too_long", f"body is longer than {max_chars} characters")
    return value
