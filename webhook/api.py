"""The testing UI and its JSON API: received events, the answer mode, the send form, health."""
from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify

from .relay import send_http, send_request
from .store import MAX_HANG_SECONDS, MODES
from .web import Invalid, int_arg, json_object, receiver

bp = Blueprint("api", __name__)

PAGE_DEFAULT, PAGE_MAX = 200, 1000


@bp.get("/")
def index():
    """The testing UI (webhook/static/index.html)."""
    return current_app.send_static_file("index.html")


@bp.get("/healthz")
def healthz():
    """The process is alive."""
    return jsonify(status="ok")


@bp.get("/api/info")
def info():
    """What the UI shows in its header: verification on or off, mode, which send paths exist."""
    state = receiver()
    settings = state.settings
    return jsonify(endpoint="/webhook", verifying=state.secret is not None,
                   tolerance=settings["TOLERANCE"], max_events=settings["MAX_EVENTS"],
                   send={"http": bool(settings["REALTIME_URL"]),
                         "redis": bool(settings["REDIS_URL"])},
                   **state.mode.get())


@bp.get("/api/events")
@bp.get("/events")  # the placeholder's address, still printed by older tooling
def events():
    """Received requests with id > `after` (oldest first, at most `limit`), and the newest id."""
    after, limit = int_arg("after", 0, 2**62), int_arg("limit", PAGE_DEFAULT, PAGE_MAX)
    return jsonify(receiver().events.after(after, limit))


@bp.delete("/api/events")
def clear():
    """Forget everything received so far."""
    return jsonify(cleared=receiver().events.clear())


@bp.get("/api/mode")
def get_mode():
    """The current answer mode."""
    return jsonify(receiver().mode.get())


def hang_seconds(value: Any) -> float | None:
    """A valid hang duration (0 < s <= MAX_HANG_SECONDS), or None when not given."""
    if value is None:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not 0 < value <= MAX_HANG_SECONDS:
        raise Invalid("invalid_payload",
                      f"hang_seconds must be a number in (0, {MAX_HANG_SECONDS:g}]")
    return float(value)


@bp.post("/api/mode")
def set_mode():
    """Switch to ok, fail or hang (`{"mode", "hang_seconds"?}`)."""
    data = json_object()
    if data.get("mode") not in MODES:
        raise Invalid("invalid_payload", f"mode must be one of: {', '.join(MODES)}")
    mode = receiver().mode.set(data["mode"], hang_seconds(data.get("hang_seconds")))
    current_app.logger.info("webhook: mode is now %s", mode)
    return jsonify(mode)


@bp.post("/api/send")
def send():
    """Send `{"room", "body", "via": "http"|"redis"}` into a room; answer with realtime's answer."""
    room, body, via = send_request(json_object())
    state = receiver()
    if via == "redis":
        status, answer = state.redis.send(room, body)
    else:
        settings = state.settings
        status, answer = send_http(settings["REALTIME_URL"], settings["REALTIME_API_KEY"],
                                   room, body, settings["SEND_TIMEOUT"])
    return jsonify({**answer, "via": via}), status
