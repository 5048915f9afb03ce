"""Placeholder webhook receiver: keeps what it is sent so a developer can look at it.

`POST /webhook` stores the JSON body and the headers in memory (the newest MAX_EVENTS),
`GET /events` lists them, `GET /healthz` says it is alive. It verifies nothing: the real
signed-webhook service (signature checks, testing UI) comes with the webhooks issue.
Run it with `python -m webhook --port 8090` or `gunicorn 'webhook.app:create_app()'`.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Any, Mapping

from flask import Blueprint, Flask, current_app, jsonify, request

DEFAULTS = {
    "MAX_EVENTS": 200,
    # Bounded like everything from outside: a webhook is a small JSON document.
    "MAX_CONTENT_LENGTH": 1_000_000,
}

bp = Blueprint("webhook", __name__)


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    """Build the receiver; `test_config` overrides the defaults."""
    app = Flask(__name__)
    app.config.from_mapping(DEFAULTS)
    app.config.from_mapping(test_config or {})
    # One process, one list: the receiver runs a single worker, so memory is the whole store.
    app.extensions["webhook_events"] = deque(maxlen=app.config["MAX_EVENTS"])
    app.register_blueprint(bp)
    app.register_error_handler(413, too_large)
    return app


def events() -> deque:
    """The received events of the current app, oldest first."""
    return current_app.extensions["webhook_events"]


def error(status: int, code: str, message: str):
    """A JSON error in the project's `{"error": {"code", "message"}}` shape."""
    return jsonify(error={"code": code, "message": message}), status


def too_large(_exc):
    """Body over MAX_CONTENT_LENGTH."""
    return error(413, "payload_too_large", "webhook body too large")


@bp.post("/webhook")
def receive():
    """Store one delivery: its JSON body and headers."""
    body = request.get_json(silent=True)
    if not isinstance(body, (dict, list)):
        current_app.logger.warning("webhook: rejected a body that is not JSON")
        return error(400, "invalid_json", "body must be a JSON object or array")
    events().append({"received_at": time.time(), "headers": dict(request.headers), "body": body})
    return jsonify(ok=True), 202


@bp.get("/events")
def list_events():
    """Everything received so far (bounded), oldest first."""
    return jsonify(events=list(events()))


@bp.get("/healthz")
def healthz():
    """The process is alive."""
    return jsonify(status="ok")
