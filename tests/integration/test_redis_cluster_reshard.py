"""Resharding under load: live rooms' slots, keys and all, migrate between masters while clients send.

Three gunicorn replicas on the session's Redis Cluster (test_redis_cluster's `cluster`, with
`REALTIME_REDIS_WAIT_REPLICAS=1`). Two rooms' slots are moved to another master the way
`redis-cli --cluster reshard` moves a slot (IMPORTING/MIGRATING, MIGRATE of its keys, SETSLOT NODE)
while a sender sends to them and to a room that stays; a refused send is retried with its
client_id. Then: every acknowledged message is in the history once, every member holds every one
(live, or from `join {since}`), and a message sent after the move reaches every member live.
"""
from __future__ import annotations

import threading
import time

import pytest
import requests
from redis.crc import key_slot

from chatclient import wait_until
from test_redis_cluster import cluster  # noqa: F401  (the module's replicas on the Redis Cluster)

pytestmark = pytest.mark.integration

PER_ROOM = 30          # messages each room gets at least
AFTER_MOVE = 10        # and at least this many after the slots moved
MOST = 90              # a bound on the messages per room, whatever happens (a history page holds 100)
SEND_DEADLINE = 90.0   # seconds for all of them, retries included
MOVE_AFTER = 8         # messages per room sent before the slots start moving
LIVE_WAIT = 10.0       # seconds live delivery gets before a member recovers with join {since}


def seq_key(room: str) -> str:
    return f"rt:room:{{{room}}}:seq"


def rooms_on(redis_cluster, master, count: int, prefix: str, avoid: tuple[str, ...] = ()) -> list[str]:
    """`count` room names whose slots `master` owns, each on its own slot (none shared with `avoid`)."""
    rooms, slots, n = [], {key_slot(seq_key(room).encode()) for room in avoid}, 0
    while len(rooms) < count:
        room, n = f"{prefix}{n}", n + 1
        slot = key_slot(seq_key(room).encode())
        if slot not in slots and redis_cluster.master_of(seq_key(room)) is master:
            rooms.append(room)
            slots.add(slot)
    return rooms


class Sender(threading.Thread):
    """Sends to each room, round-robin, PER_ROOM messages and AFTER_MOVE more once `moved_at` is set;
    a refused one again with its client_id."""

    def __init__(self, client, rooms: list[str]):
        super().__init__(daemon=True)
        self.client, self.rooms = client, rooms
        self.acked: dict[str, list[dict]] = {room: [] for room in rooms}
        self.refused = 0
        self.failure: str | None = None
        self.moved_at: int | None = None  # messages per room sent when the move finished

    def more(self, n: int) -> bool:
        return n < MOST and (n < PER_ROOM or self.moved_at is None or n < self.moved_at + AFTER_MOVE)

    def sent(self) -> int:
        return min(len(messages) for messages in self.acked.values())

    def run(self) -> None:
        deadline = time.monotonic() + SEND_DEADLINE
        try:
            n = 0
            while self.more(n):
                for room in self.rooms:
                    payload = {"room": room, "body": f"{room}/{n}", "client_id": f"{room}-{n}"}
                    while True:
                        if time.monotonic() > deadline:
                            raise TimeoutError(f"{room} #{n} not acknowledged within {SEND_DEADLINE}s")
                        ack = self.client.call("send", payload)
                        if ack.get("ok"):
                            self.acked[room].append(ack["message"])
                            break
                        if ack["error"]["code"] != "unavailable":
                            raise AssertionError(f"send refused: {ack}")
                        self.refused += 1
                        time.sleep(0.1)
                time.sleep(0.02)
                n += 1
        except Exception as exc:  # reported by the test
            self.failure = f"{type(exc).__name__}: {exc}"


def live_for(member, room: str, ids: set[int], seconds: float) -> None:
    """Give live delivery up to `seconds` to bring `ids` (no assertion: recovery covers the rest)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not ids <= {m["id"] for m in member.events["message"] if m["room"] == room}:
        time.sleep(0.1)


def holdings(member, room: str) -> dict[int, dict]:
    """The member's messages of `room` by id: live ones, plus `join {since}` for any gap."""
    live = {m["id"]: m for m in member.events["message"] if m["room"] == room}
    contiguous = 0
    while contiguous + 1 in live:
        contiguous += 1
    ack = member.call("join", {"room": room, "since": contiguous})
    assert ack["ok"] is True and ack["reset"] is False and ack["truncated"] is False, ack
    return {**live, **{m["id"]: m for m in ack["missed"]}}


def test_slots_with_live_rooms_move_between_masters_while_clients_send(cluster, redis_cluster, connect):
    source = redis_cluster.master_of(seq_key("reshard-probe"))
    target = next(m for m in redis_cluster.masters() if m is not source)
    moving = rooms_on(redis_cluster, source, 2, "reshard-move-")
    staying = rooms_on(redis_cluster, source, 1, "reshard-stay-", avoid=tuple(moving))
    rooms = moving + staying
    sender = connect(0, "resharder")
    members = [connect(n, f"member{n}") for n in range(3)]
    for client in (sender, *members):
        for room in rooms:
            assert client.call("join", {"room": room})["ok"] is True
    stream = Sender(sender, rooms)
    stream.start()
    wait_until(lambda: stream.sent() >= MOVE_AFTER or stream.failure or not stream.is_alive(), 30)
    during = stream.sent()
    moved = {room: redis_cluster.move_slot(key_slot(seq_key(room).encode()), target) for room in moving}
    stream.moved_at = stream.sent()
    stream.join(SEND_DEADLINE + 15)
    assert not stream.is_alive() and stream.failure is None, stream.failure
    assert all(count >= 3 for count in moved.values()), f"the slots held the rooms' keys: {moved}"
    for room in moving:
        assert redis_cluster.master_of(seq_key(room)) is target
    assert redis_cluster.master_of(seq_key(staying[0])) is source

    token = cluster.token("auditor")
    for room in rooms:
        acked = stream.acked[room]
        assert [m["body"] for m in acked] == [f"{room}/{n}" for n in range(len(acked))]
        assert len(acked) >= max(PER_ROOM, stream.moved_at + AFTER_MOVE) and during >= MOVE_AFTER
        page = requests.get(cluster.replicas[1].url + f"/api/rooms/{room}/messages?limit=100",
                            headers={"Authorization": "Bearer " + token}, timeout=10).json()["messages"]
        bodies = [m["body"] for m in page]
        assert sorted(bodies) == sorted(set(bodies)), f"{room}: a message stored twice"
        assert {m["id"] for m in acked} <= {m["id"] for m in page}, f"{room}: an acknowledged message lost"
        for member in members:
            live_for(member, room, {m["id"] for m in acked}, LIVE_WAIT)  # what does not come, recovery brings
            held = holdings(member, room)
            assert {m["id"] for m in acked} <= set(held), f"{room}: member missing {sorted({m['id'] for m in acked} - set(held))}"
            assert sorted(m["body"] for m in held.values()) == sorted({m["body"] for m in held.values()})

    # The subscriptions followed the slots: a message now reaches every member live, on the new master.
    for room in moving:
        after = sender.call("send", {"room": room, "body": f"{room}/after", "client_id": f"{room}-after"})
        assert after["ok"] is True, after
        for member in members:
            member.wait_for("message", lambda m, room=room: m["room"] == room and m["body"] == f"{room}/after",
                            timeout=15)
