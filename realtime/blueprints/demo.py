"""The browser demo, served by the app itself."""
from flask import Blueprint, current_app, send_from_directory

bp = Blueprint("demo", __name__)


@bp.get("/")
def index():
    """The demo page."""
    return send_from_directory(current_app.static_folder, "index.html")


@bp.get("/dashboard")
def dashboard():
    """The monitoring dashboard (it asks for an admin login)."""
    return send_from_directory(current_app.static_folder, "dashboard.html")
