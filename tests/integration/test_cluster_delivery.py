"""Three real gunicorn replicas on one real Redis: delivery, emitter, counts, recovery."""
from __future__ import annotations

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from chatclient import wait_until
from realtime.emitter import Emitter

pytestmark = pytest.mark.integration


def test_replicas_are_distinct_and_ready(cluster):
    ids = {requests.get(r.url + "/healthz", timeout=5).json()["instance"] for r in cluster.replicas}
    assert len(ids) == 3
    for replica in cluster.replicas:
        assert requests.get(replica.url + "/readyz", timeout=5).json() == {"status": "ready", "store": "redis"}


def test_websockets_are_not_compressed_even_when_the_client_offers_it(cluster):
    # permessage-deflate costs CPU per frame per client and would defeat writing one frame to
    # every member; gevent-websocket does not negotiate it, so the answer names no extension.
    host, port = cluster.replicas[0].url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                     b"Host: " + host.encode() + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                     b"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(4096)
    head = answer.split(b"\r\n\r\n")[0].decode().lower()
    assert head.startswith("http/1.1 101") and "sec-websocket-extensions" not in head


def test_welcome_names_the_replica(cluster, connect):
    clients = [connect(i, f"u{i}") for i in range(3)]
    assert [c.instance for c in clients] == [r.instance_id for r in cluster.replicas]


@pytest.mark.parametrize("sender", [0, 2])
def test_message_reaches_members_on_every_replica(connect, sender):
    room = f"cross-{sender}"
    clients = [connect(i, f"member{i}") for i in range(3)]
    for client in clients:
        assert client.call("join", {"room": room})["ok"] is True
    ack = clients[sender].call("send", {"room": room, "type": "text", "body": f"from {sender}",
                                        "client_id": f"c-{sender}"})
    assert ack["ok"] is True
    for client in clients:
        got = client.wait_for("message", lambda m: m["room"] == room)
        assert got == ack["message"]


def test_polling_and_websocket_clients_meet(connect):
    polling = connect(0, "poller", transports=["polling"])
    ws = connect(1, "socket", transports=["websocket"])
    for client in (polling, ws):
        client.call("join", {"room": "mixed"})
    ws.call("send", {"room": "mixed", "body": "to the poller"})
    polling.call("send", {"room": "mixed", "body": "to the socket"})
    assert polling.wait_for("message", lambda m: m["body"] == "to the poller")
    assert ws.wait_for("message", lambda m: m["body"] == "to the socket")
    assert polling.transport == "polling" and ws.transport == "websocket"


def test_clients_upgrading_mid_stream_get_every_message_once_in_order(connect):
    """Polling → websocket upgrades while a burst flows: the queued packets go first, no gap."""
    sender = connect(1, "burster", transports=["websocket"])
    sender.call("join", {"room": "burst"})
    stream = threading.Thread(target=lambda: [sender.call("send", {"room": "burst", "body": str(n)})
                                              for n in range(150)])
    stream.start()
    upgraders = [connect(0, f"upgrader{n}") for n in range(3)]  # polling first, then websocket
    for client in upgraders:
        client.call("join", {"room": "burst", "since": 0})
    stream.join(timeout=60)
    for client in upgraders:
        wait_until(lambda: "149" in client.bodies("burst"), timeout=15)
        wait_until(lambda: client.transport == "websocket", timeout=15)
        live = [int(b) for b in client.bodies("burst")]
        assert live == sorted(set(live)) and live[-1] == 149, live  # in order, none twice


def test_external_emitter_reaches_every_replica_and_is_persisted(cluster, connect):
    clients = [connect(i, f"listener{i}") for i in range(3)]
    for client in clients:
        client.call("join", {"room": "deploys"})
    emitter = Emitter(cluster.redis.url)
    try:
        sent = emitter.send(room="deploys", body="deploy finished")
    finally:
        emitter.close()
    for client in clients:
        assert client.wait_for("message", lambda m: m["room"] == "deploys") == sent
    assert sent["from"] == {"id": "system", "name": "system"}
    page = requests.get(cluster.replicas[1].url + "/api/rooms/deploys/messages",
                        headers={"Authorization": "Bearer " + cluster.token("reader")}, timeout=5)
    assert page.json()["messages"] == [sent]


def test_cli_emit_from_a_plain_process(cluster, connect):
    clients = [connect(i, f"cli{i}") for i in range(3)]
    for client in clients:
        client.call("join", {"room": "ops"})
    cli = Path(sys.executable).with_name("realtime")
    done = subprocess.run([str(cli), "emit", "--redis-url", cluster.redis.url, "--room", "ops",
                           "--from", "ci-bot", "build is green"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    for client in clients:
        message = client.wait_for("message", lambda m: m["room"] == "ops")
        assert (message["body"], message["from"]["name"]) == ("build is green", "ci-bot")


def test_cli_emit_refuses_bad_input(cluster):
    cli = Path(sys.executable).with_name("realtime")
    done = subprocess.run([str(cli), "emit", "--redis-url", cluster.redis.url, "--room", "bad room",
                           "x"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 1
    assert '"invalid_room"' in done.stderr


def test_missed_messages_are_recovered_on_another_replica(connect):
    writer = connect(0, "writer")
    writer.call("join", {"room": "recover"})
    first = writer.call("send", {"room": "recover", "body": "seen"})["message"]
    for n in range(3):
        writer.call("send", {"room": "recover", "body": f"missed {n}"})
    reader = connect(2, "reader")
    ack = reader.call("join", {"room": "recover", "since": first["id"]})
    assert [m["body"] for m in ack["missed"]] == ["missed 0", "missed 1", "missed 2"]
    assert ack["truncated"] is False


def test_counts_are_cluster_wide_and_pushed(cluster, connect):
    def total(replica: int = 2) -> dict:
        return requests.get(cluster.replicas[replica].url + "/api/stats", timeout=5).json()
    base = total()["clients_total"]
    watcher = connect(2, "watcher")
    connect(0, "a")
    connect(0, "b")
    connect(1, "c")
    stats = wait_until(lambda: (s := total())["clients_total"] == base + 4 and s)
    assert len(stats["instances"]) == 3
    assert {i["id"] for i in stats["instances"]} == {r.instance_id for r in cluster.replicas}
    pushed = watcher.wait_for("stats", lambda s: s["clients_total"] == base + 4)
    assert pushed["instance"] == watcher.instance


def test_metrics_of_a_real_replica(cluster, connect):
    from prometheus_client.parser import text_string_to_metric_families
    sender = connect(0, "metered", transports=["websocket"])
    receiver = connect(1, "listener", transports=["polling"])
    for client in (sender, receiver):
        client.call("join", {"room": "metered"})
    sent = sender.call("send", {"room": "metered", "body": "count me"})["message"]
    receiver.wait_for("message", lambda m: m["id"] == sent["id"])

    def samples(replica: int) -> dict:
        text = requests.get(cluster.replicas[replica].url + "/metrics", timeout=5).text
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in text_string_to_metric_families(text) for s in family.samples}
    first, second = samples(0), samples(1)
    assert first[("realtime_connections", (("namespace", "/chat"), ("transport", "websocket")))] >= 1
    assert second[("realtime_connections", (("namespace", "/chat"), ("transport", "polling")))] >= 1
    assert second[("realtime_messages_delivered_total", ())] >= 1
    assert second[("realtime_delivery_latency_seconds_count", ())] >= 1
    assert first[("realtime_greenlets", ())] > 0
    assert first[("realtime_store_call_seconds_count", (("operation", "append_message"),))] >= 1


def test_the_replicas_run_the_path_the_test_run_asked_for(cluster):
    """REALTIME_TEST_FAST_PATHS reaches every replica; the gauge, the dashboard and the log say so."""
    from clusterfixtures import expected_fast_paths_state
    expected = expected_fast_paths_state()
    for replica in cluster.replicas:
        text = requests.get(replica.url + "/metrics", timeout=5).text
        assert f'realtime_fast_paths{{state="{expected}"}} 1.0' in text, text
        log = replica.log_path.read_text(errors="replace")
        assert ("fast paths on; python-engineio" if expected == "on" else "fast paths off, stock path (") in log
    admin = requests.get(cluster.replicas[0].url + "/api/admin/dashboard", timeout=5,
                         headers={"Authorization": f"Bearer {cluster.token('admin')}"}).json()
    assert {r["transport"]["state"] for r in admin["replicas"]} == {expected}

