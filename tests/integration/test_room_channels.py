"""Per-room message-queue channels on three real replicas: who listens to what, no gap, no loss."""
from __future__ import annotations

import json
import threading
import time

import pytest
import redis
import socketio

from chatclient import wait_until
from realtime.emitter import Emitter

pytestmark = pytest.mark.integration

MAIN = "realtime"


def channel(room: str) -> str:
    return f"{MAIN}:room:/chat:{room}"


@pytest.fixture
def rds(cluster):
    client = redis.Redis.from_url(cluster.redis.url)
    yield client
    client.close()


def listeners(rds, room: str) -> int:
    """How many replicas subscribe the room's channel."""
    return rds.pubsub_numsub(channel(room))[0][1]


class Sniffer:
    """Everything published on the main channel and on every room channel, from a raw subscriber."""

    def __init__(self, url: str):
        self.pubsub = redis.Redis.from_url(url).pubsub(ignore_subscribe_messages=True)
        self.pubsub.subscribe(MAIN)
        self.pubsub.psubscribe(f"{MAIN}:room:*")
        self.seen: list[tuple[str, dict]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        while not self.stop.is_set():
            message = self.pubsub.get_message(timeout=0.1)
            if message and message["type"] in ("message", "pmessage"):
                self.seen.append((message["channel"].decode(), json.loads(message["data"])))

    def emits(self, on: str, event: str = "message") -> list[dict]:
        return [data for name, data in self.seen
                if name == on and data.get("method") == "emit" and data.get("event") == event]

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.pubsub.close()


@pytest.fixture
def sniffer(cluster):
    sniff = Sniffer(cluster.redis.url)
    yield sniff
    sniff.close()


def test_only_replicas_with_members_listen_to_a_room(connect, rds, sniffer):
    """Members on replica 0 only: replicas 1 and 2 get nothing of the room on the wire."""
    members = [connect(0, f"solo{n}") for n in range(2)]
    for client in members:
        assert client.call("join", {"room": "solo"})["ok"]
    elsewhere = connect(1, "elsewhere")  # connected, but not in the room
    assert listeners(rds, "solo") == 1
    sent = [members[0].call("send", {"room": "solo", "body": f"m{n}"})["message"] for n in range(5)]
    for client in members:
        wait_until(lambda: len(client.bodies("solo")) == 5)
    wait_until(lambda: len(sniffer.emits(channel("solo"))) == 5)
    assert [e["data"][0]["id"] for e in sniffer.emits(channel("solo"))] == [m["id"] for m in sent]
    assert not [e for e in sniffer.emits(MAIN) if e.get("room") == "solo"], "nothing on the main channel"
    assert elsewhere.bodies("solo") == []


def test_a_room_channel_is_dropped_when_its_last_local_member_leaves_or_disconnects(connect, rds):
    first, second = connect(0, "leaver"), connect(1, "quitter")
    for client in (first, second):
        assert client.call("join", {"room": "coming-going"})["ok"]
    assert listeners(rds, "coming-going") == 2
    assert first.call("leave", {"room": "coming-going"})["ok"]
    wait_until(lambda: listeners(rds, "coming-going") == 1)
    second.close()
    wait_until(lambda: listeners(rds, "coming-going") == 0)
    assert first.call("join", {"room": "coming-going"})["ok"]
    assert listeners(rds, "coming-going") == 1, "joined again: subscribed before the ack"


def test_members_on_every_replica_get_every_message_once_and_in_order(connect):
    members = [connect(i % 3, f"ordered{i}") for i in range(6)]
    for client in members:
        assert client.call("join", {"room": "ordered"})["ok"]
    senders = [members[0], members[4]]  # replicas 0 and 1, at the same time
    threads = [threading.Thread(target=lambda s=s, k=k: [s.call("send", {"room": "ordered", "body": f"{k}-{n}"})
                                                         for n in range(40)])
               for k, s in enumerate(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for client in members:
        wait_until(lambda: len(client.bodies("ordered")) >= 80, timeout=20)
        ids = [m["id"] for m in client.events["message"] if m["room"] == "ordered"]
        assert ids == list(range(1, 81)), ids


def test_a_join_under_a_stream_misses_nothing(connect, rds):
    """Each joiner is its replica's only member, so its join subscribes the room's channel while
    messages flow: between the ack's `missed` and what arrives live it has every message, live
    ones in order. Then it leaves, so the next joiner there subscribes again."""
    writer = connect(0, "streamer")
    assert writer.call("join", {"room": "stream"})["ok"]
    stop, sent = threading.Event(), []

    def stream():
        while not stop.is_set() and len(sent) < 3000:
            sent.append(writer.call("send", {"room": "stream", "body": "x"})["message"]["id"])
            time.sleep(0.005)
    thread = threading.Thread(target=stream)
    thread.start()
    try:
        for n in range(6):
            joiner = connect(1 + n % 2, f"joiner{n}")
            since = max(0, len(sent) - 50)
            ack = joiner.call("join", {"room": "stream", "since": since})
            assert ack["ok"] and not ack["truncated"]
            target = len(sent) + 5
            wait_until(lambda: any(m["id"] >= target for m in joiner.events["message"]), timeout=15)
            live = [m["id"] for m in joiner.events["message"] if m["room"] == "stream"]
            assert live == sorted(set(live)), "live messages in order, none twice"
            missing = set(range(since + 1, live[-1] + 1)) - {m["id"] for m in ack["missed"]} - set(live)
            assert not missing, f"join {n}: a gap after the join: {sorted(missing)}"
            joiner.close()
            wait_until(lambda: listeners(rds, "stream") == 1)
    finally:
        stop.set()
        thread.join(60)


def test_the_listener_subscribes_room_channels_again_after_its_connection_is_killed(cluster, connect, rds):
    """CLIENT KILL of every pub/sub connection: each replica reconnects, subscribes its rooms again
    and catches up on what was sent meanwhile."""
    members = [connect(1, "killed1"), connect(2, "killed2")]
    for client in members:
        for room in ("k1", "k2"):
            assert client.call("join", {"room": room})["ok"]
    sender = connect(0, "survivor")
    assert sender.call("join", {"room": "k1"})["ok"]
    rds.client_kill_filter(_type="pubsub")
    sent = [sender.call("send", {"room": "k1", "body": f"after kill {n}"})["message"] for n in range(3)]
    wait_until(lambda: listeners(rds, "k1") == 3 and listeners(rds, "k2") == 2)
    wait_until(lambda: rds.pubsub_numsub(MAIN)[0][1] >= 3)
    sent.append(sender.call("send", {"room": "k1", "body": "later"})["message"])
    for client in members:
        wait_until(lambda: len(client.bodies("k1")) == 4, timeout=15)
        assert [m["id"] for m in client.events["message"] if m["room"] == "k1"] == [m["id"] for m in sent]


def test_a_stock_python_socketio_emitter_on_the_main_channel_still_reaches_rooms(cluster, connect):
    members = [connect(0, "stock0"), connect(2, "stock2")]
    for client in members:
        assert client.call("join", {"room": "stock"})["ok"]
    manager = socketio.RedisManager(cluster.redis.url, channel=MAIN, write_only=True)
    manager.emit("typing", {"room": "stock", "user": {"id": "ext", "name": "ext"}, "typing": True},
                 room="stock", namespace="/chat")
    for client in members:
        assert client.wait_for("typing", lambda t: t["room"] == "stock")["user"]["id"] == "ext"


def test_our_emitter_publishes_a_room_on_its_channel(cluster, connect, sniffer):
    members = [connect(1, "emitted1"), connect(2, "emitted2")]
    for client in members:
        assert client.call("join", {"room": "emitted"})["ok"]
    emitter = Emitter(cluster.redis.url)
    try:
        sent = emitter.send(room="emitted", body="from a script")
    finally:
        emitter.close()
    for client in members:
        assert client.wait_for("message", lambda m: m["room"] == "emitted") == sent
    wait_until(lambda: sniffer.emits(channel("emitted")))
    assert not [e for e in sniffer.emits(MAIN) if e.get("room") == "emitted"]


def test_the_connect_greetings_reach_the_client_without_going_through_redis(connect, sniffer):
    """welcome and stats go to the connecting client alone, on its own replica: not published to
    every replica (two queue messages per connect, decoded by each, in a connection storm)."""
    client = connect(2, "greeted")  # returns once the welcome arrived
    assert client.events["welcome"][0]["user"]["id"] == "greeted"
    time.sleep(0.5)  # what a publish would have taken to reach the sniffer
    assert sniffer.emits(MAIN, "welcome") == [] and sniffer.emits(MAIN, "stats") == []
