"""One replica for a test module, and the demo tokens its tests log in with."""
from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Iterator

import requests

from realtime.devcluster import Replica, free_port, stop_all


@contextlib.contextmanager
def lone_replica(workdir: Path, env: dict[str, str], instance_id: str,
                 start_processes: Callable[..., None]) -> Iterator[Replica]:
    """A replica on a free port with `env`, started for the block and stopped (by its PID) after."""
    server = Replica(free_port(), env, workdir, instance_id=instance_id)
    try:
        start_processes(server)
        yield server
    finally:
        stop_all([server])


def demo_token(url: str, name: str, **extra: Any) -> str:
    """A demo login's access token from the replica at `url`."""
    response = requests.post(url + "/api/auth/token", json={"username": name, **extra}, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]
