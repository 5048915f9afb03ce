"""Room messages over HTTP: pages for users and servers, and the server API to post."""
from flask import Blueprint, current_app, jsonify, request

from ..errors import ValidationError
from ..services import validation
from .guards import caller, json_body, require_server

bp = Blueprint("rooms", __name__, url_prefix="/api/rooms")


def int_arg(name: str) -> int | None:
    """An optional integer query parameter."""
    raw = request.args.get(name)
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 16:
        raise ValidationError("invalid_payload", f"{name} must be a non-negative integer")
    return int(raw)


@bp.get("/<room>/messages")
def messages(room: str):
    """A page of a room's messages for a user who may read it, or for a server."""
    services = current_app.extensions["realtime"]
    who = caller()
    room = services.messages.room(room)
    if not who.is_server:
        services.access.check(who.principal, room)
    page, epoch = services.messages.page(room, int_arg("before"), int_arg("after"), int_arg("limit"))
    return jsonify(room=room, epoch=epoch, messages=page)


@bp.post("/<room>/messages")
def post_message(room: str):
    """Server API: persist and deliver a message like a client `send` (`{type, body, client_id?, from?}`)."""
    services = current_app.extensions["realtime"]
    who = require_server()
    room = services.messages.room(room)
    data = json_body()
    name = validation.username(data["from"]) if "from" in data else "system"
    with services.limits.taken_by_store("send", f"server:{who.api_key or who.principal.id}") as quota:
        message = services.messages.send({"id": name.lower(), "name": name}, room, data, quota=quota,
                                         via="api")
    return jsonify(message=message), 201
