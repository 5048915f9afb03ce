"""A Redis that lost its data: ids start again from 1 under a new epoch, and nothing is lost silently.

The module's own redis-server (the `cluster` fixture: `--save '' --appendonly no`) is restarted
on the same port, or flushed while the replicas stay subscribed; clients on two replicas must see
every new message, and a client that comes back with an old (since, epoch) is told to start over.
"""
from __future__ import annotations

import pytest
import redis
import requests

from chatclient import wait_until
from realtime.emitter import Emitter

pytestmark = pytest.mark.integration

ROOM = "epochs"


def send(client, body: str, room: str = ROOM) -> dict:
    """Send until the replica accepts it (it may still be reconnecting to Redis); the message."""
    def accepted():
        ack = client.call("send", {"room": room, "body": body, "client_id": f"c-{body}"})
        return ack["message"] if ack.get("ok") else None
    return wait_until(accepted, timeout=20, interval=0.3)


def received(client, epoch: str, room: str = ROOM) -> list[int]:
    """Ids of the live messages of `epoch` a client got, in arrival order."""
    return [m["id"] for m in client.events["message"] if m["room"] == room and m.get("epoch") == epoch]


def joined_pair(connect, room: str = ROOM):
    """Ana on replica 0 sends; Bo on replica 1 listens (its sequencer sees ids 1..5)."""
    ana, bo = connect(0, "Ana"), connect(1, "Bo")
    for client in (ana, bo):
        assert client.call("join", {"room": room})["ok"] is True
    before = [send(ana, f"old-{n}", room) for n in range(5)]
    epoch = before[0]["epoch"]
    assert [m["id"] for m in before] == [1, 2, 3, 4, 5] and {m["epoch"] for m in before} == {epoch}
    wait_until(lambda: received(bo, epoch, room) == [1, 2, 3, 4, 5])
    return ana, bo, epoch


def test_after_a_restart_without_persistence_a_client_is_reset_and_misses_nothing(cluster, connect):
    ana, bo, old = joined_pair(connect)
    cluster.redis.stop()  # by its PID; no RDB, no AOF: everything is gone
    cluster.redis.start()  # same port, empty
    after = [send(ana, f"new-{n}") for n in range(3)]
    new = after[0]["epoch"]
    assert new != old and [m["id"] for m in after] == [1, 2, 3]
    # Bo's replica had delivered up to id 5: the new ids 1..3 are not taken for repeats.
    wait_until(lambda: received(bo, new) == [1, 2, 3], timeout=15)
    # Bo's next session comes back with what it saw: told to start over, given the new history.
    again = connect(1, "Bo")
    ack = again.call("join", {"room": ROOM, "since": 5, "epoch": old})
    assert (ack["ok"], ack["reset"], ack["epoch"]) == (True, True, new)
    assert [m["body"] for m in ack["missed"]] == ["new-0", "new-1", "new-2"]
    # A client that sends no epoch is answered as before (its id is past the newest: flagged).
    legacy = connect(0, "Cy").call("join", {"room": ROOM, "since": 5})
    assert (legacy["reset"], legacy["truncated"], legacy["epoch"]) == (False, True, new)
    same = connect(0, "Di").call("join", {"room": ROOM, "since": 2, "epoch": new})
    assert (same["reset"], [m["id"] for m in same["missed"]]) == (False, [3])
    # The HTTP API and the external emitter go on in the new epoch.
    page = requests.get(f"{cluster.replicas[2].url}/api/rooms/{ROOM}/messages",
                        headers={"Authorization": f"Bearer {cluster.token('Ana')}"}, timeout=10).json()
    assert page["epoch"] == new and [m["id"] for m in page["messages"]] == [1, 2, 3]
    emitter = Emitter(cluster.redis.url)
    try:
        emitted = emitter.send(ROOM, "from outside")
    finally:
        emitter.close()
    assert (emitted["id"], emitted["epoch"]) == (4, new)
    wait_until(lambda: received(bo, new) == [1, 2, 3, 4])
    wait_until(lambda: received(again, new) == [4])  # its own connection: it may arrive a moment later


def test_a_flushed_redis_does_not_make_a_listening_replica_drop_the_new_ids(cluster, connect):
    room = "flushed"
    ana, bo, old = joined_pair(connect, room)
    # An operator's FLUSHDB: the replicas stay subscribed, so no catch-up runs; only the epoch
    # of the next messages tells Bo's replica that id 1 is new, not a repeat of the old id 1.
    client = redis.Redis.from_url(cluster.redis.url)
    try:
        client.flushdb()
    finally:
        client.close()
    after = [send(ana, f"flushed-{n}", room) for n in range(2)]
    new = after[0]["epoch"]
    assert new != old and [m["id"] for m in after] == [1, 2]
    wait_until(lambda: received(bo, new, room) == [1, 2], timeout=15)
    assert received(bo, old, room) == [1, 2, 3, 4, 5]  # and nothing of the old history again
