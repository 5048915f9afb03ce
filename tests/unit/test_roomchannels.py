"""Per-room channels without I/O: the routing of each kind of queue message, the setting, the
bookkeeping of SUBSCRIBE confirmations, and the sequencer forgetting a room."""
from __future__ import annotations

import pytest
import socketio

from realtime.mq import roomchannels
from realtime.mq.queue import RedisQueue
from realtime.mq.roomchannels import Subscriptions, channel_for, room_channel
from realtime.mq.sequencer import Sequencer

SID = "AbCdEfGhIjKlMnOpQr-_"  # the shape of a python-engineio session id


def emit(room, **extra):
    return {"method": "emit", "event": "message", "data": [{}], "namespace": "/chat", "room": room,
            "skip_sid": None, "callback": None, "host_id": "h", **extra}


@pytest.mark.parametrize("message, channel", [
    (emit("lobby"), "rt:room:/chat:lobby"),
    (emit("dm:ana:bob"), "rt:room:/chat:dm:ana:bob"),
    (emit("lobby", namespace="/admin"), "rt:room:/admin:lobby"),
    (emit(None), "rt"),                                  # a broadcast to the namespace
    (emit(["dm:a:b", "user:a", "user:b"]), "rt"),        # a list of rooms (private messages)
    (emit(SID), "rt"),                                   # one connection: never subscribed
    (emit("lobby", callback=("lobby", "/chat", 3)), "rt"),
    ({"method": "enter_room", "sid": "s", "room": "lobby", "namespace": "/chat"}, "rt"),
    ({"method": "leave_room", "sid": "s", "room": "lobby", "namespace": "/chat"}, "rt"),
    ({"method": "close_room", "room": "lobby", "namespace": "/chat"}, "rt"),
    ({"method": "disconnect", "sid": "s", "namespace": "/chat"}, "rt"),
    ({"method": "callback", "host_id": "h", "sid": "s", "namespace": "/chat", "id": 1}, "rt"),
])
def test_only_a_single_room_emit_leaves_the_main_channel(message, channel):
    assert channel_for("rt", message) == channel


def test_rooms_without_a_channel():
    for room in (None, "", SID, 7, ("a",)):
        assert room_channel("rt", "/chat", room) is None
    assert room_channel("rt", "/chat", SID + "x") == f"rt:room:/chat:{SID}x"  # 21 characters


@pytest.mark.parametrize("value, mode", [("on", "on"), ("ON", "on"), ("1", "on"), ("true", "on"),
                                         (True, "on"), ("subscribe", "subscribe"), ("off", "off"),
                                         ("0", "off"), ("", "off"), (False, "off")])
def test_setting_values(value, mode):
    assert roomchannels.mode(value) == mode


def test_a_bad_setting_is_refused():
    with pytest.raises(ValueError, match="MQ_ROOM_CHANNELS"):
        roomchannels.mode("sometimes")


@pytest.mark.parametrize("mode, expected", [("on", "rt:room:/chat:lobby"), ("subscribe", "rt"),
                                            ("off", "rt")])
def test_where_each_mode_publishes(mode, expected):
    queue = RedisQueue("redis://127.0.0.1:1/0", "rt", write_only=True, room_channels=mode)
    assert queue.channel_of(emit("lobby")) == expected
    assert queue.channel_of(emit(None)) == "rt"
    assert not queue.room_subscribe, "an external emitter never listens"


def test_modes_that_subscribe():
    for mode, subscribes in (("on", True), ("subscribe", True), ("off", False)):
        assert RedisQueue("redis://127.0.0.1:1/0", "rt", room_channels=mode).room_subscribe is subscribes


def test_a_confirmation_wakes_the_current_subscription():
    subs = Subscriptions()
    first, new = subs.want("c")
    assert new and not first.ready.is_set()
    assert subs.want("c") == (first, False)
    subs.sent(first)
    assert subs.confirmed("c") is first and first.ready.is_set()
    assert subs.confirmed("c") is None, "nothing more was owed"


def test_a_confirmation_owed_to_a_dropped_subscription_does_not_wake_its_successor():
    """SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE of one channel: the first reply is not the second's."""
    subs = Subscriptions()
    old, _ = subs.want("c")
    subs.sent(old)
    assert subs.drop("c") is old and old.ready.is_set(), "its waiters are let go"
    new, created = subs.want("c")
    assert created and new is not old
    subs.sent(new)
    assert subs.confirmed("c") is None and not new.ready.is_set()
    assert subs.confirmed("c") is new and new.ready.is_set()


def test_a_new_connection_owes_every_wanted_channel_again():
    subs = Subscriptions()
    a, _ = subs.want("a")
    b, _ = subs.want("b")
    subs.sent(a)
    subs.confirmed("a")
    subs.sent(b)  # its confirmation died with the old connection
    assert {s.channel for s in subs.restart()} == {"a", "b"}
    assert not a.ready.is_set() and not b.ready.is_set()
    assert subs.confirmed("b") is b and subs.confirmed("a") is a
    assert subs.confirmed("b") is None, "the old connection's SUBSCRIBE is owed nothing"


def test_the_sequencer_forgets_a_room():
    seq = Sequencer(lambda room, after, limit: [])
    seq.admit({"room": "r", "id": 5})
    seq.forget("r")
    seq.note("r", 40)
    assert seq.admit({"room": "r", "id": 41}) == [{"room": "r", "id": 41}]


def test_the_hooks_the_room_channels_override_still_exist():
    """realtime.mq.queue overrides these (python-socketio's and redis-py's); fail loudly if they move."""
    import redis.client
    for hook in ("basic_enter_room", "basic_leave_room", "_listen", "_publish", "_thread"):
        assert hasattr(socketio.RedisManager, hook), hook
    for hook in ("_execute", "check_health", "parse_response"):
        assert hook in vars(redis.client.PubSub), hook
    assert hasattr(redis.Redis.from_url("redis://127.0.0.1:1/0").pubsub(), "_lock")
    assert RedisQueue.basic_enter_room is not socketio.RedisManager.basic_enter_room
