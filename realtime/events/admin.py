"""The /admin namespace: live cluster figures for the dashboard, admin role only."""
from __future__ import annotations

from typing import Any

from flask import request, session
from flask_socketio import ConnectionRefusedError, emit, join_room

from ..errors import AppError
from ..services.access import ADMIN
from .base import AckNamespace, authenticate, refreshed


DASHBOARD_ROOM = "dashboard"


class AdminNamespace(AckNamespace):
    """Operators only: a token with the admin role."""

    def __init__(self, namespace: str, services: Any):
        super().__init__(namespace)
        self.services = services

    def on_connect(self, auth_payload: Any = None) -> None:
        """Only admins get in."""
        principal = authenticate(self.services, auth_payload)
        if not principal.has_role(ADMIN):
            raise ConnectionRefusedError("the admin role is required", {"code": "forbidden"})
        session["principal"] = principal
        self.services.admin_tokens.track(request.sid, principal)  # closed if its token is revoked
        join_room(DASHBOARD_ROOM)
        emit("welcome", {"instance": self.services.cluster.instance_id, "user": principal.user,
                         "sid": request.sid})

    def on_disconnect(self, reason: Any = None) -> None:
        """Forget the connection."""
        self.services.admin_tokens.forget(request.sid)

    def on_refresh(self, payload: Any) -> dict[str, Any]:
        """Swap this connection's token for a fresh admin token of the same user (as /chat's refresh)."""
        principal = refreshed(self.services, payload, session["principal"])
        if not principal.has_role(ADMIN):
            raise AppError("forbidden", "the admin role is required", 403)
        session["principal"] = principal
        self.services.admin_tokens.track(request.sid, principal)
        return {"exp": principal.exp}

    def on_stats(self, payload: Any) -> dict[str, Any]:
        """Cluster-wide counts now."""
        return {"stats": self.services.cluster.stats()}

    def on_snapshot(self, payload: Any) -> dict[str, Any]:
        """The dashboard's snapshot now (it is also pushed as `dashboard` every few seconds)."""
        return {"snapshot": self.services.dashboard.snapshot()}
