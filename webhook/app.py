"""The webhook testing service: receives realtime's signed webhooks and shows them in a browser.

`POST /webhook` verifies the signature (realtime/signing.py), keeps every request in memory (the
newest WEBHOOK_MAX_EVENTS, refused ones too) and answers as the current mode says: ok (200),
fail (500) or hang. `GET /` is the testing UI; its JSON API is in webhook/api.py and needs the
UI token (webhook/access.py); requests for a Host outside WEBHOOK_TRUSTED_HOSTS get 400.
Run it with `python -m webhook --port 8090` (threaded) or, long-lived,
`gunicorn -k gevent --workers 1 'webhook.app:create_app()'`: one process, since memory is the
store, and a threaded or gevent server, so a hanging answer does not block the others.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

from flask import Flask
from werkzeug.exceptions import HTTPException, SecurityError

from . import access

from .relay import RedisPath
from .settings import load_settings
from .store import EventStore, Mode
from .web import Invalid, add_security_headers, error


@dataclass
class ReceiverState:
    """Everything the requests of one app share; every mutable part guards itself with a lock."""

    settings: dict[str, Any]
    secret: bytes | None  # None: verification is off (WEBHOOK_INSECURE_NO_SECRET)
    events: EventStore
    mode: Mode
    redis: RedisPath
    ui_token: str          # Authorization: Bearer value the UI and its API require
    token_made_up: bool    # WEBHOOK_UI_TOKEN was unset: ui_token is this process's own


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the receiver: defaults, then WEBHOOK_* environment, then `config` (unprefixed keys)."""
    settings = load_settings(config)
    app = Flask(__name__)  # static files from webhook/static
    app.config["MAX_CONTENT_LENGTH"] = settings["MAX_BODY"]
    app.config["TRUSTED_HOSTS"] = settings["TRUSTED_HOSTS"]
    app.json.sort_keys = False  # keep received headers and bodies in their order
    secret = settings["SECRET"]
    token, made_up = access.ui_token(settings["UI_TOKEN"])
    app.extensions["webhook"] = ReceiverState(
        settings=settings, secret=secret.encode() if isinstance(secret, str) else secret,
        events=EventStore(settings["MAX_EVENTS"], settings["MAX_BYTES"]), mode=Mode(),
        redis=RedisPath(settings["REDIS_URL"]), ui_token=token, token_made_up=made_up)
    from . import api, receive  # blueprints import nothing from here: no cycle
    app.register_blueprint(receive.bp)
    app.register_blueprint(api.bp)
    app.before_request(access.require_token)
    app.register_error_handler(Invalid, refused)
    app.register_error_handler(SecurityError, access.untrusted_host)
    app.register_error_handler(HTTPException, http_error)
    app.after_request(add_security_headers)
    if app.extensions["webhook"].secret is None:
        logging.getLogger(__name__).warning(
            "webhook: WEBHOOK_INSECURE_NO_SECRET is on: deliveries are NOT verified")
    if made_up:
        # Printed once so the operator can log in; set WEBHOOK_UI_TOKEN to keep one across restarts.
        logging.getLogger(__name__).warning(
            "webhook: WEBHOOK_UI_TOKEN is not set; this process's UI token is %s "
            "(open the UI at /#token=<it>)", token)
    return app


def refused(refusal: Invalid):
    """A refused API request: its structured error, logged once."""
    logging.getLogger(__name__).info("webhook: refused %s: %s", refusal.code, refusal.message)
    return error(refusal.status, refusal.code, refusal.message)


def http_error(exc: HTTPException):
    """404, 405, 413… as JSON errors like every other answer."""
    code = (exc.name or "error").lower().replace(" ", "_")
    return error(exc.code or 500, code, exc.description or exc.name)
