"""Cluster-wide connection counts."""
from flask import Blueprint, current_app, jsonify

bp = Blueprint("stats", __name__, url_prefix="/api")


@bp.get("/stats")
def stats():
    """Every live replica and its clients, as the `stats` event carries them."""
    return jsonify(current_app.extensions["realtime"].cluster.stats())
