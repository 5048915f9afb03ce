"""Fault-test fixtures: Redis (AOF, as deployed), 3 replicas delivering webhooks, nginx in front.

`faulty` (module scope) has `.redis`, `.replicas`, `.nginx`, `.tester` (the webhook testing
service), `.url` (nginx), `.token(name)`, `.status(replica)` (GET /api/admin/webhooks), `.mode()`,
`.received()` (every request the webhook service kept) and `.cli(...)` (`realtime webhooks ...`).
Every process is stopped through its own PID when the module ends; `heal()` starts again whatever
a previous test stopped or killed.
"""
from __future__ import annotations

import json
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import requests

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "integration"))

from realtime.devcluster import (Nginx, RedisServer, Replica, WebhookReceiver,  # noqa: E402
                                   clean_environ, free_port, free_ports, start_all, stop_all)
from realtime.services.apikeys import hash_key  # noqa: E402

GRACEFUL_TIMEOUT = 8
API_KEY = "rtk_" + secrets.token_urlsafe(16)
WEBHOOKS = {"REALTIME_WEBHOOK_CONNECT_TIMEOUT": "1", "REALTIME_WEBHOOK_READ_TIMEOUT": "1",
            "REALTIME_WEBHOOK_MAX_ATTEMPTS": "3", "REALTIME_WEBHOOK_BACKOFF_INITIAL": "0.2",
            "REALTIME_WEBHOOK_BACKOFF_MAX": "0.5", "REALTIME_WEBHOOK_BREAKER_FAILURES": "3",
            "REALTIME_WEBHOOK_BREAKER_RESET": "2", "REALTIME_WEBHOOK_RECLAIM_IDLE": "4",
            "REALTIME_WEBHOOK_EVENTS": "message.created"}
UI_TOKEN = secrets.token_urlsafe(32)
UI = {"Authorization": f"Bearer {UI_TOKEN}"}  # the webhook service's UI token
LIMITS = "; ".join(f"{event}=100000/minute" for event in
                   ("connect", "join", "leave", "send", "typing", "read", "history", "abuse"))


class Faulty:
    """Handles on the fault cluster's processes and on the webhook service."""

    def __init__(self, redis, replicas, nginx, tester):
        self.redis, self.replicas, self.nginx, self.tester = redis, replicas, nginx, tester
        self.graceful_timeout = GRACEFUL_TIMEOUT

    @property
    def url(self) -> str:
        return self.nginx.url

    def live(self) -> list[Replica]:
        return [r for r in self.replicas if r.running()]

    def token(self, name: str) -> str:
        answer = requests.post(self.live()[0].url + "/api/auth/token", json={"username": name}, timeout=10)
        answer.raise_for_status()
        return answer.json()["access_token"]

    def status(self, replica: Replica) -> dict:
        return requests.get(replica.url + "/api/admin/webhooks", headers={"X-API-Key": API_KEY},
                            timeout=5).json()

    def mode(self, mode: str, **extra) -> None:
        answer = requests.post(self.tester.url + "/api/mode", json={"mode": mode, **extra}, headers=UI,
                               timeout=5)
        assert answer.status_code == 200, answer.text

    def received(self) -> list[dict]:
        """Every request the webhook service kept, paging through /api/events."""
        events, after = [], 0
        while True:
            page = requests.get(self.tester.url + "/api/events", params={"after": after, "limit": 1000},
                                headers=UI, timeout=10).json()["events"]
            if not page:
                return events
            events += page
            after = page[-1]["id"]

    def cli(self, *args: str) -> str:
        done = subprocess.run([str(Path(sys.executable).with_name("realtime")), "webhooks", *args,
                               "--redis-url", self.redis.url], capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        return done.stdout

    def backlog(self) -> dict:
        return json.loads(self.cli("backlog"))

    def dead(self) -> list[dict]:
        return [json.loads(line) for line in self.cli("dead", "--limit", "10000").splitlines() if line]

    def heal(self) -> None:
        """Start again whatever a previous test stopped or killed, Redis first."""
        for group in ([self.redis], [self.tester], self.replicas, [self.nginx]):
            start_all([p for p in group if not p.running()])


def persistent_redis(port: int, workdir: Path) -> RedisServer:
    """A redis-server with AOF (everysec), as docker-compose deploys it: a restart keeps the data."""
    redis = RedisServer(port, workdir / "redis", log_dir=workdir / "logs")
    at = redis.argv.index("--appendonly")
    redis.argv[at + 1:at + 2] = ["yes", "--appendfsync", "everysec"]
    return redis


@pytest.fixture(scope="module")
def faulty(tmp_path_factory, system_executable, start_processes):
    """Redis + webhook service + 3 replicas + nginx, on free loopback ports."""
    system_executable("redis-server")
    system_executable("nginx")
    workdir = tmp_path_factory.mktemp("faults")
    redis_port, tester_port, *ports = free_ports(5)
    secret = secrets.token_urlsafe(32)
    redis = persistent_redis(redis_port, workdir)
    tester = WebhookReceiver(tester_port, workdir / "logs",
                             env={**clean_environ(), "WEBHOOK_SECRET": secret, "WEBHOOK_MAX_EVENTS": "100000",
                                  "WEBHOOK_UI_TOKEN": UI_TOKEN})
    env = {**clean_environ(), "REALTIME_ENV_FILE": str(workdir / "no.env"),
           "REALTIME_REDIS_URL": redis.url, "REALTIME_JWT_SECRET_KEY": secrets.token_urlsafe(32),
           "REALTIME_DEMO_LOGIN": "1", "REALTIME_API_KEYS": f"faults:{hash_key(API_KEY)}",
           "REALTIME_INSTANCE_TTL": "4", "REALTIME_HEARTBEAT_INTERVAL": "1",
           "REALTIME_GRACEFUL_TIMEOUT": str(GRACEFUL_TIMEOUT), "REALTIME_RATE_LIMITS": LIMITS,
           "REALTIME_HTTP_RATE_LIMIT": "100000/minute", "REALTIME_LOGIN_RATE_LIMIT": "100000/minute",
           "REALTIME_WEBHOOK_URLS": tester.url + "/webhook", "REALTIME_WEBHOOK_SECRET": secret,
           "REALTIME_UPLOAD_DIR": str(workdir / "uploads"), **WEBHOOKS}
    replicas = [Replica(port, env, workdir / "logs", instance_id=f"fault-{n}")
                for n, port in enumerate(ports)]
    nginx = Nginx(workdir / "nginx", free_port(), ports, log_dir=workdir / "logs")
    try:
        start_processes(redis)
        start_processes(tester, *replicas)
        start_processes(nginx)
        yield Faulty(redis, replicas, nginx, tester)
    finally:
        stop_all([nginx])
        stop_all([*replicas, tester])  # before Redis, so the replicas can leave the registry
        redis.stop()


@pytest.fixture
def cluster(faulty):
    """The fault cluster, whole again (a previous test may have killed or stopped a part)."""
    try:
        faulty.heal()
    except Exception as error:  # StartupError: the log tail says why
        pytest.fail(f"could not restart the fault cluster: {error}", pytrace=False)
    faulty.mode("ok")
    return faulty
