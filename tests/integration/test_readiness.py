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
        # Send at once, while the other replica's listener may still be re-subscribing: pub/sub
        # keeps nothing, yet every acknowledged message must reach the receiver (catch-up and gap
        # filling from the store), exactly once and in order.
        acked = []
        for n in range(10):
            ack = sender.call("send", {"room": "outage", "body": f"after restart {n}", "client_id": f"ar{n}"})
            if ack["ok"]:
                acked.append(ack["message"]["id"])
        assert acked, "no send was accepted after Redis came back"

        def received() -> list[int]:
            return [m["id"] for m in receiver.events["message"] if m["room"] == "outage"]
        try:
            wait_until(lambda: set(acked) <= set(received()), timeout=20, interval=0.2)
        except AssertionError:
            print("acked", acked, "received", received(), "connected", receiver.sio.connected)
            for replica in cluster.replicas[:2]:
                print(replica.log_tail(60))
            raise
        assert received() == sorted(set(received())), "delivered twice or out of order"
    finally:
        sender.close()
        receiver.close()
