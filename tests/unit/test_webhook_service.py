"""The webhook testing service (webhook/): signatures, what it stores, answer modes, the send form."""
from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
import time

import pytest
import redis
import requests
from flask.testing import FlaskClient
from hypothesis import given, settings, strategies as st

from realtime.devcluster import ROOT, free_port, wait_until
from realtime.store.redis import RedisStore
from webhook.app import create_app
from webhook.settings import ConfigError
from realtime.signing import (SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureError, sign,
                             signed_headers, verify)

SECRET = "webhook-unit-test-secret"
TOKEN = "webhook-unit-test-ui-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class TokenClient(FlaskClient):
    """A test client that sends the UI token, unless a request's environ_base says otherwise."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.environ_base["HTTP_AUTHORIZATION"] = AUTH["Authorization"]


@pytest.fixture
def make_app(monkeypatch):
    """Build receivers isolated from WEBHOOK_* in the environment, with a secret and a UI token."""
    for name in list(os.environ):
        if name.startswith("WEBHOOK_"):
            monkeypatch.delenv(name)
    apps = []

    def make(**overrides):
        app = create_app({"SECRET": SECRET, "UI_TOKEN": TOKEN, **overrides})
        app.test_client_class = TokenClient
        apps.append(app)
        return app
    yield make
    for app in apps:
        app.extensions["webhook"].redis.close()


@pytest.fixture
def client(make_app):
    """A test client of a receiver with the default settings."""
    return make_app().test_client()


def delivery(delivery_id: str = "dlv_1", event: str = "message.created", **data) -> bytes:
    """The raw body realtime sends."""
    return json.dumps({"id": delivery_id, "event": event, "created_at": int(time.time() * 1000),
                       "data": data or {"room": "lobby"}}).encode()


def deliver(client, body: bytes | None = None, secret: str = SECRET, timestamp: int | None = None,
            drop: tuple[str, ...] = (), **headers):
    """POST a signed delivery as realtime does; `drop` removes headers, keywords override them."""
    body = delivery() if body is None else body
    parsed = json.loads(body) if body.startswith(b"{") else {}
    timestamp = int(time.time()) if timestamp is None else timestamp
    sent = {"Content-Type": "application/json", "User-Agent": "realtime-webhooks/1",
            "X-Realtime-Event": parsed.get("event", ""), "X-Realtime-Delivery": parsed.get("id", ""),
            **signed_headers(secret.encode(), timestamp, body)}
    sent.update({name.replace("_", "-"): value for name, value in headers.items()})
    for name in drop:
        sent.pop(name)
    return client.post("/webhook", data=body, headers=sent)


def received(client, after: int = 0) -> list[dict]:
    """What the receiver lists after `after`."""
    answer = client.get(f"/api/events?after={after}")
    assert answer.status_code == 200
    return answer.get_json()["events"]


# ---------------------------------------------------------------------------------------------
# factory and settings


def test_refuses_to_start_without_a_secret(make_app):
    with pytest.raises(ConfigError, match="WEBHOOK_SECRET"):
        make_app(SECRET=None)


def test_reads_the_environment(make_app, monkeypatch):
    monkeypatch.setenv("WEBHOOK_SECRET", "from-env")
    monkeypatch.setenv("WEBHOOK_TOLERANCE", "60")
    monkeypatch.setenv("WEBHOOK_UI_TOKEN", TOKEN)
    app = create_app()
    app.test_client_class = TokenClient
    client = app.test_client()
    assert client.get("/api/info").get_json()["tolerance"] == 60
    assert deliver(client, secret="from-env").status_code == 200
    assert deliver(client, timestamp=int(time.time()) - 61, secret="from-env").status_code == 401


@pytest.mark.parametrize("name, value", [
    ("WEBHOOK_TOLERANCE", "soon"), ("WEBHOOK_TOLERANCE", "0"), ("WEBHOOK_MAX_EVENTS", "-1"),
    ("WEBHOOK_INSECURE_NO_SECRET", "maybe"), ("WEBHOOK_REALTIME_URL", "file:///etc/passwd"),
    ("WEBHOOK_REDIS_URL", "http://127.0.0.1:6379"), ("WEBHOOK_UI_TOKEN", "too-short"),
    ("WEBHOOK_TRUSTED_HOSTS", "webhook:8090"), ("WEBHOOK_TRUSTED_HOSTS", "::1"),
])
def test_refuses_bad_settings(make_app, monkeypatch, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=name):
        create_app({"SECRET": SECRET})


@pytest.mark.parametrize("url", ["redis+sentinel://127.0.0.1:26379,127.0.0.1:26380/0/mymaster",
                                 "redis+cluster://127.0.0.1:7000,127.0.0.1:7001/"])
def test_accepts_a_sentinel_or_cluster_redis_url(make_app, monkeypatch, url):
    monkeypatch.setenv("WEBHOOK_REDIS_URL", url)
    client = make_app().test_client()
    assert client.get("/api/info").get_json()["send"]["redis"] is True


def test_insecure_mode_accepts_unsigned_deliveries_and_says_so(make_app):
    client = make_app(SECRET=None, INSECURE_NO_SECRET=True).test_client()
    assert client.get("/api/info").get_json()["verifying"] is False
    answer = deliver(client, drop=(TIMESTAMP_HEADER, SIGNATURE_HEADER))
    assert answer.status_code == 200
    [event] = received(client)
    assert event["accepted"] and event["verification"] == "skipped"


# ---------------------------------------------------------------------------------------------
# who may use the UI and its API (issue 19, item 8): the UI token and trusted Host names


def anonymous(app) -> FlaskClient:
    """A test client that sends no Authorization header."""
    return FlaskClient(app, app.response_class)


PROTECTED = [("GET", "/api/info"), ("GET", "/api/events"), ("GET", "/events"), ("GET", "/api/mode"),
             ("POST", "/api/mode"), ("DELETE", "/api/events"), ("POST", "/api/send")]


@pytest.mark.parametrize("method, path", PROTECTED)
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-of-enough-length",
                                           f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "])
def test_the_api_needs_the_ui_token(make_app, method, path, authorization):
    client = anonymous(make_app())
    headers = {"Authorization": authorization} if authorization else {}
    answer = client.open(path, method=method, json={"mode": "fail"}, headers=headers)
    assert answer.status_code == 401
    assert answer.get_json()["error"]["code"] == "unauthorized"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    assert answer.headers["Cache-Control"] == "no-store"


@pytest.mark.parametrize("method, path", PROTECTED)
def test_the_api_answers_with_the_ui_token(make_app, method, path):
    client = anonymous(make_app())
    answer = client.open(path, method=method, json={"mode": "fail", "room": "lobby", "body": "hi"},
                         headers={"Authorization": f"bearer {TOKEN}"})  # the scheme is case-blind
    assert answer.status_code == (503 if path == "/api/send" else 200)  # send: no realtime URL


def test_a_refused_request_changes_nothing(make_app):
    app = make_app()
    assert anonymous(app).post("/api/mode", json={"mode": "fail"}).status_code == 401
    deliver(app.test_client())
    assert anonymous(app).delete("/api/events").status_code == 401
    assert app.test_client().get("/api/mode").get_json()["mode"] == "ok"
    assert len(received(app.test_client())) == 1


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/static/style.css", "/healthz"])
def test_the_page_shell_and_health_need_no_token(make_app, path):
    assert anonymous(make_app()).get(path).status_code == 200


def test_signed_deliveries_need_no_ui_token(make_app):
    app = make_app()
    answer = deliver(anonymous(app))
    assert answer.status_code == 200 and answer.get_json()["received"] == 1
    assert deliver(anonymous(app), secret="not-the-secret").status_code == 401  # still verified


def test_an_unset_token_is_made_up_and_logged(make_app, caplog):
    first, second = make_app(UI_TOKEN=None), make_app(UI_TOKEN=None)
    token = first.extensions["webhook"].ui_token
    assert first.extensions["webhook"].token_made_up and len(token) >= 32
    assert token != second.extensions["webhook"].ui_token
    assert token in caplog.text and "WEBHOOK_UI_TOKEN is not set" in caplog.text
    client = anonymous(first)
    assert client.get("/api/info").status_code == 401
    assert client.get("/api/info", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    assert not make_app().extensions["webhook"].token_made_up


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8090", "127.0.0.2:8090",
                                  "localhost.evil.example", "[::1]:8090"])
@pytest.mark.parametrize("method, path", [("GET", "/"), ("GET", "/api/info"), ("GET", "/healthz"),
                                          ("POST", "/webhook")])
def test_a_foreign_host_header_is_refused(client, host, method, path):
    answer = client.open(path, method=method, data=delivery(), headers={"Host": host})
    assert answer.status_code == 400
    assert answer.get_json()["error"]["code"] == "untrusted_host"
    assert received(client) == []  # a delivery to a foreign Host is not even stored


@pytest.mark.parametrize("host", ["localhost", "localhost:8090", "127.0.0.1:8090", "webhook:8090"])
def test_the_default_trusted_hosts(client, host):
    assert client.get("/api/info", headers={"Host": host}).status_code == 200
    assert deliver(client, Host=host).status_code == 200


def test_trusted_hosts_come_from_the_setting(make_app, monkeypatch):
    monkeypatch.setenv("WEBHOOK_TRUSTED_HOSTS", "hooks.example, .test.example")
    client = make_app().test_client()
    for host, status in [("hooks.example:443", 200), ("a.test.example", 200), ("test.example", 200),
                         ("localhost", 400), ("webhook", 400)]:
        assert client.get("/api/info", headers={"Host": host}).status_code == status, host


# ---------------------------------------------------------------------------------------------
# receiving


def test_a_valid_delivery_is_accepted_and_stored(client):
    body = delivery("dlv_ok", "room.joined", room="lobby", user={"id": "ana"})
    answer = deliver(client, body)
    assert answer.status_code == 200
    assert answer.get_json() == {"received": 1, "delivery": "dlv_ok", "attempt": 1}
    [event] = received(client)
    assert event["id"] == 1 and event["accepted"] is True and event["verification"] == "valid"
    assert event["delivery"] == "dlv_ok" and event["event"] == "room.joined"
    assert event["body"] == body.decode() and event["json"] == json.loads(body)
    assert event["headers"]["X-Realtime-Signature"].startswith("v1=")
    assert event["headers"]["User-Agent"] == "realtime-webhooks/1"
    assert event["response"] == {"status": 200, "mode": "ok"} and event["error"] is None
    assert event["attempt"] == 1 and event["seen"] == 1
    assert abs(event["received_at"] - time.time() * 1000) < 5000


NOW = int(time.time())


@pytest.mark.parametrize("kwargs, status, code", [
    ({"secret": "another-secret"}, 401, "bad_signature"),
    ({"X_Realtime_Signature": "v1=" + "0" * 64}, 401, "bad_signature"),
    ({"X_Realtime_Signature": "sha256=abc"}, 401, "bad_signature"),
    ({"drop": (SIGNATURE_HEADER,)}, 400, "missing_signature"),
    ({"drop": (TIMESTAMP_HEADER,)}, 400, "missing_signature"),
    ({"drop": (TIMESTAMP_HEADER, SIGNATURE_HEADER)}, 400, "missing_signature"),
    ({"X_Realtime_Timestamp": "12.5"}, 400, "missing_signature"),
    ({"timestamp": NOW - 301}, 401, "stale_timestamp"),
    ({"timestamp": NOW + 3600}, 401, "stale_timestamp"),
])
def test_untrusted_deliveries_are_refused_and_stored_as_rejected(client, kwargs, status, code):
    answer = deliver(client, **kwargs)
    assert answer.status_code == status
    assert answer.get_json()["error"]["code"] == code
    [event] = received(client)
    assert event["accepted"] is False and event["verification"] == code
    assert event["error"]["code"] == code and event["response"]["status"] == status
    assert event["delivery"] == "dlv_1"  # what it claimed, shown for debugging


def test_a_tampered_body_is_refused(client):
    body = delivery()
    timestamp = int(time.time())
    headers = {"X-Realtime-Event": "message.created", "X-Realtime-Delivery": "dlv_1",
               **signed_headers(SECRET.encode(), timestamp, body)}
    answer = client.post("/webhook", data=body.replace(b"lobby", b"lobbz"), headers=headers)
    assert answer.status_code == 401 and answer.get_json()["error"]["code"] == "bad_signature"


def test_timestamps_within_the_tolerance_pass(make_app):
    client = make_app(TOLERANCE=10).test_client()
    assert deliver(client, timestamp=int(time.time()) - 8).status_code == 200
    assert deliver(client, timestamp=int(time.time()) + 8).status_code == 200
    assert deliver(client, timestamp=int(time.time()) - 12).status_code == 401


@pytest.mark.parametrize("body, headers", [
    (b"not json", {}),
    (b"[1, 2]", {}),
    (json.dumps({"id": "d", "event": "message.created", "created_at": 1}).encode(), {}),
    (json.dumps({"id": "d", "event": "Not An Event", "created_at": 1, "data": {}}).encode(), {}),
    (delivery("dlv_1"), {"X_Realtime_Delivery": "dlv_other"}),
    (delivery("dlv_1"), {"X_Realtime_Event": "room.left"}),
])
def test_a_signed_body_that_is_not_a_delivery_is_refused(client, body, headers):
    answer = deliver(client, body, **headers)
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "invalid_payload"
    [event] = received(client)
    assert event["accepted"] is False and event["verification"] == "valid"


def test_an_oversized_body_is_refused_and_stored(make_app):
    client = make_app(MAX_BODY=2048).test_client()
    answer = deliver(client, delivery(text="x" * 4096))
    assert answer.status_code == 413 and answer.get_json()["error"]["code"] == "payload_too_large"
    [event] = received(client)
    assert event["accepted"] is False and event["verification"] == "unchecked"


def test_repeated_delivery_ids_are_counted(client):
    body = delivery("dlv_retry")
    attempts = [deliver(client, body).get_json()["attempt"] for _ in range(3)]
    deliver(client, delivery("dlv_other"))
    assert attempts == [1, 2, 3]
    events = received(client)
    assert [(e["delivery"], e["attempt"], e["seen"]) for e in events] == [
        ("dlv_retry", 1, 3), ("dlv_retry", 2, 3), ("dlv_retry", 3, 3), ("dlv_other", 1, 1)]


def test_the_store_keeps_only_the_newest(make_app):
    client = make_app(MAX_EVENTS=3).test_client()
    for n in range(5):
        deliver(client, delivery(f"dlv_{n}"))
    assert [e["delivery"] for e in received(client)] == ["dlv_2", "dlv_3", "dlv_4"]


# ---------------------------------------------------------------------------------------------
# modes


def test_fail_mode_answers_500_and_a_retry_is_a_second_attempt(client):
    assert client.post("/api/mode", json={"mode": "fail"}).get_json()["mode"] == "fail"
    failed = deliver(client, delivery("dlv_f"))
    assert failed.status_code == 500
    assert failed.get_json()["error"]["code"] == "simulated_failure"
    client.post("/api/mode", json={"mode": "ok"})
    retried = deliver(client, delivery("dlv_f"))
    assert retried.status_code == 200 and retried.get_json()["attempt"] == 2
    first, second = received(client)
    assert first["accepted"] and first["response"] == {"status": 500, "mode": "fail"}
    assert second["response"] == {"status": 200, "mode": "ok"} and second["seen"] == 2


def test_hang_mode_waits_then_answers_200(client):
    mode = client.post("/api/mode", json={"mode": "hang", "hang_seconds": 0.3}).get_json()
    assert mode == {"mode": "hang", "hang_seconds": 0.3}
    assert client.get("/api/mode").get_json() == mode
    started = time.monotonic()
    answer = deliver(client)
    assert answer.status_code == 200 and time.monotonic() - started >= 0.3
    [event] = received(client)
    assert event["response"] == {"status": 200, "mode": "hang", "hang_seconds": 0.3}


def test_hang_seconds_default_and_kept_across_switches(client):
    assert client.get("/api/mode").get_json() == {"mode": "ok", "hang_seconds": 30.0}
    client.post("/api/mode", json={"mode": "hang", "hang_seconds": 5})
    assert client.post("/api/mode", json={"mode": "ok"}).get_json() == {"mode": "ok", "hang_seconds": 5.0}


@pytest.mark.parametrize("payload", [
    {"mode": "slow"}, {}, {"mode": "hang", "hang_seconds": 0}, {"mode": "hang", "hang_seconds": 121},
    {"mode": "hang", "hang_seconds": "5"}, {"mode": "hang", "hang_seconds": True}, ["ok"],
])
def test_invalid_modes_are_refused_and_change_nothing(client, payload):
    answer = client.post("/api/mode", json=payload)
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "invalid_payload"
    assert client.get("/api/mode").get_json()["mode"] == "ok"


def test_mode_changes_need_json(client):
    answer = client.post("/api/mode", data="mode=fail",
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert answer.status_code == 400
    assert client.get("/api/mode").get_json()["mode"] == "ok"


# ---------------------------------------------------------------------------------------------
# listing and clearing


def test_events_after_a_sequence_number(client):
    for n in range(5):
        deliver(client, delivery(f"dlv_{n}"))
    assert [e["id"] for e in received(client, after=3)] == [4, 5]
    page = client.get("/api/events?after=1&limit=2").get_json()
    assert [e["id"] for e in page["events"]] == [2, 3]
    assert page["more"] is True and page["last_id"] == 5
    assert received(client, after=5) == []


@pytest.mark.parametrize("query", ["after=-1", "after=x", "limit=1e3", "after=" + "9" * 20])
def test_bad_listing_parameters(client, query):
    answer = client.get(f"/api/events?{query}")
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "invalid_payload"


def test_clear_forgets_everything_but_ids_keep_growing(client):
    deliver(client, delivery("dlv_a"))
    deliver(client, delivery("dlv_a"))
    generation = client.get("/api/events").get_json()["generation"]
    assert client.delete("/api/events").get_json() == {"cleared": 2}
    page = client.get("/api/events").get_json()
    assert page["events"] == [] and page["generation"] != generation
    assert deliver(client, delivery("dlv_a")).get_json() == {"received": 3, "delivery": "dlv_a",
                                                             "attempt": 1}


# ---------------------------------------------------------------------------------------------
# UI and headers


@pytest.mark.parametrize("path", ["/", "/static/app.js", "/static/style.css", "/api/events",
                                  "/healthz", "/no-such-page"])
def test_security_headers_on_every_response(client, path):
    answer = client.get(path)
    assert answer.status_code == (404 if path == "/no-such-page" else 200)
    assert "default-src 'self'" in answer.headers["Content-Security-Policy"]
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert answer.headers["X-Frame-Options"] == "DENY"


def test_the_ui_has_no_inline_script_or_style_and_no_innerhtml(client):
    page = client.get("/").get_data(as_text=True)
    assert "<script>" not in page and "style=" not in page and "<style" not in page
    assert "http://" not in page and "https://" not in page  # no CDN
    script = client.get("/static/app.js").get_data(as_text=True)
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script


# ---------------------------------------------------------------------------------------------
# the send form


def test_send_over_http_without_a_realtime_url(client):
    answer = client.post("/api/send", json={"room": "lobby", "body": "hi", "via": "http"})
    assert answer.status_code == 503
    assert answer.get_json()["error"]["code"] == "not_configured"


def test_send_over_http_to_a_closed_port(make_app):
    client = make_app(REALTIME_URL=f"http://127.0.0.1:{free_port()}", SEND_TIMEOUT=2).test_client()
    answer = client.post("/api/send", json={"room": "lobby", "body": "hi", "via": "http"})
    assert answer.status_code == 502
    assert answer.get_json()["error"]["code"] == "upstream_unreachable"


def test_send_over_http_to_a_server_that_never_answers(make_app):
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections, never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        client = make_app(REALTIME_URL=url, SEND_TIMEOUT=0.3).test_client()
        started = time.monotonic()
        answer = client.post("/api/send", json={"room": "lobby", "body": "hi"})
    assert answer.status_code == 504 and answer.get_json()["error"]["code"] == "upstream_timeout"
    assert time.monotonic() - started < 5


@pytest.mark.parametrize("payload", [
    {"body": "hi"}, {"room": "", "body": "hi"}, {"room": "lobby"}, {"room": "lobby", "body": 5},
    {"room": "lobby", "body": "hi", "via": "carrier-pigeon"},
])
def test_send_validates_the_form(client, payload):
    answer = client.post("/api/send", json=payload)
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "invalid_payload"


def test_send_over_redis_persists_the_message(make_app, redis_url):
    client = make_app(REDIS_URL=redis_url).test_client()
    answer = client.post("/api/send", json={"room": "ops", "body": "deploy finished", "via": "redis"})
    assert answer.status_code == 201, answer.get_json()
    sent = answer.get_json()["message"]
    assert sent["body"] == "deploy finished" and sent["from"]["name"] == "webhook-tester"
    connection = redis.Redis.from_url(redis_url)
    try:
        stored = RedisStore(connection).messages_after("ops", 0, 10)
    finally:
        connection.close()
    assert [(m["id"], m["body"], m["from"]["id"]) for m in stored] == [
        (sent["id"], "deploy finished", "webhook-tester")]


def test_send_over_redis_answers_realtime_refusals(make_app, redis_url):
    client = make_app(REDIS_URL=redis_url).test_client()
    answer = client.post("/api/send", json={"room": "no spaces", "body": "hi", "via": "redis"})
    assert answer.status_code == 400 and answer.get_json()["error"]["code"] == "invalid_room"


def test_send_over_redis_without_a_url(client):
    answer = client.post("/api/send", json={"room": "ops", "body": "hi", "via": "redis"})
    assert answer.status_code == 503 and answer.get_json()["error"]["code"] == "not_configured"


# ---------------------------------------------------------------------------------------------
# `python -m webhook`: the command the local cluster runs


def test_python_m_webhook_refuses_to_start_without_a_secret():
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_")}
    done = subprocess.run([sys.executable, "-m", "webhook", "--port", str(free_port())], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "WEBHOOK_SECRET" in done.stderr


def test_python_m_webhook_keeps_serving_while_a_delivery_hangs(tmp_path):
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_")},
           "WEBHOOK_SECRET": SECRET, "WEBHOOK_UI_TOKEN": TOKEN}
    with open(tmp_path / "webhook.log", "wb") as log:
        server = subprocess.Popen([sys.executable, "-m", "webhook", "--host", "127.0.0.1",
                                   "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=log)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: _healthy(base), 20), (tmp_path / "webhook.log").read_text()
        requests.post(f"{base}/api/mode", json={"mode": "hang", "hang_seconds": 2}, headers=AUTH,
                      timeout=5)
        body = delivery("dlv_hang")
        headers = {"X-Realtime-Event": "message.created", "X-Realtime-Delivery": "dlv_hang",
                   "Content-Type": "application/json",
                   **signed_headers(SECRET.encode(), int(time.time()), body)}
        answers = []
        hanging = threading.Thread(target=lambda: answers.append(
            requests.post(f"{base}/webhook", data=body, headers=headers, timeout=10)))
        hanging.start()
        assert wait_until(lambda: requests.get(f"{base}/api/events", headers=AUTH,
                                               timeout=5).json()["events"], 5)
        started = time.monotonic()
        assert requests.get(f"{base}/healthz", timeout=5).status_code == 200
        assert time.monotonic() - started < 1.0 and not answers  # answered while it still hangs
        hanging.join(10)
        assert answers and answers[0].status_code == 200
    finally:
        server.terminate()
        server.wait(10)


def test_python_m_webhook_prints_the_ui_url_with_a_made_up_token(tmp_path):
    port, log = free_port(), tmp_path / "webhook.log"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WEBHOOK_")},
           "WEBHOOK_SECRET": SECRET}
    with open(log, "wb") as out:
        server = subprocess.Popen([sys.executable, "-m", "webhook", "--port", str(port)], cwd=ROOT,
                                  env=env, stdout=out, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        line = re.compile(rf"^UI \(token made up.*{base}/#token=(\S+)$", re.M)
        assert wait_until(lambda: line.search(log.read_text()), 20), log.read_text()
        printed = line.search(log.read_text())
        assert requests.get(f"{base}/api/info", timeout=5).status_code == 401
        assert requests.get(f"{base}/api/info", headers={"Authorization": f"Bearer {printed[1]}"},
                            timeout=5).status_code == 200
    finally:
        server.terminate()
        server.wait(10)


def _healthy(base: str) -> bool:
    """True once the receiver answers /healthz."""
    try:
        return requests.get(f"{base}/healthz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


# ---------------------------------------------------------------------------------------------
# signing properties (realtime/signing.py, shared by the realtime sender and the webhook receiver)

secrets_ = st.binary(min_size=1, max_size=64)
bodies = st.binary(max_size=2048)
timestamps = st.integers(min_value=0, max_value=10**11)


@settings(max_examples=300, deadline=None)
@given(secret=secrets_, body=bodies, timestamp=timestamps,
       skew=st.floats(min_value=-300, max_value=300, allow_nan=False))
def test_a_signature_verifies_within_the_tolerance(secret, body, timestamp, skew):
    headers = {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}
    verify(secret, headers, body, now=timestamp + skew, tolerance=300)
    lower = {name.lower(): value for name, value in headers.items()}  # header names are case-blind
    verify(secret, lower, body, now=timestamp + skew, tolerance=300)


@settings(max_examples=300, deadline=None)
@given(secret=secrets_, body=bodies.filter(len), timestamp=timestamps, data=st.data())
def test_any_single_byte_change_of_the_body_fails(secret, body, timestamp, data):
    index = data.draw(st.integers(min_value=0, max_value=len(body) - 1))
    replacement = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != body[index]))
    changed = body[:index] + bytes([replacement]) + body[index + 1:]
    headers = {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: sign(secret, timestamp, body)}
    with pytest.raises(SignatureError) as refused:
        verify(secret, headers, changed, now=timestamp, tolerance=300)
    assert refused.value.code == "bad_signature" and refused.value.status == 401


@settings(max_examples=200, deadline=None)
@given(secret=secrets_, body=bodies, timestamp=timestamps,
       skew=st.floats(min_value=300.001, max_value=10**6, allow_nan=False), future=st.booleans())
def test_a_valid_signature_outside_the_tolerance_is_stale(secret, body, timestamp, skew, future):
    headers = signed_headers(secret, timestamp, body)
    with pytest.raises(SignatureError) as refused:
        verify(secret, headers, body, now=timestamp - skew if future else timestamp + skew, tolerance=300)
    assert refused.value.code == "stale_timestamp"


def test_sign_is_hmac_sha256_of_timestamp_dot_body():
    # Known answer, so the sender and any third-party receiver agree on the exact bytes signed.
    import hashlib
    import hmac
    expected = hmac.new(b"k", b"1700000000.{}", hashlib.sha256).hexdigest()
    assert sign(b"k", 1700000000, b"{}") == f"v1={expected}"


def test_a_rotated_secret_may_sign_next_to_the_old_one():
    body, timestamp = b"{}", 1700000000
    both = f"{sign(b'old', timestamp, body)}, {sign(b'new', timestamp, body)}"
    headers = {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: both}
    verify(b"new", headers, body, now=timestamp, tolerance=300)
    verify(b"old", headers, body, now=timestamp, tolerance=300)
