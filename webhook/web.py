"""HTTP helpers shared by the receiver's blueprints: errors, payload checks, security headers."""
from __future__ import annotations

from typing import Any

from flask import Response, current_app, jsonify, request

# The UI loads everything from /static: no inline script or style, nothing from elsewhere.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
}


def receiver():
    """The current app's ReceiverState (settings, secret, events, mode, Redis path)."""
    return current_app.extensions["webhook"]


class Invalid(Exception):
    """A request this service refuses: a stable code, a message and an HTTP status."""

    def __init__(self, code: str, message: str, status: int = 400):
        super().__init__(message)
        self.code, self.message, self.status = code, message, status


def error(status: int, code: str, message: str, **extra: Any) -> tuple[Response, int]:
    """A JSON error in the project's `{"error": {"code", "message"}}` shape."""
    return jsonify(error={"code": code, "message": message, **extra}), status


def json_object() -> dict[str, Any]:
    """The request's JSON object body (Content-Type application/json, so no form can post it)."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise Invalid("invalid_payload", "body must be a JSON object sent as application/json")
    return data


def int_arg(name: str, default: int, maximum: int) -> int:
    """An optional non-negative integer query parameter, at most `maximum`."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 16:
        raise Invalid("invalid_payload", f"{name} must be a non-negative integer")
    return min(int(raw), maximum)


def add_security_headers(response: Response) -> Response:
    """after_request: the headers every response carries; API answers are never cached."""
    for name, value in HEADERS.items():
        response.headers.setdefault(name, value)
    if request.path.startswith("/api/") or request.path in ("/webhook", "/events"):
        response.headers.setdefault("Cache-Control", "no-store")
    return response
