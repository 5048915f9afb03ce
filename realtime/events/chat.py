"""The /chat namespace: connect, join, leave, send, history."""
from __future__ import annotations

import logging
from typing import Any

from flask import request, session
from flask_socketio import ConnectionRefusedError, emit, join_room, leave_room, rooms

from .. import auth
from ..errors import AppError, AuthError
from ..services import Services
from ..services import validation
from ..services.messages import now_ms
from ..store import StoreUnavailable
from .base import AckNamespace

log = logging.getLogger(__name__)


class ChatNamespace(AckNamespace):
    """Messaging for authenticated users; per-connection state lives in the session."""

    def __init__(self, namespace: str, services: Services):
        super().__init__(namespace)
        self.services = services

    def on_connect(self, auth_payload: Any = None) -> None:
        """Authenticate, track the connection, and greet the client."""
        try:
            user = auth.verify(auth.token_from(auth_payload, request.args.get("token")))
        except AuthError as exc:
            raise ConnectionRefusedError(exc.message, {"code": exc.code})
        session["user"] = user
        cluster = self.services.cluster
        try:
            cluster.connected(request.sid, user)
        except StoreUnavailable as exc:
            log.warning("connection %s not tracked: %s", request.sid, exc)
        emit("welcome", {"instance": cluster.instance_id, "user": user, "sid": request.sid,
                         "server_time": now_ms()})

    def on_disconnect(self, reason: Any = None) -> None:
        """Stop tracking the connection."""
        self.services.cluster.disconnected(request.sid)

    def on_join(self, payload: Any) -> dict[str, Any]:
        """Join a room; with `since`, the ack carries what was missed."""
        data = validation.payload_dict(payload)
        room = self.services.messages.room(data.get("room"))
        since = validation.message_id(data.get("since"), "since")
        # Join before reading so that nothing falls between; overlap is deduplicated by id.
        join_room(room)
        missed, truncated = self.services.messages.missed(room, since) if since is not None else ([], False)
        return {"room": room, "missed": missed, "truncated": truncated,
                "unread": len(missed), "online": []}

    def on_leave(self, payload: Any) -> dict[str, Any]:
        """Leave a room."""
        room = self.services.messages.room(validation.payload_dict(payload).get("room"))
        leave_room(room)
        return {"room": room}

    def on_send(self, payload: Any) -> dict[str, Any]:
        """Persist and broadcast a message to a room this connection has joined."""
        data = validation.payload_dict(payload)
        room = self.joined_room(data.get("room"))
        return {"message": self.services.messages.send(session["user"], room, data)}

    def on_history(self, payload: Any) -> dict[str, Any]:
        """A page of a room's messages."""
        data = validation.payload_dict(payload)
        room = self.services.messages.room(data.get("room"))
        before = validation.message_id(data.get("before"), "before")
        after = validation.message_id(data.get("after"), "after")
        return {"room": room,
                "messages": self.services.messages.history(room, before, after, data.get("limit"))}

    def joined_room(self, value: Any) -> str:
        """A room this connection is in, or a structured refusal."""
        room = self.services.messages.room(value)
        if room not in rooms():
            raise AppError("not_joined", f"join {room!r} before sending to it", 403)
        return room
