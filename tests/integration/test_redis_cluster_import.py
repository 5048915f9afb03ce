"""Moving from one Redis to a Redis Cluster: `redis-cli --cluster import` keeps every room's history.

docs/deployment.md's procedure, on real servers: rooms written through the single-Redis store are
imported into the session's cluster, and the cluster store then reads the same messages, ids and
epochs, continues each room's ids, and refuses a repeat of an idempotency key sent before the move.
"""
from __future__ import annotations

import subprocess
import time

import pytest

from realtime.devcluster import find_executable
from realtime.store import Retention, create_redis, redis_store

pytestmark = pytest.mark.integration

KEEP = Retention(max_messages=1000, max_age=3600, idempotency_ttl=600)
ROOMS = [f"moving-{n}" for n in range(12)]  # over every master's slots


def text(body: str) -> dict:
    return {"from": {"id": "ana", "name": "Ana"}, "type": "text", "body": body, "ts": int(time.time() * 1000)}


def test_one_redis_imported_into_a_cluster_keeps_histories_ids_and_epochs(redis_url, redis_cluster_url,
                                                                          redis_server, redis_cluster):
    single = redis_store(create_redis(redis_url))
    cluster = redis_store(create_redis(redis_cluster_url))
    try:
        before = {room: [single.append_message(room, text(f"{room} {n}"), f"{room}-{n}", KEEP).message
                         for n in range(5)] for room in ROOMS}
        seed = redis_cluster.nodes[0]
        done = subprocess.run([find_executable("redis-cli"), "--cluster", "import", f"{seed.host}:{seed.port}",
                               "--cluster-from", f"{redis_server.host}:{redis_server.port}", "--cluster-copy"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
        for room, messages in before.items():
            assert cluster.messages_after(room, 0, 100) == messages
            again = cluster.append_message(room, text(f"{room} 0"), f"{room}-0", KEEP)
            assert again.duplicate and again.message == messages[0]
            after = cluster.append_message(room, text(f"{room} new"), f"{room}-new", KEEP).message
            assert after["id"] == messages[-1]["id"] + 1 and after["epoch"] == messages[0]["epoch"]
    finally:
        single.client.close()
        cluster.client.close()
