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


@bp.post("/revocations")
def revoke():
    """Put a token id on the denylist until its expiry (`{"jti", "exp"?}`)."""
    require_admin()
    data = json_body()
    jti, exp = data.get("jti"), data.get("exp")
    if not isinstance(jti, str) or not JTI_RE.match(jti):
        raise AppError("invalid_payload", "jti must be 1-128 printable ASCII characters")
    max_ttl = current_app.config["REALTIME"]["JWT_ACCESS_TOKEN_EXPIRES"] + 3600
    if exp is not None and (isinstance(exp, bool) or not isinstance(exp, (int, float))
                            or not 0 <= exp <= 2**40):
        raise AppError("invalid_payload", "exp must be a Unix time")
    ttl = max_ttl if exp is None else min(max(exp - time.time(), 1), 366 * 86400)
    # Stored, mirrored by every replica, and the token's open connections are closed.
    current_app.extensions["realtime"].revocations.revoke(jti, ttl)
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
