"""Prometheus scrape endpoint of this replica (scrape replicas directly, not through nginx)."""
from flask import Blueprint, Response, current_app
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

bp = Blueprint("metrics", __name__)


@bp.get("/metrics")
def metrics():
    """Every metric of this replica in the Prometheus text format."""
    registry = current_app.extensions["realtime"].metrics.registry
    # content_type, not mimetype: CONTENT_TYPE_LATEST has its charset already (mimetype adds another)
    return Response(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
