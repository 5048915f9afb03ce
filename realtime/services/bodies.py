"""Schemas of message bodies, one per message type: each returns the normalized body or raises invalid_body."""
from __future__ import annotations

from functools import partial
from typing import Any, Callable, Iterable

from ..errors import ValidationError
from . import validation
from .uploads import UploadService, display_name, stored_name

ATTACHMENT_FIELDS = ("url", "name", "mime", "size")
LOCATION_FIELDS = ("lat", "lng", "accuracy", "label")
ACCURACY_MAX = 10_000_000  # meters (10,000 km): beyond that it locates nothing
LABEL_MAX = 200


def invalid(message: str) -> ValidationError:
    """A body that does not match its type's schema."""
    return ValidationError("invalid_body", message)


def fields(body: Any, kind: str, allowed: tuple[str, ...], required: Iterable[str]) -> dict[str, Any]:
    """The body as an object with only `allowed` fields and every `required` one."""
    if not isinstance(body, dict):
        raise invalid(f"body of a {kind} message must be an object {{{', '.join(allowed)}}}")
    unknown = sorted(str(key) for key in body if key not in allowed)
    if unknown:
        raise invalid(f"body has unknown field(s): {', '.join(unknown)}")
    for key in required:
        if body.get(key) is None:
            raise invalid(f"body.{key} is required")
    return body


def attachment(body: Any, room: str, uploads: UploadService, kind: str) -> dict[str, Any]:
    """An image or file body: the answer of POST /api/uploads, for an upload made for this room."""
    body = fields(body, kind, ATTACHMENT_FIELDS, ATTACHMENT_FIELDS)
    name = stored_name(body["url"])
    meta = uploads.lookup(name) if name else None
    # Another room's upload gets the same answer as none at all: a sender learns nothing about
    # uploads it cannot see, and a private file cannot be re-posted where others would see it.
    if meta is None or not uploads.attachable(meta, room):
        raise invalid("body.url must be the url of an upload made for this room (/uploads/<name> from "
                      "POST /api/uploads with this room, recently enough to outlive the message)")
    if kind == "image" and not meta["mime"].startswith("image/"):
        raise invalid(f"body.url of an image message must refer to an image, not {meta['mime']}")
    if body["mime"] != meta["mime"]:
        raise invalid("body.mime does not match the upload")
    size = body["size"]
    if isinstance(size, bool) or not isinstance(size, int) or size != meta["size"]:
        raise invalid("body.size does not match the upload")
    # The name is shown and used to save the file: it must be one the upload endpoint could answer.
    if not isinstance(body["name"], str) or display_name(body["name"], meta["mime"]) != body["name"]:
        raise invalid("body.name must be a file name (no path or control characters, at most 200 "
                      "characters) ending in the extension of its type")
    return {"url": meta["url"], "name": body["name"], "mime": meta["mime"], "size": meta["size"]}


def number(value: Any, field: str, low: float, high: float) -> float:
    """A number within [low, high]; bools are not numbers."""
    # NaN compares false with everything and infinities are out of range, so both are refused here.
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise invalid(f"body.{field} must be a number from {low} to {high}")
    return float(value)


def label(value: Any) -> str:
    """A short free-text place name."""
    if not isinstance(value, str) or len(value) > LABEL_MAX:
        raise invalid(f"body.label must be a string of at most {LABEL_MAX} characters")
    if any(ord(char) < 32 or 127 <= ord(char) < 160 for char in value):
        raise invalid("body.label must not contain control characters")
    if not validation.is_unicode(value):
        raise invalid("body.label must be valid Unicode")
    return value


def location(body: Any) -> dict[str, Any]:
    """A location body `{lat, lng, accuracy?, label?}`; absent or null optional fields are left out."""
    body = fields(body, "location", LOCATION_FIELDS, ("lat", "lng"))
    place: dict[str, Any] = {"lat": number(body["lat"], "lat", -90, 90),
                             "lng": number(body["lng"], "lng", -180, 180)}
    if body.get("accuracy") is not None:
        place["accuracy"] = number(body["accuracy"], "accuracy", 0, ACCURACY_MAX)
    if body.get("label") is not None:
        place["label"] = label(body["label"])
    return place


def room_blind(schema: Callable[[Any], Any]) -> Callable[[Any, str], Any]:
    """A schema whose rules do not depend on the room the message goes to."""
    return lambda body, room: schema(body)


def schemas(max_chars: int, uploads: UploadService) -> dict[str, Callable[[Any, str], Any]]:
    """Every message type's schema `(body, room) -> body`, for MessageService."""
    return {"text": room_blind(partial(validation.text_body, max_chars=max_chars)),
            "image": partial(attachment, uploads=uploads, kind="image"),
            "file": partial(attachment, uploads=uploads, kind="file"),
            "location": room_blind(location)}
