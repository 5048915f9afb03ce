"""The /chat namespace: connect, join, leave, send, history, typing, read, conversations, refresh."""
from __future__ import annotations

import logging
from typing import Any

from flask import request, session
from flask_socketio import disconnect, emit, join_room, leave_room

from .. import auth
from ..errors import AppError, ValidationError
from ..services import validation
from ..services.messages import now_ms, user_room
from ..store import OverLimit, StoreUnavailable
from ..wiring import Services
from ..version import VERSION
from .base import AckNamespace, authenticate, refreshed

log = logging.getLogger(__name__)
TAKEN_BY_STORE = {"send", "join"}  # events whose rate limit the store counts in the handler's own call


def leave_lost_rooms(socketio: Any, services: Services, sid: str, principal: auth.Principal,
                     reason: str, only: str | None = None) -> list[str]:
    """Take a /chat connection out of the joined rooms its principal may no longer use (`room_left`)."""
    _, joined = services.presence.local.get(sid, (None, ()))
    left = []
    for room in joined:
        if only is not None and room != only:
            continue
        try:
            services.access.check(principal, room)
            continue
        except AppError:
            left.append(room)
        socketio.server.leave_room(sid, room, namespace="/chat")
        try:
            services.presence.left(sid, room)
        except StoreUnavailable as exc:
            log.warning("presence of %s in %s not cleared: %s", sid, room, exc)
        socketio.emit("room_left", {"room": room, "reason": reason}, to=sid, namespace="/chat",
                      ignore_queue=True)
    return left


class ChatNamespace(AckNamespace):
    """Messaging for authenticated users; per-connection state lives in the session."""

    def __init__(self, namespace: str, services: Services):
        super().__init__(namespace)
        self.services = services

    def on_connect(self, auth_payload: Any = None) -> None:
        """Authenticate, track the connection, and greet the client."""
        cluster = self.services.cluster
        # Tracked with the connect limit's hit: one store call for both.
        principal = authenticate(self.services, auth_payload,
                                 admit=lambda who, quota: cluster.connected(request.sid, who, quota))
        session["principal"] = principal
        join_room(user_room(principal.id))  # private messages reach every connection of the user
        self.services.tokens.track(request.sid, principal)
        # The greetings go to this connection only, which is on this replica: straight to it, not
        # through Redis to every replica (two PUBLISHes per connect, decoded by each replica).
        emit("welcome", {"instance": cluster.instance_id, "user": principal.user, "sid": request.sid,
                         "server_time": now_ms(), "server": {"version": VERSION}}, ignore_queue=True)
        self.services.webhooks.publish("client.connected", self.hook_data())
        if cluster.last_stats is not None:
            emit("stats", cluster.last_stats, ignore_queue=True)

    def on_disconnect(self, reason: Any = None) -> None:
        """Stop tracking the connection; it stops typing and leaves its rooms."""
        principal = session.get("principal")
        for room in sorted(session.get("typing", ())):
            self.quietly(self.services.typing.typing, principal.user, room, False, request.sid)
        self.services.tokens.forget(request.sid)
        self.services.presence.disconnected(request.sid)
        self.services.cluster.disconnected(request.sid)
        self.services.webhooks.publish("client.disconnected", self.hook_data(reason=str(reason)))

    def before_event(self, event: str) -> None:
        """Every event counts against the user's limit for that event type (`send`, `join` in their store call)."""
        if event not in TAKEN_BY_STORE:
            # uninvite shares invite's limit: one rule for managing a room's invitations.
            self.services.limits.hit("invite" if event == "uninvite" else event, session["principal"].id)

    def refused(self, event: str, error: AppError) -> None:
        """A connection that keeps hitting its limits is cut off."""
        if error.code != "rate_limited":
            return
        if self.services.metrics is not None:
            self.services.metrics.rate_limited.labels(event).inc()
        try:
            self.services.limits.hit("abuse", request.sid)
        except AppError:
            log.warning("disconnecting %s (user %s): rate limits exceeded repeatedly",
                        request.sid, session["principal"].id)
            disconnect()

    @property
    def principal(self) -> auth.Principal:
        """Who this connection authenticated as."""
        return session["principal"]

    def room(self, value: Any) -> str:
        """A valid room this connection's user may use."""
        return self.services.access.check(self.principal, self.services.messages.room(value))

    def on_join(self, payload: Any) -> dict[str, Any]:
        """Join a room; with `since` (and the `epoch` it counts in), the ack carries what was missed."""
        # The store counts the join limit with the room's reads and presence: one round trip.
        with self.services.limits.taken_by_store("join", self.principal.id) as quota:
            data = validation.payload_dict(payload)
            room = self.room(data.get("room"))
            since = validation.message_id(data.get("since"), "since")
            epoch = validation.epoch(data.get("epoch"))
            member = self.is_member(room)
            # Join before reading so that nothing falls between; overlap is deduplicated by id.
            join_room(room)
            try:
                ack, state = self.services.joins.join(request.sid, self.principal.user, room, since, epoch, quota)
            except OverLimit:
                if not member:  # refused: as if it had been refused before joining
                    leave_room(room)
                raise
        # From here on this replica delivers the room without gaps (see Sequencer).
        self.services.sequencer.note(room, state.newest, state.epoch)
        self.services.webhooks.publish("room.joined", self.hook_data(room=room))
        return ack

    def on_leave(self, payload: Any) -> dict[str, Any]:
        """Leave a room."""
        room = self.services.messages.room(validation.payload_dict(payload).get("room"))
        leave_room(room)
        self.services.presence.left(request.sid, room)
        self.services.webhooks.publish("room.left", self.hook_data(room=room))
        return {"room": room}

    def on_send(self, payload: Any) -> dict[str, Any]:
        """Persist and broadcast a message to a joined room, or privately to a user."""
        # The store counts the send limit with the append: one round trip for both.
        with self.services.limits.taken_by_store("send", self.principal.id) as quota:
            data = validation.payload_dict(payload)
            user = self.principal.user
            if "to" in data:
                if "room" in data:
                    raise ValidationError("invalid_payload", "give either room or to, not both")
                room, audience = self.services.messages.direct(user, data["to"])
                return {"message": self.services.messages.send(user, room, data, audience, quota)}
            room = self.joined_room(data.get("room"))
            return {"message": self.services.messages.send(user, room, data, quota=quota)}

    def on_history(self, payload: Any) -> dict[str, Any]:
        """A page of a room's messages."""
        data = validation.payload_dict(payload)
        room = self.room(data.get("room"))
        before = validation.message_id(data.get("before"), "before")
        after = validation.message_id(data.get("after"), "after")
        messages, epoch = self.services.messages.page(room, before, after, data.get("limit"))
        return {"room": room, "epoch": epoch, "messages": messages}

    def on_typing(self, payload: Any) -> dict[str, Any]:
        """Tell the other members of a joined room that this user is (not) typing."""
        data = validation.payload_dict(payload)
        room = self.joined_room(data.get("room"))
        active = data.get("typing")
        if not isinstance(active, bool):
            raise ValidationError("invalid_payload", "typing must be true or false")
        typing = session.setdefault("typing", set())  # created on first use: most connections never type
        (typing.add if active else typing.discard)(room)
        sent = self.services.typing.typing(self.principal.user, room, active, request.sid)
        return {} if sent else {"throttled": True}

    def on_read(self, payload: Any) -> dict[str, Any]:
        """Move this user's read position in a room forward."""
        data = validation.payload_dict(payload)
        room = self.room(data.get("room"))
        message_id = validation.message_id(data.get("message_id"), "message_id", required=True)
        return {"room": room,
                "message_id": self.services.receipts.mark_read(self.principal.user, room, message_id)}

    def on_conversations(self, payload: Any) -> dict[str, Any]:
        """This user's direct-message rooms, most recent first, with unread counts."""
        user_id = self.principal.id
        listing = self.services.messages.conversations(user_id)
        for item in listing:
            last_read = self.services.receipts.reads(item["room"]).get(user_id, 0)
            item["unread"] = self.services.receipts.unread(item["room"], last_read)
        return {"conversations": listing}

    def on_invite(self, payload: Any) -> dict[str, Any]:
        """Let another user into a private room this user may use."""
        data = validation.payload_dict(payload)
        room = self.services.messages.room(data.get("room"))
        added = self.services.access.invite(self.principal, room, data.get("user"))
        return {"room": room, "user": data.get("user"), "added": added}

    def on_uninvite(self, payload: Any) -> dict[str, Any]:
        """Take back a user's invitation into a private room this user may use."""
        data = validation.payload_dict(payload)
        room = self.services.messages.room(data.get("room"))
        removed = self.services.access.uninvite(self.principal, room, data.get("user"))
        return {"room": room, "user": data.get("user"), "removed": removed}

    def on_refresh(self, payload: Any) -> dict[str, Any]:
        """Swap this connection's token for a fresh one of the same user; leave rooms it no longer grants."""
        principal = refreshed(self.services, payload, self.principal)
        session["principal"] = principal
        self.services.tokens.track(request.sid, principal)
        left = leave_lost_rooms(self.socketio, self.services, request.sid, principal, "access_lost")
        return {"exp": principal.exp, "left": left}

    def hook_data(self, **extra: Any) -> dict[str, Any]:
        """Who and where, for a webhook about this connection."""
        return {"user": self.principal.user, "sid": request.sid,
                "instance": self.services.cluster.instance_id, **extra}

    def joined_room(self, value: Any) -> str:
        """A room this connection is in, or a structured refusal."""
        room = self.room(value)
        if not self.is_member(room):
            raise AppError("not_joined", f"join {room!r} first", 403)
        return room

    def is_member(self, room: str) -> bool:
        """Whether this connection is in `room` on this replica."""
        # One lookup in the room's members: flask_socketio.rooms() scans every room of the
        # replica (each connection has its own): O(connections) per send.
        members = self.socketio.server.manager.rooms.get(self.namespace, {}).get(room)
        return members is not None and request.sid in members

    @staticmethod
    def quietly(action: Any, *args: Any) -> None:
        """Run a best-effort cleanup step; a store outage only costs a log line."""
        try:
            action(*args)
        except StoreUnavailable as exc:
            log.warning("cleanup step skipped: %s", exc)
