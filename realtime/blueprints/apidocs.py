"""The OpenAPI document of the HTTP API (realtime/openapi.json), served as it ships."""
from __future__ import annotations

import hashlib
from functools import cache
from importlib import resources

from flask import Blueprint, Response, request

bp = Blueprint("apidocs", __name__, url_prefix="/api")

# Changes only with a deploy: caches may keep it a few minutes, then revalidate by ETag.
CACHE_SECONDS = 300


@cache
def document() -> tuple[bytes, str]:
    """The document's bytes and their strong ETag (read once per process)."""
    data = resources.files("realtime").joinpath("openapi.json").read_bytes()
    return data, hashlib.sha256(data).hexdigest()[:32]


@bp.get("/openapi.json")
def openapi():
    """The OpenAPI 3.1 document; 304 when the client's `If-None-Match` still matches."""
    data, etag = document()
    response = Response(data, mimetype="application/json")
    response.set_etag(etag)
    response.cache_control.public = True
    response.cache_control.max_age = CACHE_SECONDS
    return response.make_conditional(request)
