"""docker-compose.yml and nginx/: the documented topology, checked without a Docker engine."""
from __future__ import annotations

import os
import re
import subprocess

import pytest

from realtime.devcluster import INTERNAL_NETWORKS, ROOT

pytestmark = pytest.mark.integration

# Directives allowed to differ between nginx.conf (docker) and local.conf.template: identity,
# paths, listen address, upstream addresses and the internal networks (a placeholder locally, so
# tests can leave loopback out; compared with devcluster.INTERNAL_NETWORKS below). Everything
# else must match line for line.
NGINX_PER_ENVIRONMENT = {"user", "worker_processes", "pid", "error_log", "access_log", "listen", "allow",
                         "server", "client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path",
                         "uwsgi_temp_path", "scgi_temp_path",
                         # Edge limits: make cluster renders nginx.conf's values (localcluster.EdgeLimits,
                         # held to nginx.conf by tests/integration/test_nginx.py); test clusters none.
                         "limit_req_zone", "limit_conn", "limit_req", "limit_conn_status", "limit_req_status"}


def service_blocks(config: str) -> dict[str, list[str]]:
    """The stripped lines of each service in `docker-compose config` output (normalized YAML)."""
    blocks: dict[str, list[str]] = {}
    section, current = None, None
    for line in config.splitlines():
        if not line.startswith(" "):
            section, current = line.rstrip(":"), None
        elif section == "services" and re.match(r"^  \S.*:$", line):
            current = line.strip().rstrip(":")
            blocks[current] = []
        elif current:
            blocks[current].append(line.strip())
    return blocks


def follows(lines: list[str], first: str, second: str) -> bool:
    """True if `second` is the line right after `first`."""
    return any(a == first and b == second for a, b in zip(lines, lines[1:]))


def resolve(compose: str, *files: str, **environ: str) -> dict[str, list[str]]:
    """The compose files as `docker-compose config` resolves them, split per service."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("REALTIME_") and k != "WEBHOOK_REALTIME_API_KEY"}
    env.update({"REALTIME_JWT_SECRET_KEY": "compose-config-check-" + "x" * 32,
                "REALTIME_WEBHOOK_SECRET": "compose-webhook-check-" + "y" * 32, **environ})
    argv = [compose] + [arg for name in files for arg in ("-f", name)] + ["config"]
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return service_blocks(done.stdout)


@pytest.fixture(scope="module")
def compose(system_executable) -> str:
    """The docker-compose executable."""
    return system_executable("docker-compose")


@pytest.fixture(scope="module")
def services(compose) -> dict[str, list[str]]:
    """docker-compose.yml alone: the production-shaped deployment."""
    return resolve(compose, "docker-compose.yml")


@pytest.fixture(scope="module")
def demo_services(compose) -> dict[str, list[str]]:
    """docker-compose.yml with the browser demo's override file."""
    return resolve(compose, "docker-compose.yml", "docker-compose.demo.yml")


def published(lines: list[str]) -> list[str]:
    """The service's published ports as `host_ip:published:target` (short or long syntax)."""
    ports, long_form = [], {}
    for line in lines[lines.index("ports:") + 1:] if "ports:" in lines else []:
        if not line.startswith("- ") and ":" not in line:
            break
        if line.startswith("- ") and ": " not in line:  # short syntax: - 127.0.0.1:8080:8080/tcp
            ports.append(line[2:].split("/")[0])
            continue
        key, _, value = line.removeprefix("- ").partition(": ")
        if key not in ("host_ip", "published", "target", "protocol", "mode"):
            break
        if line.startswith("- ") and long_form:
            ports.append(f"{long_form.get('host_ip', '')}:{long_form['published']}:{long_form['target']}")
            long_form = {}
        long_form[key] = value.strip("'\"")
    if long_form:
        ports.append(f"{long_form.get('host_ip', '')}:{long_form['published']}:{long_form['target']}")
    return ports


def profiled(lines: list[str]) -> bool:
    """True if the service only runs under a profile (docker-compose 1.x lists it anyway)."""
    return "profiles:" in lines


def test_services(services):
    assert {name for name, lines in services.items() if not profiled(lines)} == {
        "redis", "realtime", "nginx", "webhook"}


def test_the_cluster_profile_runs_a_redis_cluster_the_replicas_can_use(compose):
    url = "redis+cluster://redis-node-1:6379,redis-node-2:6379,redis-node-3:6379/"
    clustered = resolve(compose, "docker-compose.yml", COMPOSE_PROFILES="cluster", REALTIME_REDIS_URL=url,
                        REALTIME_REDIS_WAIT_REPLICAS="1")
    nodes = [f"redis-node-{n}" for n in range(1, 7)]
    assert {name for name, lines in clustered.items() if profiled(lines)} == {*nodes, "redis-cluster-init"}
    for node in nodes:
        command = " ".join(clustered[node])
        assert "--cluster-enabled" in command and "--appendonly" in command
        assert f"- {node}:/data:rw" in clustered[node]
    init = " ".join(clustered["redis-cluster-init"])
    assert "--cluster-replicas 1" in init and "--cluster-yes" in init
    assert f"REALTIME_REDIS_URL: {url}" in clustered["realtime"]
    assert "REALTIME_REDIS_WAIT_REPLICAS: '1'" in clustered["realtime"]
    assert f"WEBHOOK_REDIS_URL: {url}" in clustered["webhook"]
    from realtime.store.rediscluster import cluster_address
    assert cluster_address(url)[0] == [(f"redis-node-{n}", 6379) for n in (1, 2, 3)]


def test_one_redis_stays_the_default(services):
    assert "REALTIME_REDIS_URL: redis://redis:6379/0" in services["realtime"]
    assert "WEBHOOK_REDIS_URL: redis://redis:6379/0" in services["webhook"]


def test_redis_keeps_an_append_only_file_and_is_health_checked(services):
    redis = services["redis"]
    assert "image: redis:7-alpine" in redis
    assert follows(redis, "- --appendonly", '- "yes"')
    assert "healthcheck:" in redis


def test_three_replicas_of_the_app_wait_for_redis(services):
    realtime = services["realtime"]
    assert follows(realtime, "deploy:", "replicas: 3")
    assert "REALTIME_REDIS_URL: redis://redis:6379/0" in realtime
    assert follows(realtime, "redis:", "condition: service_healthy")
    assert any(line.startswith("REALTIME_JWT_SECRET_KEY: ") for line in realtime)


def test_nginx_mounts_its_conf_and_publishes_8080(services):
    nginx = services["nginx"]
    assert "image: nginx:alpine" in nginx
    assert any(line.endswith("/nginx/nginx.conf:/etc/nginx/nginx.conf:ro") for line in nginx)
    assert published(nginx) == ["127.0.0.1:8080:8080"]


def test_every_published_port_is_on_loopback_by_default(services):
    for name, lines in services.items():
        assert all(port.startswith("127.0.0.1:") for port in published(lines)), name


def test_the_operator_opens_nginx_with_realtime_http_bind(compose):
    opened = resolve(compose, "docker-compose.yml", REALTIME_HTTP_BIND="0.0.0.0")
    assert published(opened["nginx"]) == ["0.0.0.0:8080:8080"]


def test_default_deployment_has_no_demo_login_and_no_demo_admins(services):
    realtime = services["realtime"]
    assert not [line for line in realtime if line.startswith("REALTIME_DEMO")], realtime


def test_demo_override_turns_demo_login_and_its_admin_on(demo_services):
    realtime = demo_services["realtime"]
    assert "REALTIME_DEMO_LOGIN: '1'" in realtime or 'REALTIME_DEMO_LOGIN: "1"' in realtime
    assert "REALTIME_DEMO_ADMINS: admin" in realtime
    assert "REALTIME_DEMO_ADMINS_UNSAFE: acknowledged" in realtime
    assert published(demo_services["nginx"]) == ["127.0.0.1:8080:8080"]


def test_webhook_runs_from_the_app_image(services):
    webhook = services["webhook"]
    assert "image: realtime:local" in webhook and "image: realtime:local" in services["realtime"]
    assert "- webhook.app:create_app()" in webhook


def directives(path) -> list[str]:
    """The directive lines of an nginx file, comments and blank lines dropped."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text().splitlines())
    return [line for line in lines if line]


def shared(lines: list[str]) -> list[str]:
    """Lines that must be the same in both environments."""
    def differs(line: str) -> bool:
        return "{{" in line or (line.split()[0] in NGINX_PER_ENVIRONMENT and not line.endswith("{"))
    return [line for line in lines if not differs(line)]


def test_nginx_docker_and_local_configs_stay_in_sync():
    docker = directives(ROOT / "nginx" / "nginx.conf")
    local = directives(ROOT / "nginx" / "local.conf.template")
    assert shared(docker) == shared(local)
    # Sticky by the realtime_sticky cookie when present, else by client address.
    assert "hash $sticky_key consistent;" in docker
    assert "map $cookie_realtime_sticky $sticky_key {" in docker
    assert "server realtime:8000;" in docker  # the compose service and the port it exposes
    for forbidden in ("ip_hash", "keepalive "):
        assert not any(line.startswith(forbidden) for line in docker + local)


def test_operator_endpoints_are_for_internal_networks_in_both_configs():
    docker = directives(ROOT / "nginx" / "nginx.conf")
    local = directives(ROOT / "nginx" / "local.conf.template")
    location = "location ~ ^/(metrics|readyz|api/stats)(/|$) {"
    start = docker.index(location)
    assert docker[start + 1:start + 1 + len(INTERNAL_NETWORKS) + 1] == (
        [f"allow {network};" for network in INTERNAL_NETWORKS] + ["deny all;"])
    start = local.index(location)
    assert local[start + 1:start + 3] == ["{{INTERNAL_ALLOW}}", "deny all;"]


def test_socketio_access_log_drops_the_query_string_in_both_configs():
    for name in ("nginx.conf", "local.conf.template"):
        lines = directives(ROOT / "nginx" / name)
        socketio = lines.index("location /socket.io/ {")
        assert lines[socketio + 1].startswith("access_log ") and lines[socketio + 1].endswith(" realtime_no_query;")
        start = next(n for n, line in enumerate(lines) if line.startswith("log_format realtime_no_query "))
        end = next(n for n in range(start, len(lines)) if lines[n].endswith(";"))
        log_format = " ".join(lines[start:end + 1])
        assert "$uri" in log_format
        assert not any(v in log_format for v in ("$request ", "$request_uri", "$args", "$query_string"))
