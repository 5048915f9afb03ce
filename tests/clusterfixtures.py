"""Cluster fixtures shared by tests/integration and tests/browser (imported by their conftests).

`cluster` (module scope): Redis + 3 replicas on free ports sharing a random JWT secret, with demo
login on and a short instance TTL so a killed replica drops out quickly. It has `.redis` (`.url`,
`.stop()`, `.start()`), `.replicas[i]` (`.url`, `.port`, `.instance_id`, `.pid`, `.kill()`,
`.terminate()`, `.start()`), `.token(name)`, `.secret` and `.instance_ttl`. `nginx_cluster`: the
same processes with nginx in front, plus `.url` (nginx) and `.nginx`. Every process is stopped by
its own PID when the module ends; one an earlier test stopped or killed is started again before
the next test (`_healed_cluster`, autouse wherever it is imported).

Every replica these fixtures (and the suites that build their own, through `fast_paths_env`)
start runs the transport layer as REALTIME_TEST_FAST_PATHS says: auto (the default: on for the
versions in realtime.transport.VERIFIED), on or off. `make test` runs the suite once as auto and
the delivery, recovery, drain and polling files again with off (the stock path).
"""
from __future__ import annotations

import dataclasses
import os
import secrets

import pytest
import requests

from realtime.devcluster import (Nginx, RedisServer, Replica, StartupError, clean_environ,
                                   free_port, free_ports, start_all, stop_all)

INSTANCE_TTL = 4
FAST_PATHS = os.environ.get("REALTIME_TEST_FAST_PATHS", "auto")  # read before clean_environ drops it
HEARTBEAT_INTERVAL = 1


@dataclasses.dataclass
class Cluster:
    """Handles on one test cluster's processes."""

    redis: RedisServer
    replicas: list[Replica]
    secret: str
    instance_ttl: int = INSTANCE_TTL
    nginx: Nginx | None = None

    @property
    def url(self) -> str:
        """The nginx URL clients use (only `nginx_cluster` has one)."""
        if self.nginx is None:
            raise AttributeError("this cluster has no nginx; use the nginx_cluster fixture")
        return self.nginx.url

    def token(self, username: str) -> str:
        """A demo access token for `username` (POST /api/auth/token on the first live replica)."""
        replica = next((r for r in self.replicas if r.running()), self.replicas[0])
        response = requests.post(replica.url + "/api/auth/token", json={"username": username},
                                 timeout=10)
        response.raise_for_status()
        return response.json()["access_token"]

    def heal(self) -> None:
        """Start again whatever a previous test stopped or killed, Redis first."""
        for group in ([self.redis], self.replicas, [self.nginx] if self.nginx else []):
            start_all([p for p in group if not p.running()])


def fast_paths_env() -> dict[str, str]:
    """The replicas' REALTIME_FAST_PATHS for this test run."""
    return {"REALTIME_FAST_PATHS": FAST_PATHS}


def expected_fast_paths_state() -> str:
    """What realtime_fast_paths{state} the replicas should report in this run."""
    from realtime import transport
    if transport.mode(FAST_PATHS) == "off":
        return "off"
    return "unverified" if transport.unverified(transport.versions()) else "on"


def replica_env(redis_url: str, secret: str, workdir) -> dict[str, str]:
    """Environment shared by the replicas, isolated from the developer's REALTIME_* and .env."""
    return {**clean_environ(), **fast_paths_env(), "REALTIME_REDIS_URL": redis_url,
            "REALTIME_JWT_SECRET_KEY": secret, "REALTIME_DEMO_LOGIN": "1",
            # The dashboard tests sign in as the demo admin; the replicas listen on loopback only.
            "REALTIME_DEMO_ADMINS": "admin", "REALTIME_DEMO_ADMINS_UNSAFE": "acknowledged",
            "REALTIME_INSTANCE_TTL": str(INSTANCE_TTL),
            "REALTIME_HEARTBEAT_INTERVAL": str(HEARTBEAT_INTERVAL),
            "REALTIME_GRACEFUL_TIMEOUT": "8",
            # Tests open connections far faster than people do; test_security sets real limits.
            "REALTIME_RATE_LIMITS": "connect=100000/minute",
            "REALTIME_HTTP_RATE_LIMIT": "100000/minute", "REALTIME_LOGIN_RATE_LIMIT": "100000/minute",
            "REALTIME_ENV_FILE": str(workdir / "no.env"),
            # One upload directory shared by the replicas, as a volume would be in production.
            "REALTIME_UPLOAD_DIR": str(workdir / "uploads")}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory, system_executable, start_processes):
    """Redis + 3 replicas on free ports, shared by the tests of one module."""
    system_executable("redis-server")
    workdir = tmp_path_factory.mktemp("cluster")
    redis_port, *ports = free_ports(4)
    secret = secrets.token_urlsafe(32)
    redis = RedisServer(redis_port, workdir / "redis", log_dir=workdir / "logs")
    env = replica_env(redis.url, secret, workdir)
    replicas = [Replica(port, env, workdir / "logs", instance_id=f"replica-{n}")
                for n, port in enumerate(ports)]
    try:
        start_processes(redis)
        start_processes(*replicas)
        yield Cluster(redis, replicas, secret)
    finally:
        stop_all(replicas)  # before Redis, so the replicas can leave the registry
        redis.stop()


@pytest.fixture(scope="module")
def nginx_cluster(cluster, tmp_path_factory, system_executable, start_processes):
    """`cluster` with nginx in front on a free port: everything `cluster` has, plus `.url`."""
    system_executable("nginx")
    prefix = tmp_path_factory.mktemp("nginx")
    nginx = Nginx(prefix, free_port(), [r.port for r in cluster.replicas])
    try:
        start_processes(nginx)
        yield dataclasses.replace(cluster, nginx=nginx)
    finally:
        nginx.stop()


@pytest.fixture(autouse=True)
def _healed_cluster(request):
    """Give every test a whole cluster, whatever the test before it killed or stopped."""
    for name in ("nginx_cluster", "cluster"):
        if name in request.fixturenames:
            try:
                request.getfixturevalue(name).heal()
            except StartupError as error:
                pytest.fail(f"could not restart the cluster: {error}", pytrace=False)
            return


@pytest.fixture
def connect(cluster):
    """Open ChatClients on a replica by index as a named user; all are closed after the test."""
    from chatclient import ChatClient  # tests/integration is on sys.path where this is used
    opened = []

    def open_client(replica: int, name: str, **kwargs):
        client = ChatClient(cluster.replicas[replica].url, cluster.token(name), **kwargs).connect()
        opened.append(client)
        return client
    yield open_client
    for client in opened:
        client.close()
