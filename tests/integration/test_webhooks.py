"""Outbound webhooks end to end: real replicas, real Redis, the real webhook testing service."""
from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from chatclient import ChatClient, wait_until
from realtime.devcluster import (RedisServer, Replica, WebhookReceiver, clean_environ, free_ports,
                                   stop_all)
from realtime.services.apikeys import hash_key

pytestmark = pytest.mark.integration
API_KEY = "rtk_" + secrets.token_urlsafe(16)
UI_TOKEN = secrets.token_urlsafe(32)
UI = {"Authorization": f"Bearer {UI_TOKEN}"}  # the webhook service's UI token


class Hooked:
    """Replicas delivering to the webhook service, and handles on all of it."""

    def __init__(self, redis, replicas, tester):
        self.redis, self.replicas, self.tester = redis, replicas, tester

    def token(self, name: str) -> str:
        answer = requests.post(self.replicas[0].url + "/api/auth/token", json={"username": name}, timeout=5)
        return answer.json()["access_token"]

    def received(self) -> list[dict]:
        return requests.get(self.tester.url + "/api/events", headers=UI, timeout=5).json()["events"]

    def mode(self, mode: str, **extra) -> None:
        answer = requests.post(self.tester.url + "/api/mode", json={"mode": mode, **extra}, headers=UI,
                               timeout=5)
        assert answer.status_code == 200, answer.text

    def status(self, replica: int = 0) -> dict:
        return requests.get(self.replicas[replica].url + "/api/admin/webhooks",
                            headers={"X-API-Key": API_KEY}, timeout=5).json()

    def cli(self, *args: str) -> str:
        done = subprocess.run([str(Path(sys.executable).with_name("realtime")), "webhooks", *args,
                               "--redis-url", self.redis.url], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout


def start_hooked(redis_url: str, workdir: Path, start_processes) -> tuple[WebhookReceiver, list[Replica]]:
    """The webhook testing service and two replicas delivering to it, on the Redis at `redis_url`."""
    tester_port, *ports = free_ports(3)
    secret = secrets.token_urlsafe(32)
    tester = WebhookReceiver(tester_port, workdir, env={**clean_environ(), "WEBHOOK_SECRET": secret,
                                                        "WEBHOOK_REDIS_URL": redis_url,
                                                        "WEBHOOK_UI_TOKEN": UI_TOKEN})
    env = {**clean_environ(), "REALTIME_ENV_FILE": str(workdir / "no.env"), "REALTIME_REDIS_URL": redis_url,
           "REALTIME_JWT_SECRET_KEY": secrets.token_urlsafe(32), "REALTIME_DEMO_LOGIN": "1",
           "REALTIME_API_KEYS": f"tests:{hash_key(API_KEY)}", "REALTIME_RATE_LIMITS": "",
           "REALTIME_WEBHOOK_URLS": tester.url + "/webhook", "REALTIME_WEBHOOK_SECRET": secret,
           "REALTIME_WEBHOOK_READ_TIMEOUT": "1", "REALTIME_WEBHOOK_MAX_ATTEMPTS": "3",
           "REALTIME_WEBHOOK_BACKOFF_INITIAL": "0.2", "REALTIME_WEBHOOK_BACKOFF_MAX": "0.5",
           "REALTIME_WEBHOOK_BREAKER_FAILURES": "3", "REALTIME_WEBHOOK_BREAKER_RESET": "2",
           "REALTIME_WEBHOOK_RECLAIM_IDLE": "4", "REALTIME_UPLOAD_DIR": str(workdir / "uploads")}
    replicas = [Replica(port, env, workdir, instance_id=f"hooks-{n}") for n, port in enumerate(ports)]
    try:
        start_processes(tester, *replicas)
    except BaseException:
        stop_all([*replicas, tester])
        raise
    return tester, replicas


@pytest.fixture(scope="module")
def hooked(tmp_path_factory, system_executable, start_processes):
    system_executable("redis-server")
    workdir = tmp_path_factory.mktemp("hooked")
    redis = RedisServer(free_ports(1)[0], workdir / "redis", log_dir=workdir)
    start_processes(redis)
    try:
        tester, replicas = start_hooked(redis.url, workdir, start_processes)
        try:
            yield Hooked(redis, replicas, tester)
        finally:
            stop_all([*replicas, tester])
    finally:
        redis.stop()


@pytest.fixture(autouse=True)
def _clean(hooked):
    hooked.mode("ok")
    requests.delete(hooked.tester.url + "/api/events", headers=UI, timeout=5)


def test_the_ui_and_api_need_the_token_but_signed_deliveries_do_not(hooked):
    """Issue 19: the testing service answered its UI and API to anyone who could reach it."""
    base = hooked.tester.url
    for method, path in [("GET", "/api/events"), ("GET", "/api/info"), ("POST", "/api/mode"),
                         ("DELETE", "/api/events"), ("POST", "/api/send")]:
        refused = requests.request(method, base + path, json={"mode": "fail"}, timeout=5)
        assert refused.status_code == 401, path
        assert refused.json()["error"]["code"] == "unauthorized"
        wrong = requests.request(method, base + path, json={"mode": "fail"}, timeout=5,
                                 headers={"Authorization": "Bearer " + "x" * 43})
        assert wrong.status_code == 401, path
    assert requests.get(base + "/api/info", headers=UI, timeout=5).status_code == 200
    assert requests.get(base + "/api/mode", headers=UI, timeout=5).json()["mode"] == "ok"
    # The replicas post their signed deliveries without the UI token, and they are accepted.
    requests.post(hooked.replicas[0].url + "/api/rooms/tokenless/messages", json={"body": "signed"},
                  headers={"X-API-Key": API_KEY}, timeout=5).raise_for_status()
    [created] = wait_until(lambda: [e for e in hooked.received() if e["event"] == "message.created"],
                           timeout=15)
    assert created["accepted"] and created["verification"] == "valid"
    assert "Authorization" not in created["headers"]


def test_a_foreign_host_header_is_refused(hooked):
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 still says Host: evil.example."""
    port = hooked.tester.url.rsplit(":", 1)[1]
    for path in ("/", "/api/info", "/healthz"):
        answer = requests.get(hooked.tester.url + path, headers={**UI, "Host": f"evil.example:{port}"},
                              timeout=5)
        assert answer.status_code == 400 and answer.json()["error"]["code"] == "untrusted_host"
    assert requests.get(hooked.tester.url + "/", headers={"Host": f"localhost:{port}"},
                        timeout=5).status_code == 200


def test_events_arrive_signed_with_the_message(hooked):
    client = ChatClient(hooked.replicas[1].url, hooked.token("ana")).connect()
    try:
        client.call("join", {"room": "hooks"})
        sent = client.call("send", {"room": "hooks", "body": "hello hooks"})["message"]
    finally:
        client.close()
    # Only this test's: a delivery an earlier test left retrying may arrive meanwhile.
    def mine() -> list[dict]:
        return [e for e in hooked.received() if e["event"] != "message.created"
                or ((e.get("json") or {}).get("data") or {}).get("room") == "hooks"]
    events = wait_until(lambda: (e := mine()) and {x["event"] for x in e} >= {
        "client.connected", "room.joined", "message.created", "client.disconnected"} and e, timeout=15)
    assert all(e["accepted"] and e["verification"] == "valid" for e in events)
    created = next(e for e in events if e["event"] == "message.created")
    assert created["json"]["data"] == sent
    assert created["headers"]["X-Realtime-Delivery"] == created["json"]["id"]


def test_failures_are_retried_then_dead_lettered_and_replayed(hooked):
    hooked.mode("fail")
    requests.post(hooked.replicas[0].url + "/api/rooms/ops/messages", json={"body": "will fail"},
                  headers={"X-API-Key": API_KEY}, timeout=5).raise_for_status()
    # Only this room's: a delivery an earlier test left retrying may arrive meanwhile.
    def attempts() -> list[dict]:
        return [e for e in hooked.received() if e["event"] == "message.created"
                and ((e.get("json") or {}).get("data") or {}).get("room") == "ops"]
    wait_until(lambda: json.loads(hooked.cli("backlog"))["dead"] >= 1 and len(attempts()) >= 2, timeout=20)
    assert len({e["delivery"] for e in attempts()}) == 1  # retries, one id
    dead = [json.loads(line) for line in hooked.cli("dead").splitlines()]
    assert dead[0]["event"] == "message.created" and dead[0]["error"]  # HTTP 500, or the breaker
    hooked.mode("ok")
    time.sleep(2.5)  # the breaker that the failures opened half-opens after its reset time
    assert json.loads(hooked.cli("replay"))["replayed"] >= 1
    try:
        wait_until(lambda: any(e["event"] == "message.created" and e["response"]["status"] == 200
                               for e in hooked.received()), timeout=20)
    except AssertionError:
        print([(e["event"], e["response"], e["delivery"]) for e in hooked.received()])
        print(hooked.cli("backlog"), hooked.status(0), hooked.status(1))
        raise
    assert json.loads(hooked.cli("backlog"))["dead"] == 0


def test_breaker_opens_on_repeated_failures_and_closes_after(hooked):
    hooked.mode("fail")
    for n in range(4):
        requests.post(hooked.replicas[0].url + "/api/rooms/breaker/messages", json={"body": f"b{n}"},
                      headers={"X-API-Key": API_KEY}, timeout=5)
    opened = wait_until(lambda: any(t[2] == "open" for s in (hooked.status(0), hooked.status(1))
                                    for t in s["transitions"]), timeout=20)
    assert opened
    hooked.mode("ok")
    requests.post(hooked.replicas[0].url + "/api/rooms/breaker/messages", json={"body": "after"},
                  headers={"X-API-Key": API_KEY}, timeout=5)
    # Half-open after the reset time, then closed by a success.
    wait_until(lambda: any(t[2] == "closed" for s in (hooked.status(0), hooked.status(1))
                           for t in s["transitions"]), timeout=30)
    hooked.cli("replay")  # what died while the breaker was open is delivered now
    wait_until(lambda: json.loads(hooked.cli("backlog")) == {"waiting": 0, "in_flight": 0, "dead": 0},
               timeout=30)


def test_hanging_receiver_hits_the_read_timeout(hooked):
    hooked.mode("hang", hang_seconds=3)
    started = time.monotonic()
    requests.post(hooked.replicas[1].url + "/api/rooms/slow/messages", json={"body": "slow"},
                  headers={"X-API-Key": API_KEY}, timeout=5)
    wait_until(lambda: len([e for e in hooked.received() if e["event"] == "message.created"]) >= 2,
               timeout=15)
    hooked.mode("ok")
    # The first attempt was abandoned after the 1 s read timeout, not after the 3 s hang.
    assert time.monotonic() - started < 10
    wait_until(lambda: json.loads(hooked.cli("backlog"))["in_flight"] == 0, timeout=30)


def test_delivery_claimed_by_a_killed_replica_is_delivered_by_another(hooked):
    hooked.mode("hang", hang_seconds=30)
    victim = hooked.replicas[1]
    requests.post(hooked.replicas[0].url + "/api/rooms/orphans/messages", json={"body": "orphan"},
                  headers={"X-API-Key": API_KEY}, timeout=5)
    wait_until(lambda: json.loads(hooked.cli("backlog"))["in_flight"] >= 1, timeout=10)
    victim.kill()
    hooked.mode("ok")
    try:
        delivered = wait_until(lambda: [e for e in hooked.received()
                                        if e["event"] == "message.created" and e["response"]["status"] == 200
                                        and e["json"]["data"]["room"] == "orphans"],
                               timeout=30)
        assert len({e["delivery"] for e in delivered}) == 1
    finally:
        victim.start()
