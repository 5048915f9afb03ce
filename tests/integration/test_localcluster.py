"""`realtime cluster start|status|stop` end to end, on free ports and a temporary state dir."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
import requests

from realtime.devcluster import (ClusterConfig, clean_environ, free_ports, group_members,
                                   load_processes, stop_processes, venv_script)

pytestmark = [pytest.mark.integration, pytest.mark.nginx]


def run_cli(env: dict[str, str], action: str) -> subprocess.CompletedProcess:
    """`realtime cluster ACTION` as a developer would type it."""
    return subprocess.run([venv_script("realtime"), "cluster", action], env=env,
                          capture_output=True, text=True, timeout=180)


def alive(pid: int) -> bool:
    """True if `pid` exists and is not a zombie (read straight from /proc)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.fixture
def cluster_env(tmp_path, system_executable):
    """CLUSTER_* on free ports and a temporary state dir; stops whatever is left afterwards."""
    for executable in ("redis-server", "nginx"):
        system_executable(executable)
    http, webhook, redis, *replicas = free_ports(6)
    env = {**clean_environ(), "CLUSTER_STATE_DIR": str(tmp_path / "state"),
           "CLUSTER_HTTP_PORT": str(http), "CLUSTER_WEBHOOK_PORT": str(webhook),
           "CLUSTER_REDIS_PORT": str(redis),
           "CLUSTER_REPLICA_PORTS": ",".join(map(str, replicas)),
           "REALTIME_ENV_FILE": str(tmp_path / "no.env")}
    env.pop("REDIS_URL", None)  # the cluster must start its own Redis
    yield env
    # Even if the test or the CLI failed half-way: stop by the recorded PIDs.
    stop_processes(load_processes(ClusterConfig.from_env(env)))


def test_start_refuse_status_stop(cluster_env):
    config = ClusterConfig.from_env(cluster_env)
    started = run_cli(cluster_env, "start")
    assert started.returncode == 0, started.stdout + started.stderr
    demo = f"http://127.0.0.1:{config.http_port}/"
    assert demo in started.stdout

    # Detached: the CLI has exited, its processes serve.
    assert requests.get(demo, timeout=10).status_code == 200
    for port in [*config.replica_ports, config.webhook_port]:
        assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=10).status_code == 200
    # The webhook UI's URL carries its token in the fragment; the API needs exactly that token.
    printed = re.search(rf"http://127\.0\.0\.1:{config.webhook_port}/#token=(\S+)", started.stdout)
    assert printed, started.stdout
    info = f"http://127.0.0.1:{config.webhook_port}/api/info"
    assert requests.get(info, timeout=10).status_code == 401
    assert requests.get(info, headers={"Authorization": f"Bearer {printed[1]}"},
                        timeout=10).status_code == 200
    processes = load_processes(config)
    assert len(processes) == 6  # redis, 3 replicas, webhook, nginx
    pids = {member for p in processes for member in group_members(p.pid)}  # with gunicorn workers

    again = run_cli(cluster_env, "start")
    assert again.returncode != 0
    assert "already running" in again.stderr
    assert [p.pid for p in load_processes(config)] == [p.pid for p in processes]
    assert all(alive(p.pid) for p in processes)

    status = run_cli(cluster_env, "status")
    assert status.returncode == 0, status.stdout + status.stderr
    assert all(p.name in status.stdout for p in processes)

    stopped = run_cli(cluster_env, "stop")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert [pid for pid in pids if alive(pid)] == []
    assert not config.state_file.exists()
    assert run_cli(cluster_env, "status").returncode != 0
