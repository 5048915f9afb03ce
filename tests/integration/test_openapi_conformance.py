"""Schemathesis against a real replica (gunicorn + Redis): every answer matches the OpenAPI document.

Generated requests, valid and invalid, go to each documented operation with an admin token or an
API key; the answers must have a documented status, content type, headers and body, and never 5xx.
"""
from __future__ import annotations

import json
from importlib import resources

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from realtime.devcluster import Replica, clean_environ, free_port
from realtime.services.apikeys import hash_key, new_key

pytestmark = pytest.mark.integration

API_KEY = new_key()
DOCUMENT = json.loads(resources.files("realtime").joinpath("openapi.json").read_text())
# The document as the package ships it (the replica serves these bytes: checked below).
schema = schemathesis.openapi.from_dict(DOCUMENT, config=schemathesis.Config.from_dict({
    "seed": 20261129,  # the same requests on every run: a failure in CI reproduces locally
    "generation": {"mode": "all"},  # valid and invalid requests
    "phases": {"stateful": {"enabled": False}},  # the API has no resource links to follow
}))


@pytest.fixture(scope="module")
def replica(redis_server, tmp_path_factory, start_processes):
    """One replica on the session's redis-server, with demo login and a server API key."""
    workdir = tmp_path_factory.mktemp("openapi")
    env = {**clean_environ(), "REALTIME_REDIS_URL": redis_server.url,
           "REALTIME_JWT_SECRET_KEY": new_key(), "REALTIME_DEMO_LOGIN": "1",
           # `admin` is a demo admin (a loopback-only test replica).
           "REALTIME_DEMO_ADMINS": "admin", "REALTIME_DEMO_ADMINS_UNSAFE": "acknowledged",
           "REALTIME_API_KEYS": f"schemathesis:{hash_key(API_KEY)}",
           # Generated requests come far faster than people's: the limits are tested elsewhere.
           "REALTIME_RATE_LIMITS": "connect=100000/minute", "REALTIME_HTTP_RATE_LIMIT": "100000/minute",
           "REALTIME_LOGIN_RATE_LIMIT": "100000/minute",
           "REALTIME_ENV_FILE": str(workdir / "no.env"), "REALTIME_UPLOAD_DIR": str(workdir / "uploads")}
    server = Replica(free_port(), env, workdir / "logs", instance_id="openapi-1")
    try:
        start_processes(server)
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def credentials(replica):
    """Headers per security scheme: an admin token (passes every role check) and the API key; and
    a plain user's token (refused by admin routes, the server API, private and others' rooms)."""
    # `admin` is a demo admin (REALTIME_DEMO_ADMINS in the `replica` fixture).
    token = requests.post(replica.url + "/api/auth/token", json={"username": "admin"},
                          timeout=10).json()["access_token"]
    user = requests.post(replica.url + "/api/auth/token", json={"username": "ana"},
                         timeout=10).json()["access_token"]
    return {"bearerAuth": {"Authorization": f"Bearer {token}"}, "apiKey": {"X-API-Key": API_KEY},
            "user": {"Authorization": f"Bearer {user}"}}


def test_the_replica_serves_the_shipped_document(replica):
    response = requests.get(replica.url + "/api/openapi.json", timeout=10)
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    assert response.json() == DOCUMENT
    assert response.headers["ETag"] and response.headers["X-Content-Type-Options"] == "nosniff"


def first_scheme(operation) -> str | None:
    """The security scheme an operation lists first (each operation is tried with that one)."""
    requirements = operation.definition.raw.get("security", DOCUMENT.get("security", []))
    return next(iter(requirements[0]), None) if requirements else None


@schema.parametrize()
@settings(deadline=None, max_examples=25, suppress_health_check=list(HealthCheck))
def test_real_answers_match_the_document(case, replica, credentials):
    scheme = first_scheme(case.operation)
    # Schema-valid input can still be refused for what a schema cannot say (an attachment must
    # name an existing upload, an upload must be of an allowed type): no positive-acceptance check.
    case.call_and_validate(base_url=replica.url, headers=credentials.get(scheme, {}),
                           excluded_checks=[positive_data_acceptance], timeout=10)


@schema.parametrize()
@settings(deadline=None, max_examples=10, suppress_health_check=list(HealthCheck))
def test_answers_to_a_plain_user_match_the_document(case, replica, credentials):
    case.call_and_validate(base_url=replica.url, headers=credentials["user"],
                           excluded_checks=[positive_data_acceptance], timeout=10)


def test_with_redis_down_the_api_answers_a_documented_503(replica, redis_server, credentials):
    """Every /api route needs Redis (rate-limit counters at least): down, it is `unavailable`, not a 500."""
    redis_server.stop()
    try:
        for path in ("/api/stats", "/api/openapi.json", "/api/admin/dashboard"):
            response = requests.get(replica.url + path, headers=credentials["bearerAuth"], timeout=30)
            assert response.status_code == 503, (path, response.text)
            assert response.json()["error"]["code"] == "unavailable" and response.headers["Retry-After"]
            schema[path]["GET"].validate_response(response)
        assert requests.get(replica.url + "/healthz", timeout=30).status_code == 200
    finally:
        redis_server.start()
