"""`make run`'s replica: `realtime serve` with no Redis configured, on in-memory backends."""
from __future__ import annotations

import json
import time

import pytest
import requests

from chatclient import ChatClient
from clusterfixtures import fast_paths_env
from lonereplica import demo_token, lone_replica
from realtime.devcluster import clean_environ

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def embedded(tmp_path_factory, start_processes):
    """One replica exactly as `make run` starts it (no REALTIME_REDIS_URL, no secret)."""
    workdir = tmp_path_factory.mktemp("embedded")
    env = {**clean_environ(), **fast_paths_env(), "REALTIME_ENV_FILE": str(workdir / "no.env")}
    with lone_replica(workdir, env, "embedded", start_processes) as replica:
        yield replica


@pytest.fixture(scope="module")
def embedded_query_token(tmp_path_factory, start_processes):
    """The same, with the opt-in `?token=` query parameter switched on (REALTIME_QUERY_TOKEN)."""
    workdir = tmp_path_factory.mktemp("embedded-query")
    env = {**clean_environ(), **fast_paths_env(), "REALTIME_ENV_FILE": str(workdir / "no.env"), "REALTIME_QUERY_TOKEN": "1"}
    with lone_replica(workdir, env, "embedded-query", start_processes) as replica:
        yield replica


login = demo_token


def test_demo_and_assets_are_served(embedded):
    page = requests.get(embedded.url + "/", timeout=5)
    assert page.status_code == 200 and "text/html" in page.headers["Content-Type"]
    for asset in ("/static/app.js", "/static/style.css", "/static/vendor/socket.io.min.js"):
        assert requests.get(embedded.url + asset, timeout=5).status_code == 200, asset


def test_ready_on_the_memory_store(embedded):
    assert requests.get(embedded.url + "/readyz", timeout=5).json() == {"status": "ready", "store": "memory"}


def test_demo_login_refuses_bad_names(embedded):
    response = requests.post(embedded.url + "/api/auth/token", json={"username": "<b>x</b>"}, timeout=5)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_username"
    response = requests.post(embedded.url + "/api/auth/token", data="not json", timeout=5)
    assert response.json()["error"]["code"] == "invalid_payload"


def test_messages_flow_and_counts_show(embedded):
    ana = ChatClient(embedded.url, login(embedded.url, "Ana")).connect()
    bo = ChatClient(embedded.url, login(embedded.url, "Bo"), transports=["polling"]).connect()
    try:
        for client in (ana, bo):
            client.call("join", {"room": "lobby"})
        sent = ana.call("send", {"room": "lobby", "body": "hello embedded"})["message"]
        assert bo.wait_for("message", lambda m: m["id"] == sent["id"]) == sent
        stats = bo.wait_for("stats", lambda s: s["clients_total"] == 2)
        assert stats["instances"][0]["id"] == "embedded"
    finally:
        ana.close()
        bo.close()


def log_entries(replica) -> list[dict]:
    """Every line the replica (gunicorn master and worker) wrote, each parsed as JSON."""
    return [json.loads(line) for line in replica.log_path.read_text().splitlines() if line.strip()]


def test_gunicorn_logs_are_json_with_the_request_fields(embedded):
    token = login(embedded.url, "logger")
    requests.get(embedded.url + f"/healthz?token={token}", headers={"X-Request-ID": "req-42"}, timeout=5)
    ChatClient(embedded.url, token, transports=["websocket"]).connect().close()
    deadline = time.monotonic() + 10
    while True:
        entries = log_entries(embedded)  # fails on any line that is not JSON
        access = [e for e in entries if e["logger"] == "gunicorn.access"]
        sessions = [e for e in access if e["path"] == "/socket.io/" and e["status"] == "101"]
        if sessions or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert any(e["logger"] == "gunicorn.error" and e["message"].startswith("Booting worker")
               for e in entries)
    health = next(e for e in access if e.get("request_id") == "req-42")
    assert health["method"] == "GET" and health["path"] == "/healthz" and health["status"] == "200"
    assert health["duration_ms"] >= 0 and health["remote_addr"] == "127.0.0.1"
    assert token not in embedded.log_path.read_text() and "token=[redacted]" in health["query"]
    assert sessions, "a websocket session is logged when it ends"


def test_a_request_refused_before_parsing_is_logged_too(embedded):
    too_long = requests.get(embedded.url + "/" + "x" * 20000, timeout=5)
    assert too_long.status_code == 414
    deadline = time.monotonic() + 10
    while not any(e.get("status") == "414" for e in log_entries(embedded)):
        assert time.monotonic() < deadline, "no access line for the 414"
        time.sleep(0.2)
    assert "Traceback" not in embedded.log_path.read_text()


def test_events_and_later_namespace_connects_work_from_the_slimmed_environ(embedded_query_token):
    """Once a websocket detaches, python-socketio's kept environ holds only what a request
    context needs (realtime.transport.wsdirect.KEPT_ENVIRON); a later connect still reads the query token
    and the client address from it, and a connection's session carries over between events."""
    import websocket
    embedded = embedded_query_token
    token = login(embedded.url, "Quinn")
    ws = websocket.create_connection(
        embedded.url.replace("http", "ws") + f"/socket.io/?EIO=4&transport=websocket&token={token}",
        timeout=10, header=["User-Agent: slim-test", "Cookie: big=" + "c" * 2000])
    try:
        assert ws.recv().startswith("0{")
        time.sleep(0.3)  # detached by now: the kept environ is the slim one

        def frames_until(prefix):
            while not (frame := ws.recv()).startswith(prefix):
                if frame == "2":
                    ws.send("3")
            return frame
        ws.send("40/chat,")  # no auth payload: the token comes from the kept query string
        assert frames_until("40/chat,").startswith('40/chat,{"sid"')
        ws.send('42/chat,1["join",{"room":"lobby"}]')
        assert json.loads(frames_until("43/chat,1")[len("43/chat,1"):])[0]["ok"] is True
        ws.send('42/chat,2["send",{"room":"lobby","body":"from a slim environ"}]')
        ack = json.loads(frames_until("43/chat,2")[len("43/chat,2"):])[0]
        assert ack["ok"] and ack["message"]["from"]["id"] == "quinn"
        ws.send("40/admin,")  # a second namespace on the same connection, long after the handshake
        refused = json.loads(frames_until("44/admin,")[len("44/admin,"):])
        assert refused["data"]["code"] == "forbidden", refused  # authenticated from the query token
    finally:
        ws.close()


def test_foreign_origins_get_no_credentials(embedded):
    """Issue 19: `*` (embedded) reflected any Origin with Access-Control-Allow-Credentials: true."""
    handshake = embedded.url + "/socket.io/?EIO=4&transport=polling"
    evil = requests.get(handshake, headers={"Origin": "https://evil.example"}, timeout=5)
    assert evil.status_code == 200 and "Access-Control-Allow-Credentials" not in evil.headers
    rest = requests.options(embedded.url + "/api/rooms/lobby/messages", timeout=5, headers={
        "Origin": "https://evil.example", "Access-Control-Request-Method": "POST"})
    assert rest.headers.get("Access-Control-Allow-Origin") == "*"
    assert "Access-Control-Allow-Credentials" not in rest.headers
    own = embedded.url.replace("127.0.0.1", "localhost")
    demo = requests.get(handshake, headers={"Origin": own, "Host": own.split("//")[1]}, timeout=5)
    assert demo.status_code == 200 and demo.headers["Access-Control-Allow-Origin"] == own
