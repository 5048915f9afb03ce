"""/readyz follows Redis: 503 while it is down, 200 again after it restarts."""
from __future__ import annotations

import pytest
import requests

from chatclient import ChatClient, wait_until

pytestmark = pytest.mark.integration


def ready(replica) -> int:
    return requests.get(replica.url + "/readyz", timeout=10).status_code


def test_readyz_goes_503_without_redis_and_recovers(cluster):
    sender = ChatClient(cluster.replicas[0].url, cluster.token("ana")).connect()
    receiver = ChatClient(cluster.replicas[1].url, cluster.token("bo")).connect()
    try:
        for client in (sender, receiver):
            client.call("join", {"room": "outage"})
        assert all(ready(r) == 200 for r in cluster.replicas)
        cluster.redis.stop()
        for replica in cluster.replicas:
            response = requests.get(replica.url + "/readyz", timeout=10)
            assert response.status_code == 503
            assert response.json()["status"] == "unavailable" and response.json()["reason"]
            assert requests.get(replica.url + "/healthz", timeout=10).status_code == 200
        refused = sender.call("send", {"room": "outage", "body": "while down"}, timeout=30)
        assert refused["ok"] is False and refused["error"]["code"] == "unavailable"
        assert refused["error"]["retry_after"] > 0
        cluster.redis.start()
        wait_until(lambda: all(ready(r) == 200 for r in cluster.replicas), timeout=20)
        # The message queue listener resubscribes; delivery resumes without a restart. A message
        # published before the listener is back is missed live (pub/sub keeps nothing), so each
        # attempt is a new message.
        attempts = iter(range(1000))

        def delivered() -> bool:
            sender.call("send", {"room": "outage", "body": f"after restart {next(attempts)}"})
            return any(m["body"].startswith("after restart") for m in receiver.events["message"])
        try:
            wait_until(delivered, timeout=30, interval=1)
        except AssertionError:
            for replica in cluster.replicas[:2]:
                print(replica.log_tail(60))
            raise
    finally:
        sender.close()
        receiver.close()
