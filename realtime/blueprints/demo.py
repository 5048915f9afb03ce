"""The browser demo, served by the app itself."""
from flask import Blueprint, current_app, send_from_directory

bp = Blueprint("demo", __name__)


@bp.get("/")
def index():
    """The demo page."""
    return send_from_directory(current_app.static_folder, "index.html")
