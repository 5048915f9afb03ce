"""The dashboard feed on /admin follows the cluster: a killed replica shows as gone, Redis down says so."""
from __future__ import annotations

import threading

import pytest
import requests
import socketio

from chatclient import wait_until

pytestmark = pytest.mark.integration


class Watcher:
    """An admin dashboard connection recording every pushed snapshot."""

    def __init__(self, url: str, token: str):
        self.snapshots: list[dict] = []
        self.lock = threading.Lock()
        self.sio = socketio.Client(reconnection=False)
        self.sio.on("dashboard", self.record, namespace="/admin")
        self.sio.connect(url, namespaces=["/admin"], auth={"token": token}, wait_timeout=10)

    def record(self, snapshot: dict) -> None:
        with self.lock:
            self.snapshots.append(snapshot)

    def latest(self) -> dict | None:
        with self.lock:
            return self.snapshots[-1] if self.snapshots else None


def test_feed_shows_replicas_a_killed_one_gone_and_redis_down(cluster):
    admin_token = requests.post(cluster.replicas[0].url + "/api/auth/token", json={"username": "admin"},
                                timeout=5).json()["access_token"]
    watcher = Watcher(cluster.replicas[0].url, admin_token)
    try:
        ids = {r.instance_id for r in cluster.replicas}
        first = wait_until(lambda: (s := watcher.latest()) and {r["id"] for r in s["replicas"]} == ids and s,
                           timeout=15)
        assert first["redis"]["ok"] is True and first["redis"]["used_memory"] > 0
        assert all(r["memory_rss"] > 0 and r["uptime_s"] >= 0 for r in first["replicas"])
        victim = cluster.replicas[2]
        victim.kill()
        gone = wait_until(lambda: (s := watcher.latest()) and victim.instance_id in s["gone"] and s,
                          timeout=cluster.instance_ttl + 8)
        assert victim.instance_id not in {r["id"] for r in gone["replicas"]}
        http = requests.get(cluster.replicas[1].url + "/api/admin/dashboard", timeout=5,
                            headers={"Authorization": "Bearer " + admin_token}).json()
        assert victim.instance_id not in {r["id"] for r in http["replicas"]}
        cluster.redis.stop()
        down = wait_until(lambda: (s := watcher.latest()) and not s["redis"]["ok"] and s, timeout=15)
        assert down["redis"]["error"] and down["replicas"][0]["id"] == cluster.replicas[0].instance_id
        cluster.redis.start()
        wait_until(lambda: (s := watcher.latest()) and s["redis"]["ok"], timeout=20)
    finally:
        watcher.sio.disconnect()
