"""`POST /webhook`: verify a delivery, keep it (refused ones too), answer as the mode says."""
from __future__ import annotations

import json
import re
import time
from typing import Any, Mapping

from flask import Blueprint, current_app, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from realtime import signing
from .web import Invalid, error, receiver

bp = Blueprint("receive", __name__)

EVENT_HEADER, DELIVERY_HEADER = "X-Realtime-Event", "X-Realtime-Delivery"
# Dotted lower-case names (message.created): new event types pass, garbage does not.
EVENT_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")
MAX_ID = 200  # longest delivery id or event name kept from a header


def header(name: str) -> str | None:
    """A request header, cut to MAX_ID characters (it is only shown, never trusted)."""
    value = request.headers.get(name)
    return value[:MAX_ID] if value else None


def parse_json(raw: bytes) -> Any:
    """The body as JSON, or None if it is not JSON."""
    try:
        return json.loads(raw)
    except ValueError:  # also UnicodeDecodeError
        return None


def check_delivery(body: Any, headers: Mapping[str, str]) -> None:
    """A verified body must be a delivery, and agree with its event and delivery headers."""
    if not isinstance(body, dict):
        raise Invalid("invalid_payload", "body must be a JSON object")
    delivery, event = body.get("id"), body.get("event")
    if not isinstance(delivery, str) or not 0 < len(delivery) <= MAX_ID:
        raise Invalid("invalid_payload", f"id must be a string of 1-{MAX_ID} characters")
    if not isinstance(event, str) or len(event) > 64 or not EVENT_RE.match(event):
        raise Invalid("invalid_payload", "event must be a dotted name such as message.created")
    created = body.get("created_at")
    if not isinstance(created, int) or isinstance(created, bool) or created < 0:
        raise Invalid("invalid_payload", "created_at must be milliseconds since the epoch")
    if not isinstance(body.get("data"), dict):
        raise Invalid("invalid_payload", "data must be a JSON object")
    if headers.get(DELIVERY_HEADER) != delivery:
        raise Invalid("invalid_payload", f"{DELIVERY_HEADER} must equal the body's id")
    if headers.get(EVENT_HEADER) != event:
        raise Invalid("invalid_payload", f"{EVENT_HEADER} must equal the body's event")


def verify(state, raw: bytes) -> str:
    """Check the signature unless running without a secret; returns the verification result."""
    if state.secret is None:
        return "skipped"
    try:
        signing.verify(state.secret, request.headers, raw, time.time(), state.settings["TOLERANCE"])
    except signing.SignatureError as refusal:
        raise Invalid(refusal.code, refusal.message, refusal.status) from None
    return "valid"


def record(state, raw: bytes, verification: str, status: int, refusal: Invalid | None,
           mode: dict[str, Any] | None = None) -> dict[str, Any]:
    """Store what was received and how it was answered; returns the stored record."""
    headers = dict(request.headers)
    entry = {
        "received_at": int(time.time() * 1000),
        "remote_addr": request.remote_addr,
        "delivery": header(DELIVERY_HEADER),
        "event": header(EVENT_HEADER),
        "headers": headers,
        "body": raw.decode("utf-8", "replace"),
        "body_bytes": len(raw),
        "json": parse_json(raw),
        "accepted": refusal is None,
        "verification": verification,
        "error": {"code": refusal.code, "message": refusal.message} if refusal else None,
        "response": {"status": status, **(mode or {})},
    }
    # Roughly what it costs to keep: the raw text, its parsed copy and the headers.
    size = 2 * len(raw) + sum(len(k) + len(v) for k, v in headers.items()) + 512
    return state.events.add(entry, size)


def refuse(state, raw: bytes, verification: str, refusal: Invalid):
    """Keep a refused request (marked rejected), log it once and answer its 4xx."""
    stored = record(state, raw, verification, refusal.status, refusal)
    current_app.logger.warning("webhook: refused request %s (delivery %s): %s %s", stored["id"],
                               stored["delivery"], refusal.code, refusal.message)
    return error(refusal.status, refusal.code, refusal.message)


@bp.post("/webhook")
def receive():
    """Verify, store, then answer ok (200), fail (500) or hang (sleep, then 200)."""
    state = receiver()
    try:
        raw = request.get_data(cache=True)
    except RequestEntityTooLarge:
        limit = state.settings["MAX_BODY"]
        return refuse(state, b"", "unchecked",
                      Invalid("payload_too_large", f"body is larger than {limit} bytes", 413))
    verification = "unchecked"
    try:
        verification = verify(state, raw)
        check_delivery(parse_json(raw), request.headers)
    except Invalid as refusal:
        return refuse(state, raw, refusal.code if verification == "unchecked" else verification,
                      refusal)
    return answer(state, raw, verification)


def answer(state, raw: bytes, verification: str):
    """Store an accepted delivery and answer it the way the current mode says."""
    mode = state.mode.get()
    status = 500 if mode["mode"] == "fail" else 200
    shown = mode if mode["mode"] == "hang" else {"mode": mode["mode"]}
    stored = record(state, raw, verification, status, None, shown)
    if mode["mode"] == "fail":
        return error(500, "simulated_failure", "the receiver is in fail mode",
                     received=stored["id"])
    if mode["mode"] == "hang":
        # A threaded or gevent server keeps answering other requests meanwhile.
        time.sleep(mode["hang_seconds"])
    return jsonify(received=stored["id"], delivery=stored["delivery"], attempt=stored["attempt"])
