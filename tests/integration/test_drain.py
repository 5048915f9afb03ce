"""SIGTERM drains a replica: its clients move to others through nginx and recover; it leaves at once."""
from __future__ import annotations

import time

import pytest
import requests
import socketio

from chatclient import ChatClient, bound_session, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.nginx]


class Reconnecting:
    """A client that reconnects by itself and re-joins with `since`, as the demo does."""

    def __init__(self, url: str, token: str, source_ip: str):
        self.instances: list[str] = []
        self.seen: dict[int, dict] = {}
        self.drained = False
        self.sio = socketio.Client(reconnection=True, reconnection_delay=0.2, reconnection_delay_max=1,
                                   http_session=bound_session(source_ip))
        self.sio.on("welcome", lambda data: self.instances.append(data["instance"]), namespace="/chat")
        self.sio.on("connect", lambda: self.sio.start_background_task(self.rejoin), namespace="/chat")
        self.sio.on("message", lambda m: self.seen.setdefault(m["id"], m), namespace="/chat")
        self.sio.on("draining", lambda _d: setattr(self, "drained", True), namespace="/chat")
        self.sio.connect(url, namespaces=["/chat"], auth={"token": token}, transports=["polling"],
                         wait_timeout=10)

    def rejoin(self) -> None:
        since = max(self.seen, default=0)
        ack = self.sio.call("join", {"room": "drain", "since": since}, namespace="/chat", timeout=10)
        for message in ack.get("missed", []):
            self.seen.setdefault(message["id"], message)


def test_sigterm_moves_clients_to_other_replicas_without_loss(nginx_cluster):
    token = nginx_cluster.token("mover")
    mover = Reconnecting(nginx_cluster.url, token, "127.0.0.9")
    try:
        wait_until(lambda: mover.instances, timeout=10)
        victim = next(r for r in nginx_cluster.replicas if r.instance_id == mover.instances[0])
        survivor = next(r for r in nginx_cluster.replicas if r is not victim)
        writer = ChatClient(survivor.url, nginx_cluster.token("writer")).connect()
        writer.call("join", {"room": "drain"})
        sent = [writer.call("send", {"room": "drain", "body": "before"})["message"]["id"]]
        wait_until(lambda: sent[0] in mover.seen, timeout=5)
        victim.terminate()
        stopped = time.monotonic()
        for n in range(20):  # keep sending while the replica drains and the client moves
            sent.append(writer.call("send", {"room": "drain", "body": f"during {n}"})["message"]["id"])
            time.sleep(0.1)
        wait_until(lambda: len(mover.instances) >= 2, timeout=15)
        moved_after = time.monotonic() - stopped
        # (`draining` is emitted first; over long-polling it may not be fetched before the close.)
        assert mover.instances[-1] != victim.instance_id
        wait_until(lambda: not victim.running(), timeout=8 + 5)
        exited_after = time.monotonic() - stopped
        stats = requests.get(survivor.url + "/api/stats", timeout=5).json()
        assert victim.instance_id not in {i["id"] for i in stats["instances"]}
        try:
            wait_until(lambda: set(sent) <= set(mover.seen), timeout=10)
        except AssertionError:
            print("sent", sent, "seen", sorted(mover.seen), "instances", mover.instances)
            raise
        assert sorted(mover.seen) == sorted(set(mover.seen))
        print(f"\nclient moved after {moved_after:.1f}s, replica exited after {exited_after:.1f}s, "
              f"{len(sent)} messages, none lost")
        writer.close()
    finally:
        mover.sio.disconnect()
