"""Liveness and readiness probes."""
from flask import Blueprint, current_app, jsonify

from ..store import StoreUnavailable, deadline
from ..version import VERSION

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is alive and serving."""
    return jsonify(status="ok", instance=current_app.extensions["realtime"].cluster.instance_id, version=VERSION)


@bp.get("/readyz")
def readyz():
    """The replica can reach its state store; 503 with the reason otherwise."""
    services = current_app.extensions["realtime"]
    if services.draining:
        return jsonify(status="draining", store=services.store.name, reason="shutting down"), 503
    try:
        # Its own short bound: a probe with a 1 s timeout sees a 503, not a replica that hangs.
        with deadline.within(services.settings["READY_TIMEOUT"]):
            services.store.ping()
    except StoreUnavailable as exc:
        # The error names Redis's address (and a URL's password): logged, never answered.
        current_app.logger.warning("not ready: state store unreachable: %s", exc)
        return jsonify(status="unavailable", store=services.store.name, reason="state store unreachable"), 503
    return jsonify(status="ready", store=services.store.name)
