"""Admin HTTP routes: token revocation and private-room invitations (admin role or API key)."""
from __future__ import annotations

import re
import time

from flask import Blueprint, current_app, jsonify

from ..errors import AppError
from ..services import validation
from .guards import json_body, require_admin

bp = Blueprint("admin", __name__, url_prefix="/api/admin")
JTI_RE = re.compile(r"^[\x21-\x7e]{1,128}\Z")


UNBOUNDED_LIFETIME = 366 * 86400  # how long entries last when tokens may live any time (JWT_MAX_LIFETIME=0)
MARGIN = 60  # seconds an entry outlives the last moment its token could still be accepted


def unix_time(value: object, name: str) -> float:
    """A Unix time from a JSON body, or a structured refusal."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 2**40:
        raise AppError("invalid_payload", f"{name} must be a Unix time")
    return float(value)


def longest_lifetime(settings: dict) -> float:
    """The longest a token the server accepts can live."""
    return settings["JWT_MAX_LIFETIME"] or max(settings["JWT_ACCESS_TOKEN_EXPIRES"], UNBOUNDED_LIFETIME)


@bp.post("/revocations")
def revoke():
    """Deny one token id (`{"jti", "exp"?}`) or every token of a user issued before a time (`{"user", "before"?}`)."""
    require_admin()
    data = json_body()
    if ("jti" in data) == ("user" in data):
        raise AppError("invalid_payload", "give either jti or user")
    settings = current_app.config["REALTIME"]
    revocations = current_app.extensions["realtime"].revocations
    now, grace = time.time(), settings["JWT_LEEWAY"] + MARGIN
    if "user" in data:
        user = validation.user_id(data.get("user"), "user")
        # A time ahead of now also refuses the user's tokens issued until then.
        before = now if data.get("before") is None else unix_time(data["before"], "before")
        # Every token issued before `before` has expired (leeway included) once this runs out.
        ttl = max(before, now) - now + longest_lifetime(settings) + grace
        in_force = revocations.revoke_user(user, before, ttl)
        return jsonify(user=user, before=in_force, seconds=int(ttl)), 201
    jti, exp = data.get("jti"), data.get("exp")
    if not isinstance(jti, str) or not JTI_RE.match(jti):
        raise AppError("invalid_payload", "jti must be 1-128 printable ASCII characters")
    # The entry outlives the token's exp plus the leeway the server still accepts it for.
    ttl = (longest_lifetime(settings) if exp is None else max(unix_time(exp, "exp") - now, 1)) + grace
    # Stored, mirrored by every replica, and the token's open connections are closed.
    revocations.revoke(jti, ttl)
    return jsonify(revoked=jti, seconds=int(ttl)), 201


@bp.post("/rooms/<room>/invitations")
def invite(room: str):
    """Let a user into a private room (`{"user"}`)."""
    require_admin()
    services = current_app.extensions["realtime"]
    room = services.messages.room(room)
    if not services.access.is_private(room):
        raise AppError("invalid_room", "only private rooms take invitations")
    user = validation.user_id(json_body().get("user"), "user")
    return jsonify(room=room, user=user, added=services.store.invite(room, user)), 201


@bp.get("/webhooks")
def webhooks():
    """Webhook queue depth (cluster-wide) and this replica's breakers and delivery counts."""
    require_admin()
    services = current_app.extensions["realtime"]
    worker = services.webhook_worker
    breakers = {name: b.current_state for name, b in worker.breakers.items()} if worker else {}
    return jsonify(instance=services.cluster.instance_id, endpoints=list(services.webhooks.policy.endpoints),
                   backlog=services.store.webhook_backlog(), breakers=breakers,
                   outcomes=worker.outcomes if worker else {},
                   transitions=[list(t) for t in worker.transitions] if worker else [])


@bp.get("/dashboard")
def dashboard():
    """The monitoring dashboard's snapshot of the cluster (what /admin pushes every few seconds)."""
    require_admin()
    return jsonify(current_app.extensions["realtime"].dashboard.snapshot())
