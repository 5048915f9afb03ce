"""A client whose replica is SIGKILLed comes back through nginx on another one and recovers."""
from __future__ import annotations

import pytest

from chatclient import ChatClient, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.nginx]


def test_recovery_after_the_replica_is_killed(nginx_cluster):
    by_id = {r.instance_id: r for r in nginx_cluster.replicas}
    reader = ChatClient(nginx_cluster.url, nginx_cluster.token("reader"), source_ip="127.0.0.7").connect()
    victim = by_id[reader.instance]
    survivor = next(r for r in nginx_cluster.replicas if r is not victim)
    writer = ChatClient(survivor.url, nginx_cluster.token("writer")).connect()
    back = None
    try:
        for client in (reader, writer):
            client.call("join", {"room": "crash"})
        seen = writer.call("send", {"room": "crash", "body": "seen"})["message"]
        reader.wait_for("message", lambda m: m["id"] == seen["id"])
        victim.kill()
        wait_until(lambda: not reader.sio.connected, timeout=10)
        sent = [writer.call("send", {"room": "crash", "body": f"while down {n}", "client_id": f"wd{n}"})
                ["message"] for n in range(5)]
        back = ChatClient(nginx_cluster.url, nginx_cluster.token("reader"), source_ip="127.0.0.7").connect()
        assert back.instance != victim.instance_id
        ack = back.call("join", {"room": "crash", "since": seen["id"]})
        assert ack["missed"] == sent and ack["truncated"] is False
        live = writer.call("send", {"room": "crash", "body": "live again"})["message"]
        back.wait_for("message", lambda m: m["id"] == live["id"])
        ids = [m["id"] for m in ack["missed"]] + [m["id"] for m in back.events["message"]]
        assert ids == list(range(seen["id"] + 1, live["id"] + 1))
        print(f"\nreader moved from {victim.instance_id} to {back.instance}; recovered {len(sent)} messages")
    finally:
        for client in (reader, writer, back):
            if client:
                client.close()
