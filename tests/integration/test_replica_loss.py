"""A replica killed with SIGKILL disappears from the cluster-wide counts within the TTL."""
from __future__ import annotations

import time

import pytest
import requests

from chatclient import ChatClient, wait_until

pytestmark = pytest.mark.integration


def stats(replica) -> dict:
    return requests.get(replica.url + "/api/stats", timeout=5).json()


def test_sigkilled_replica_drops_out_of_the_counts(cluster):
    clients = [ChatClient(r.url, cluster.token(f"user{i}")).connect()
               for i, r in enumerate(cluster.replicas) for _ in range(2)]
    try:
        survivor, victim = cluster.replicas[0], cluster.replicas[2]
        wait_until(lambda: stats(survivor)["clients_total"] == 6)
        watcher = clients[0]
        watcher.forget("stats")
        victim.kill()
        killed_at = time.monotonic()
        after = wait_until(lambda: len((s := stats(survivor))["instances"]) == 2 and s,
                           timeout=cluster.instance_ttl + 5)
        gone_after = time.monotonic() - killed_at
        print(f"\nreplica gone from the counts {gone_after:.1f}s after SIGKILL "
              f"(instance TTL {cluster.instance_ttl}s)")
        assert victim.instance_id not in {i["id"] for i in after["instances"]}
        assert after["clients_total"] == 4
        assert watcher.wait_for("stats", lambda s: len(s["instances"]) == 2)["clients_total"] == 4
        # The survivors keep delivering to each other.
        for client in clients[:4]:
            client.call("join", {"room": "after-loss"})
        clients[0].call("send", {"room": "after-loss", "body": "still here"})
        assert clients[3].wait_for("message", lambda m: m["room"] == "after-loss")["body"] == "still here"
    finally:
        for client in clients:
            client.close()
