"""Who may use the UI and its API: a bearer token (WEBHOOK_UI_TOKEN) and trusted Host names.

The signed receiver (`POST /webhook`, authenticated by its HMAC signature), `GET /healthz` and
the static page shell (`/`, `/static/*`: no data in them) need no token; everything else does,
sent as `Authorization: Bearer <token>`. A header, not a cookie: a browser never attaches it on
its own, so no other site can make the operator's browser act here. Flask's TRUSTED_HOSTS
refuses requests addressed to another Host (DNS rebinding) before any of this runs.
"""
from __future__ import annotations

import hmac
import logging
import secrets

from flask import request

from .web import error, receiver

# Endpoints that answer without the token.
PUBLIC = frozenset({"receive.receive", "api.healthz", "api.index", "static"})
REALM = 'Bearer realm="webhook"'


def ui_token(configured: str | None) -> tuple[str, bool]:
    """The token to require, and whether it was made up here (WEBHOOK_UI_TOKEN unset)."""
    if configured:
        return configured, False
    return secrets.token_urlsafe(32), True


def bearer() -> str:
    """The token of the request's `Authorization: Bearer` header, or empty."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def require_token():
    """before_request: 401 unless the endpoint is public or the request carries the UI token."""
    if request.routing_exception is not None or request.endpoint in PUBLIC:
        return None  # 404, 405 and untrusted Host answer as they are
    expected = receiver().ui_token.encode()
    if hmac.compare_digest(bearer().encode(), expected):
        return None
    response, status = error(401, "unauthorized",
                             "send the UI token as Authorization: Bearer <WEBHOOK_UI_TOKEN>")
    response.headers["WWW-Authenticate"] = REALM
    return response, status


def untrusted_host(_exc):
    """A request addressed to a Host not in WEBHOOK_TRUSTED_HOSTS (werkzeug's SecurityError)."""
    logging.getLogger(__name__).warning("webhook: refused a request for an untrusted Host header")
    return error(400, "untrusted_host",
                 "the Host header is not one of WEBHOOK_TRUSTED_HOSTS")
