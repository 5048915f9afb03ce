"""RoomIndex: a connection's rooms indexed; the same manager state as python-socketio's, no scans."""
from __future__ import annotations

import itertools
import json
import random

import pytest
import socketio

from realtime.transport.roomindex import LocalManager, OwnRoom, Room


class Server:
    """What a manager reads of its server: ids and the JSON module."""

    class packet_class:
        json = json

    def __init__(self):
        counter = itertools.count()
        self.eio = type("Eio", (), {"generate_id": staticmethod(lambda: f"sid{next(counter):04d}")})()


def manager(cls):
    instance = cls()
    instance.set_server(Server())
    return instance


def state(m) -> tuple:
    """Everything the managers keep, comparable."""
    rooms = {ns: {room: dict(members) for room, members in by_room.items()} for ns, by_room in m.rooms.items()}
    return (rooms, {sid: sorted(acks) for sid, acks in m.callbacks.items()},
            {ns: sorted(v) for ns, v in m.pending_connect.items()},
            {ns: sorted(v) for ns, v in m.pending_disconnect.items()})


def test_random_operations_leave_the_same_state_as_python_socketios_manager():
    stock, indexed = manager(socketio.Manager), manager(LocalManager)
    rng = random.Random(7)
    live: dict[str, list[str]] = {"/": [], "/chat": []}
    for step in range(3000):
        namespace = rng.choice(["/", "/chat"])
        sids = live[namespace]
        action = rng.random()
        if action < 0.25 or not sids:
            eio_sid = f"eio{step}"
            pending = rng.random() < 0.2
            made = [m.pre_connect(eio_sid, namespace) if pending else m.connect(eio_sid, namespace)
                    for m in (stock, indexed)]
            assert made[0] == made[1]
            sids.append(made[0])
        elif action < 0.55:
            sid, room = rng.choice(sids), rng.choice(["lobby", "news", "user:ana", "user:bo", "dm:ana:bo"])
            for m in (stock, indexed):
                m.enter_room(sid, namespace, room)
        elif action < 0.7:
            sid, room = rng.choice(sids), rng.choice(["lobby", "news", "user:ana", "nowhere"])
            for m in (stock, indexed):
                m.leave_room(sid, namespace, room)
        elif action < 0.75:
            room = rng.choice(["lobby", "news"])
            for m in (stock, indexed):
                m.close_room(room, namespace)
        elif action < 0.8:
            sid = rng.choice(sids)
            for m in (stock, indexed):
                m._generate_ack_id(sid, print)
        elif action < 0.85:
            sid = rng.choice(sids)
            for m in (stock, indexed):
                m.pending_disconnect.setdefault(namespace, []).append(sid)
        else:
            sid = sids.pop(rng.randrange(len(sids)))
            for m in (stock, indexed):
                m.disconnect(sid, namespace)
        assert state(indexed) == state(stock), step
        for sid in sids[-3:]:
            assert sorted(map(str, indexed.get_rooms(sid, namespace))) == \
                sorted(map(str, stock.get_rooms(sid, namespace))), step
        if sids:  # who an emit reaches: a connection's own room, a room, several, the namespace
            own = rng.choice(sids)
            for to in (own, "lobby", [own, "user:ana", "news"], ["nowhere", "dm:ana:bo"], None):
                assert sorted(indexed.get_participants(namespace, to)) == \
                    sorted(stock.get_participants(namespace, to)), (step, to)
    for namespace, sids in live.items():  # the index holds live connections only
        assert set(indexed.joined.get(namespace, {})) <= set(sids)


class NoScan(dict):
    """A namespace's rooms that fail the test if walked."""

    def items(self):
        pytest.fail("the namespace's rooms were scanned")

    def copy(self):
        pytest.fail("the namespace's rooms were copied")


def test_a_disconnect_and_get_rooms_do_not_walk_every_room():
    m = manager(LocalManager)
    sids = [m.connect(f"eio{n}", "/chat") for n in range(50)]
    for n, sid in enumerate(sids):
        m.enter_room(sid, "/chat", "lobby")
        m.enter_room(sid, "/chat", f"user:u{n % 5}")
    m.rooms["/chat"] = NoScan(m.rooms["/chat"])
    assert sorted(map(str, m.get_rooms(sids[3], "/chat"))) == sorted([sids[3], "lobby", "user:u3"])
    m.disconnect(sids[3], "/chat")
    assert m.get_rooms(sids[3], "/chat") == [] and sids[3] not in m.joined["/chat"]
    assert sids[3] not in m.rooms["/chat"]["lobby"] and sids[3] not in m.rooms["/chat"][None]
    assert sids[3] not in m.rooms["/chat"]["user:u3"] and sids[3] not in m.rooms["/chat"]


def test_rooms_are_a_dict_and_a_connections_own_room_holds_only_it():
    m = manager(LocalManager)
    ana, bo = m.connect("eio-a", "/chat"), m.connect("eio-b", "/chat")
    m.enter_room(ana, "/chat", "lobby")
    rooms = m.rooms["/chat"]
    assert type(rooms["lobby"]) is Room and rooms["lobby"] == {ana: "eio-a"}
    own = rooms[ana]
    assert type(own) is OwnRoom and dict(own) == {ana: "eio-a"} and len(own) == 1
    assert ana in own and bo not in own and None not in own and own.get(bo) is None
    assert own[ana] == "eio-a" and list(own.items()) == [(ana, "eio-a")]
    m.enter_room(ana, "/chat", ana)  # entering its own room again changes nothing
    assert rooms[ana] is own and dict(own) == {ana: "eio-a"}
    with pytest.raises(ValueError):
        own[bo] = "eio-b"
    with pytest.raises(KeyError):
        del own[bo]
    assert dict(own) == {ana: "eio-a"}


def test_refusals_are_python_socketios_and_change_nothing():
    stock, indexed = manager(socketio.Manager), manager(LocalManager)
    sids = [[m.connect(f"eio{n}", "/chat") for n in range(2)] for m in (stock, indexed)]
    assert sids[0] == sids[1]
    ana, bo = sids[0]
    before = state(indexed)
    for m in (stock, indexed):
        with pytest.raises(ValueError):
            m.enter_room(ana, "/chat", bo)  # another connection's own room
        with pytest.raises(ValueError):
            m.enter_room(ana, "/nowhere", "lobby")  # a namespace it is not connected to
        with pytest.raises(KeyError):
            m.enter_room("not-a-sid", "/chat", "lobby")
    assert state(indexed) == before
