"""Room history over HTTP."""
from flask import Blueprint, current_app, jsonify, request

from .. import auth
from ..errors import ValidationError

bp = Blueprint("rooms", __name__, url_prefix="/api/rooms")


def int_arg(name: str) -> int | None:
    """An optional integer query parameter."""
    raw = request.args.get(name)
    if raw is None:
        return None
    if not raw.isdigit() or len(raw) > 16:
        raise ValidationError("invalid_payload", f"{name} must be a non-negative integer")
    return int(raw)


@bp.get("/<room>/messages")
def messages(room: str):
    """A page of a room's messages for an authenticated caller."""
    auth.user_from_header(request.headers.get("Authorization"))
    service = current_app.extensions["realtime"].messages
    room = service.room(room)
    page = service.history(room, int_arg("before"), int_arg("after"), int_arg("limit"))
    return jsonify(room=room, messages=page)
