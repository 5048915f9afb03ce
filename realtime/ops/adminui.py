"""The official Socket.IO Admin UI (admin.socket.io), behind the admin role, when switched on.

python-socketio's `instrument()` is its supported way in; it patches engine.io's socket class, so
it stays off unless ADMIN_UI is set. The UI's login form has a username and a password: the
password must be an access token with the `admin` role (the username is not checked).
Each UI connection's principal is watched like /admin's (services.adminui_tokens): it is warned
before its token expires, closed after the grace, and closed when its token (or its user's
tokens) are revoked. The UI has no way to refresh: it logs in again.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from flask import Flask
from socketio.exceptions import ConnectionRefusedError

from .. import auth
from ..errors import AppError
from ..store import StoreUnavailable

log = logging.getLogger(__name__)


def admin_principal(app: Flask, services: Any, credentials: Any) -> auth.Principal | None:
    """The principal of a valid, unrevoked admin token given as the UI's password, else None."""
    token = credentials.get("password") if isinstance(credentials, dict) else None
    try:
        with app.app_context():
            principal = services.verifier.verify(auth.token_from({"token": token}, None))
    except (AppError, StoreUnavailable) as exc:
        log.warning("admin UI login refused: %s", exc)
        return None
    if not principal.has_role("admin"):
        log.warning("admin UI login refused: %s lacks the admin role", principal.id)
        return None
    return principal


def admin_check(app: Flask, services: Any) -> Callable[[Any], bool]:
    """`auth` callable for instrument(): True only for a valid, unrevoked admin token."""
    def check(credentials: Any) -> bool:
        principal = admin_principal(app, services, credentials)
        if principal is not None:
            log.info("admin UI login: %s", principal.id)
        return principal is not None
    return check


def track_connections(app: Flask, server: Any, services: Any, namespace: str) -> None:
    """Wrap the UI's connect handler so each connection's principal is watched by its sid."""
    connect = server.handlers[namespace]["connect"]  # InstrumentedServer.admin_connect

    def tracked_connect(sid: str, environ: Any, credentials: Any = None) -> Any:
        """The UI's own connect, then the connection's principal is watched."""
        result = connect(sid, environ, credentials)  # refuses anyone but an admin
        # A second verification of the same token: the verifier's cache answers it.
        principal = admin_principal(app, services, credentials)
        if principal is None:  # revoked between the two checks
            raise ConnectionRefusedError("authentication failed")
        services.adminui_tokens.track(sid, principal)
        return result

    def disconnected(sid: str, reason: Any = None) -> None:
        """Stop watching a closed UI connection."""
        services.adminui_tokens.forget(sid)
    server.on("connect", tracked_connect, namespace=namespace)
    server.on("disconnect", disconnected, namespace=namespace)


def reports_emits(settings: Mapping[str, Any]) -> bool:
    """True if the Admin UI will report every emit (development mode wraps the manager's emit)."""
    return bool(settings["ADMIN_UI"]) and settings["ADMIN_UI_MODE"] == "development"


def install(app: Flask, server: Any, services: Any, settings: Mapping[str, Any]) -> None:
    """Instrument the Socket.IO server for the Admin UI if ADMIN_UI is on."""
    if not settings["ADMIN_UI"]:
        return
    namespace, mode = settings["ADMIN_UI_NAMESPACE"], settings["ADMIN_UI_MODE"]
    if mode not in ("production", "development"):
        raise ValueError(f"REALTIME_ADMIN_UI_MODE must be production or development, got {mode!r}")
    if not namespace.startswith("/") or namespace in ("/", "/chat", "/admin"):
        raise ValueError(f"REALTIME_ADMIN_UI_NAMESPACE must be a free namespace, got {namespace!r}")
    server.instrument(auth=admin_check(app, services), namespace=namespace, mode=mode,
                      read_only=settings["ADMIN_UI_READ_ONLY"], server_id=settings["INSTANCE_ID"])
    track_connections(app, server, services, namespace)
    log.info("Socket.IO Admin UI on namespace %s (%s mode)", namespace, mode)
