"""The OpenAPI document: a valid spec, served with sane headers, naming exactly the app's routes."""
from __future__ import annotations

import json
import re
from importlib import resources

import pytest
from openapi_spec_validator import validate

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
# Flask's own static route (the demo's assets) is files, not API: the pages that use it are documented.
UNDOCUMENTED = {"/static/<path:filename>"}


@pytest.fixture
def document() -> dict:
    """The document as the package ships it."""
    return json.loads(resources.files("realtime").joinpath("openapi.json").read_text())


def test_document_is_valid_openapi_3_1(document):
    validate(document)  # raises with the offending path when it is not
    assert document["openapi"].startswith("3.1")


def openapi_path(rule: str) -> str:
    """`/api/rooms/<room>/messages` as `/api/rooms/{room}/messages`."""
    return re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule)


def test_every_route_is_documented_and_nothing_else(app, document):
    routes = {(openapi_path(rule.rule), method.lower())
              for rule in app.url_map.iter_rules() if rule.rule not in UNDOCUMENTED
              for method in rule.methods & METHODS}
    documented = {(path, method) for path, item in document["paths"].items()
                  for method in item if method.upper() in METHODS}
    assert routes == documented


def test_served_document_is_the_shipped_one_with_cache_headers(client, document):
    response = client.get("/api/openapi.json")
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    assert response.get_json() == document
    assert response.headers["ETag"] and "max-age=300" in response.headers["Cache-Control"]
    assert "public" in response.headers["Cache-Control"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    again = client.get("/api/openapi.json", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304 and not again.data


def test_every_reference_resolves(document):
    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    for ref in set(refs(document)):
        target = document
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]  # KeyError names a dangling reference


def test_a_405_names_the_allowed_methods(client):
    response = client.delete("/api/stats")
    assert response.status_code == 405
    assert response.get_json()["error"]["code"] == "method_not_allowed"
    assert set(response.headers["Allow"].split(", ")) >= {"GET", "HEAD"}


def test_metrics_content_type_has_one_charset(client):
    response = client.get("/metrics")
    assert response.headers["Content-Type"].count("charset") == 1
    assert response.mimetype == "text/plain"


def test_a_rate_limited_answer_agrees_with_its_retry_after(app_factory_with):
    client = app_factory_with(DEMO_LOGIN=True, LOGIN_RATE_LIMIT="1/minute").test_client()
    assert client.post("/api/auth/token", json={"username": "ana"}).status_code == 200
    response = client.post("/api/auth/token", json={"username": "ana"})
    assert response.status_code == 429
    error = response.get_json()["error"]
    assert error["code"] == "rate_limited"
    # Both come from the limit's window (the header is rounded down when flask-limiter sets it).
    assert abs(error["retry_after"] - int(response.headers["Retry-After"])) <= 1
