"""A replica's room-channel subscriptions on a real Redis: the manager and its listener in-process.

The manager runs its listener in a thread (as under Flask-SocketIO's threading mode); membership
changes go through the same `basic_enter_room`/`basic_leave_room`/`basic_disconnect` a server
calls for join_room, leave_room and disconnects.
"""
from __future__ import annotations

import json
import logging
import threading
import time

import pytest
import redis

from realtime.mq.queue import RedisQueue

CHANNEL = "rt-subs"


def wait_until(check, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
    return value


class ThreadServer:
    """The Socket.IO server surface the manager uses when it listens: background threads."""
    async_mode = "threading"
    logger = logging.getLogger("test-room-subscriptions")

    def start_background_task(self, target, *args):
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        return thread


class Replica:
    """A message queue with a listener thread that records the emits it receives from others."""

    def __init__(self, url, **options):
        self.queue = self.make_queue(url, **options)
        self.queue.server = ThreadServer()
        self.received: list[dict] = []
        self.stopping = threading.Event()
        self.thread = None

    @staticmethod
    def make_queue(url, **options):
        return RedisQueue(url, CHANNEL, retry_max=0.2, **options)

    def listen(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.queue.main_confirmed)
        return self

    def _run(self):
        for raw in self.queue._listen():
            if self.stopping.is_set():
                return
            data = json.loads(raw)
            if data.get("host_id") != self.queue.host_id:
                self.dispatch(data)

    def dispatch(self, data):
        if data.get("method") == "emit":
            self.received.append(data)
        elif data.get("method") == "enter_room":  # as PubSubManager._thread dispatches it
            self.queue._handle_enter_room(data)

    def connect(self, sid):
        self.queue.basic_enter_room(sid, "/chat", None, eio_sid="e-" + sid)
        self.queue.basic_enter_room(sid, "/chat", sid)

    def stop(self, client):
        self.stopping.set()
        if self.thread is not None:
            client.publish(CHANNEL, "{}")  # wakes the blocked read
            self.thread.join(10)


@pytest.fixture
def client(redis_url):
    connection = redis.Redis.from_url(redis_url)
    yield connection
    connection.close()


@pytest.fixture
def replica(redis_url, client):
    started = []

    def start(listen=True, **options):
        made = Replica(redis_url, **options)
        started.append(made)
        return made.listen() if listen else made
    yield start
    for made in started:
        made.stop(client)


def subscribers(client, room):
    return client.pubsub_numsub(f"{CHANNEL}:room:/chat:{room}")[0][1]


def test_the_first_member_subscribes_before_the_join_returns(replica, client):
    """No gap: a PUBLISH right after enter_room returns already reaches this replica."""
    one = replica()
    one.connect("sid-1")
    one.queue.basic_enter_room("sid-1", "/chat", "lobby")
    subscription = one.queue.rooms_wanted.wanted[f"{CHANNEL}:room:/chat:lobby"]
    assert subscription.ready.is_set() and not subscription.late, "Redis confirmed it already"
    assert client.publish(f"{CHANNEL}:room:/chat:lobby", json.dumps({"method": "emit", "n": 1})) == 1
    wait_until(lambda: one.received)
    assert one.received[0]["n"] == 1


def test_a_room_is_subscribed_while_it_has_members(replica, client):
    one = replica()
    for sid in ("a", "b"):
        one.connect(sid)
        one.queue.basic_enter_room(sid, "/chat", "lobby")
    assert subscribers(client, "lobby") == 1
    one.queue.basic_leave_room("a", "/chat", "lobby")
    time.sleep(0.1)
    assert subscribers(client, "lobby") == 1, "one member is left"
    one.queue.basic_disconnect("b", "/chat")
    wait_until(lambda: subscribers(client, "lobby") == 0)
    assert not one.queue.rooms_wanted.wanted


def test_connections_own_rooms_get_no_channel(replica, client):
    one = replica()
    one.connect("AbCdEfGhIjKlMnOpQr-_")
    one.queue.basic_enter_room("AbCdEfGhIjKlMnOpQr-_", "/chat", "user:ana")
    assert [c.decode() for c in client.pubsub_channels(f"{CHANNEL}:room:*")] == [
        f"{CHANNEL}:room:/chat:user:ana"]


def test_a_member_elsewhere_does_not_make_this_replica_listen(replica, client):
    one, two = replica(), replica()
    one.connect("a")
    two.connect("b")
    one.queue.basic_enter_room("a", "/chat", "only-one")
    two.queue.basic_enter_room("b", "/chat", "both")
    one.queue.basic_enter_room("a", "/chat", "both")
    assert subscribers(client, "only-one") == 1 and subscribers(client, "both") == 2
    sender = RedisQueue(one.queue.redis_url, CHANNEL, write_only=True)
    for n in range(5):
        sender.emit("message", {"n": n}, namespace="/chat", room="only-one")
    sender.emit("message", {"n": "both"}, namespace="/chat", room="both")
    wait_until(lambda: len(two.received) == 1 and len(one.received) == 6)
    assert [m["data"] for m in two.received] == [[{"n": "both"}]], "nothing of only-one reached two"
    assert [m["data"][0]["n"] for m in one.received] == [0, 1, 2, 3, 4, "both"], "in order"


def test_a_join_while_the_listener_is_down_returns_at_once_and_is_subscribed_later(replica, client):
    one = replica(listen=False, subscribe_timeout=600)
    one.connect("a")
    joining = threading.Thread(target=one.queue.basic_enter_room, args=("a", "/chat", "early"))
    joining.start()
    joining.join(30)  # a liveness bound, far below the 600 s it would wait for a confirmation
    assert not joining.is_alive(), "the join waited for a listener that is not there"
    assert one.queue.rooms_wanted.wanted[f"{CHANNEL}:room:/chat:early"].late
    one.listen()
    wait_until(lambda: subscribers(client, "early") == 1)


def test_a_join_stops_waiting_for_a_confirmation_that_does_not_come(replica, client):
    """A listener held up (here: before it handles the confirmation): the join gives up after the
    timeout; once the confirmation is handled, the replica catches up on what it may have missed."""
    one = replica(subscribe_timeout=0.3)
    one.connect("a")
    caught_up = threading.Event()
    one.queue.catch_up = caught_up.set
    gate = threading.Lock()
    handle = one.queue.confirmed

    def held_up(channel):
        with gate:
            handle(channel)
    one.queue.confirmed = held_up
    with gate:
        one.queue.basic_enter_room("a", "/chat", "slow")
        # It returned while the listener could not handle the confirmation: by the timeout.
        subscription = one.queue.rooms_wanted.wanted[f"{CHANNEL}:room:/chat:slow"]
        assert subscription.late and not subscription.ready.is_set()
        assert not caught_up.is_set()
    wait_until(caught_up.is_set)


def test_the_listener_subscribes_every_room_again_after_its_connection_is_killed(replica, client):
    one = replica()
    one.connect("a")
    for room in ("r1", "r2", "r3"):
        one.queue.basic_enter_room("a", "/chat", room)
    caught_up = threading.Event()
    one.queue.catch_up = caught_up.set
    address = "%s:%s" % one.queue.listening.connection._sock.getsockname()[:2]
    assert client.client_kill_filter(_type=None, addr=address) == 1
    wait_until(lambda: one.queue.subscriptions == 2 and one.queue.main_confirmed)
    assert [subscribers(client, room) for room in ("r1", "r2", "r3")] == [1, 1, 1]
    assert all(s.ready.is_set() for s in one.queue.rooms_wanted.wanted.values())
    wait_until(caught_up.is_set)
    assert client.publish(f"{CHANNEL}:room:/chat:r2", json.dumps({"method": "emit", "n": 2})) == 1


def test_an_enter_room_from_another_host_subscribes_without_waiting(replica, client):
    """The listener thread handles a remote enter_room itself: it must not wait for its own read."""
    one = replica(subscribe_timeout=30)
    one.connect("local-sid")
    other = RedisQueue(one.queue.redis_url, CHANNEL, write_only=True)
    other.enter_room("local-sid", "/chat", "remote")  # not connected there: published
    wait_until(lambda: "remote" in one.queue.rooms["/chat"], timeout=5)
    wait_until(lambda: subscribers(client, "remote") == 1, timeout=5)


def test_the_rolling_upgrade_mix_hears_every_publisher(replica, client):
    """`subscribe` replicas hear `on` publishers (room channel) and `off` ones (main channel) alike;
    an `off` replica subscribes no room channel."""
    upgrading, old = replica(room_channels="subscribe"), replica(room_channels="off")
    for made in (upgrading, old):
        made.connect("a")
        made.queue.basic_enter_room("a", "/chat", "mixed")
    assert subscribers(client, "mixed") == 1, "only the `subscribe` replica listens to the room"
    for n, mode in enumerate(("on", "subscribe", "off")):
        RedisQueue(upgrading.queue.redis_url, CHANNEL, write_only=True, room_channels=mode).emit(
            "message", {"n": n}, namespace="/chat", room="mixed")
    wait_until(lambda: len(upgrading.received) == 3 and len(old.received) == 2)
    assert [m["data"][0]["n"] for m in upgrading.received] == [0, 1, 2]
    assert [m["data"][0]["n"] for m in old.received] == [1, 2], "an `on` publisher is not heard by `off`"


def test_a_message_the_store_publishes_arrives_as_the_stock_emit_of_it_would(replica, client):
    """realtime.mq.queue.StoreAnnounced: the append script publishes; others see an ordinary emit."""
    from realtime.mq.queue import StoreAnnounced
    from realtime.store import Retention
    from realtime.store.redis import RedisStore
    one, two = replica(), replica()
    two.connect("b")
    two.queue.basic_enter_room("b", "/chat", "lobby")
    stock = RedisQueue(one.queue.redis_url, CHANNEL, write_only=True)
    stock.emit("message", {"n": "stock"}, namespace="/chat", room="lobby")
    wait_until(lambda: len(two.received) == 1)
    relay = StoreAnnounced(one.queue, "/chat")
    announce = relay.announcement("message", "lobby")
    assert announce.channel == f"{CHANNEL}:room:/chat:lobby"
    sent = {"from": {"id": "ana", "name": "Ana"}, "type": "text", "body": "hi", "ts": 1}
    appended = RedisStore(client).append_message("lobby", sent, None, Retention(), announce=announce)
    wait_until(lambda: len(two.received) == 2)
    reference, got = two.received
    assert got["data"] == [appended.message] and got["host_id"] == one.queue.host_id
    assert ({k: v for k, v in got.items() if k not in ("data", "host_id")}
            == {k: v for k, v in reference.items() if k not in ("data", "host_id")})
    # A private message goes to a list of rooms: on the main channel, like any such emit.
    assert relay.announcement("message", ["dm:a:b", "user:a"]).channel == CHANNEL
    here = []
    one.queue._handle_emit = here.append  # the local half takes the sequenced path
    relay.deliver_here("message", appended.message, "lobby")
    assert here == [{**got, "data": [appended.message]}]


def test_our_own_emits_are_dropped_before_decoding_and_our_callbacks_are_not(redis_url, client):
    channel = CHANNEL + "-own"
    queue = RedisQueue(redis_url, channel, retry_max=0.2)
    queue.server = ThreadServer()
    own_emit = json.dumps(queue.envelope("message", {"n": 1}, "lobby", "/chat"))
    callback = json.dumps({"method": "callback", "host_id": queue.host_id, "sid": "s", "namespace": "/chat",
                           "id": 1, "args": []})
    other = json.dumps({**json.loads(own_emit), "host_id": "someone-else"})

    def publish():
        wait_until(lambda: queue.main_confirmed)
        for raw in (own_emit, callback, other):
            client.publish(channel, raw)
    publisher = threading.Thread(target=publish, daemon=True)
    publisher.start()
    listening = queue._listen()
    try:
        seen = [json.loads(next(listening)) for _ in range(2)]
    finally:
        publisher.join(10)
        listening.close()
    assert [(m["method"], m["host_id"]) for m in seen] == [("callback", queue.host_id), ("emit", "someone-else")]
