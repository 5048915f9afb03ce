"""Demo login: a token for a chosen name, only when enabled."""
from flask import Blueprint, current_app, jsonify

from .. import auth, demomode
from ..errors import AppError
from ..extensions import limiter
from .guards import json_body

bp = Blueprint("auth", __name__, url_prefix="/api/auth")


@bp.post("/token")
@limiter.limit(lambda: current_app.config["REALTIME"]["LOGIN_RATE_LIMIT"])
def token():
    """Issue a demo access token for `{"username"}`."""
    settings = current_app.config["REALTIME"]
    if not settings["DEMO_LOGIN"]:
        raise AppError("not_found", "demo login is disabled", 404)
    data = json_body()
    access_token, user = auth.issue_demo_token(data.get("username"), demomode.admins(settings))
    return jsonify(access_token=access_token, token_type="Bearer", user=user)
