"""Prometheus scrape endpoint of this replica (scrape replicas directly, not through nginx)."""
from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    """Every metric of this replica in the Prometheus text format."""
    registry = current_app.extensions["realtime"].metrics.registry
    return Response(generate_latest(registry), mimetype=CONTENT_TYPE_LATEST)
