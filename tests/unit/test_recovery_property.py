"""Property: whatever the interleaving of sends, resends, drops and rejoins, every client ends up
with exactly the acknowledged messages, each once, in id order, on the memory and Redis backends.

The clients behave like the browser demo (static/app.js): they keep the highest message id seen
(send acks included), rejoin with `since` = that id, deduplicate by id, and keep unacknowledged
sends in an outbox that they flush, with the same client_id, after every join.
"""
from __future__ import annotations

import itertools
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import flask_socketio.test_client
import pytest
import redis
from flask_jwt_extended import create_access_token
from hypothesis import HealthCheck, given, settings, strategies as st

from realtime.extensions import socketio

# Two tabs of one user (delivery is per connection, idempotency per user) and two other users.
CLIENTS = (("Ana", "tab1"), ("Ana", "tab2"), ("Bo", "phone"), ("Cy", "laptop"))
ROOM_NUMBERS = itertools.count(1)


@dataclass(frozen=True)
class Send:
    """Client `who` sends a new message (offline: it waits in the outbox); `lost`: the connection
    drops before the ack and the live event reach the client, which keeps the message to resend."""

    who: int
    lost: bool = False


@dataclass(frozen=True)
class Resend:
    """Client `who` sends again an earlier client_id (the `pick`-th, modulo), as after a timeout."""

    who: int
    pick: int = 0


@dataclass(frozen=True)
class Drop:
    """Client `who` loses its connection (nothing happens if it is offline)."""

    who: int


@dataclass(frozen=True)
class Rejoin:
    """Client `who` reconnects and joins with `since`; if it is online, it retries the join."""

    who: int


WHO = st.integers(0, len(CLIENTS) - 1)
ACTIONS = st.one_of(
    st.builds(Send, WHO, st.sampled_from([False, False, True])),
    st.builds(Resend, WHO, st.integers(0, 3)),
    st.builds(Drop, WHO),
    st.builds(Rejoin, WHO),
)
# Short scripts, but not trivial ones: hypothesis favours tiny lists unless told otherwise.
SCRIPTS = st.lists(ACTIONS, min_size=8, max_size=30)


@dataclass
class Client:
    """What one client (one browser tab) knows, kept the way the demo keeps it."""

    user: str
    tab: str
    sio: Any = None
    joined_once: bool = False
    seen: dict[int, dict] = field(default_factory=dict)  # from live events and join acks, by id
    live: list[int] = field(default_factory=list)  # ids of live events, over every connection
    last_live: int = 0  # highest live id on the current connection
    last_id: int = 0  # highest id seen anywhere, send acks included (the demo's lastIds)
    outbox: dict[str, str] = field(default_factory=dict)  # client_id -> body, not acked yet
    confirmed: list[str] = field(default_factory=list)  # client_ids whose ack arrived

    @property
    def name(self) -> str:
        """For assertion messages."""
        return f"{self.user}/{self.tab}"


def call(sio: Any, event: str, payload: Any) -> Any:
    """Emit an event and return its ack."""
    return sio.emit(event, payload, namespace="/chat", callback=True)


class Scenario:
    """One room on one app, the clients in it, and what the server acknowledged."""

    def __init__(self, app: Any, room: str):
        self.app, self.room = app, room
        self.store = app.extensions["realtime"].store
        self.clients = [Client(user, tab) for user, tab in CLIENTS]
        self.acked: dict[int, dict] = {}  # every message the server acknowledged, by id
        self.first_ack: dict[str, dict] = {}  # client_id -> the message its first send stored
        self.numbers = itertools.count(1)
        with app.app_context():
            self.tokens = {user: create_access_token(identity=user.lower(),
                                                     additional_claims={"name": user})
                           for user, _ in CLIENTS}

    def run(self, script: list[Any]) -> None:
        """Everyone joins, the script plays, everyone comes back; then check what each one has."""
        try:
            for client in self.clients:
                self.rejoin(client)
            for action in script:
                self.apply(action)
            for client in self.clients:
                if client.sio is None:
                    self.rejoin(client)
            self.check_recovered()
        finally:
            for client in self.clients:
                # Cleanup only: a check here could mask the failure being reported.
                self.disconnect(client, deliver=False)

    def apply(self, action: Any) -> None:
        """Play one action, then make sure no connection got a message it should not have."""
        client = self.clients[action.who]
        if isinstance(action, Send):
            self.send_new(client, action.lost)
        elif isinstance(action, Resend):
            self.resend(client, action.pick)
        elif isinstance(action, Drop):
            self.disconnect(client)
        else:
            self.rejoin(client)
        for other in self.online():
            assert self.receive(other) == [], f"{other.name} got a message nobody sent"

    def online(self) -> list[Client]:
        """Clients with a live connection."""
        return [c for c in self.clients if c.sio is not None]

    # -- what a client does

    def rejoin(self, client: Client) -> None:
        """Connect if offline, join with `since` (after the first time), then flush the outbox."""
        if client.sio is None:
            client.sio = socketio.test_client(self.app, namespace="/chat",
                                              auth={"token": self.tokens[client.user]})
            assert client.sio.is_connected("/chat"), client.name
            client.last_live = 0
        payload: dict[str, Any] = {"room": self.room}
        if client.joined_once:
            payload["since"] = client.last_id
        ack = call(client.sio, "join", payload)
        assert ack["ok"] is True, ack
        assert ack["truncated"] is False, ack
        self.take_missed(client, ack["missed"], payload.get("since", 0))
        client.joined_once = True
        for client_id in list(client.outbox):
            self.send(client, client_id, lost=False)

    def send_new(self, client: Client, lost: bool) -> None:
        """A new message with a fresh client_id; it waits in the outbox while offline."""
        client_id = f"{client.user}-{client.tab}-{uuid.uuid4().hex[:8]}"
        client.outbox[client_id] = f"{client.name} #{next(self.numbers)}"
        if client.sio is not None:
            self.send(client, client_id, lost)

    def resend(self, client: Client, pick: int) -> None:
        """Send again an unacknowledged client_id, else one whose ack already came (a late ack)."""
        candidates = list(client.outbox) or client.confirmed
        if client.sio is not None and candidates:
            self.send(client, candidates[pick % len(candidates)], lost=False)

    def send(self, client: Client, client_id: str, lost: bool) -> None:
        """Send one message and check its ack and who received it live."""
        body = client.outbox.get(client_id) or self.first_ack[client_id]["body"]
        newest = self.newest()
        ack = call(client.sio, "send", {"room": self.room, "type": "text", "body": body,
                                        "client_id": client_id})
        assert ack["ok"] is True, ack
        message = ack["message"]
        if client_id in self.first_ack:
            self.check_resend(client_id, message, newest)
        else:
            self.check_new(client_id, message, newest)
        if lost:
            self.disconnect(client, deliver=False)  # neither the ack nor the live event arrive
            return
        client.outbox.pop(client_id, None)
        if client_id not in client.confirmed:
            client.confirmed.append(client_id)
        client.last_id = max(client.last_id, message["id"])

    def disconnect(self, client: Client, deliver: bool = True) -> None:
        """Close the client's connection; with `deliver`, what already reached it is kept."""
        if client.sio is None:
            return
        if deliver:
            self.receive(client)
        if client.sio.is_connected("/chat"):
            client.sio.disconnect(namespace="/chat")
        client.sio = None

    def receive(self, client: Client) -> list[dict]:
        """The `message` events that reached the client since the last look, taken in."""
        got = [e["args"] for e in client.sio.get_received("/chat") if e["name"] == "message"]
        for message in got:
            # `since` = highest id seen is sound only if a connection gets a room's ids in order.
            assert message["id"] > client.last_live, (client.name, message["id"], client.last_live)
            client.last_live = message["id"]
            client.live.append(message["id"])
            self.see(client, message)
        return got

    def take_missed(self, client: Client, missed: list[dict], since: int) -> None:
        """Take in a join ack's `missed`: ids after `since`, oldest first."""
        ids = [m["id"] for m in missed]
        assert ids == sorted(set(ids)) and all(i > since for i in ids), (client.name, since, ids)
        for message in missed:
            self.see(client, message)

    @staticmethod
    def see(client: Client, message: dict) -> None:
        """Deduplicate by id like the demo; the same id must always be the same message."""
        known = client.seen.setdefault(message["id"], message)
        assert known == message, (client.name, known, message)
        client.last_id = max(client.last_id, message["id"])

    # -- what the server must have done

    def newest(self) -> int:
        """The room's newest id in the store."""
        return self.store.room_bounds(self.room)[1]

    def check_new(self, client_id: str, message: dict, newest: int) -> None:
        """A first send: the next id, and one live event on every connection in the room."""
        assert message["id"] == newest + 1 == len(self.acked) + 1, (message, newest)
        assert message["room"] == self.room and message["client_id"] == client_id
        self.acked[message["id"]] = message
        self.first_ack[client_id] = message
        for member in self.online():
            assert self.receive(member) == [message], member.name

    def check_resend(self, client_id: str, message: dict, newest: int) -> None:
        """A resend: the original message back, nothing stored, nothing delivered."""
        assert message == self.first_ack[client_id]
        assert self.newest() == newest, "an idempotent resend stored a new message"
        for member in self.online():
            assert self.receive(member) == [], f"a resend was delivered again to {member.name}"

    def check_recovered(self) -> None:
        """Each client holds exactly the acknowledged messages, none received live twice."""
        expected = [self.acked[i] for i in sorted(self.acked)]
        assert [m["id"] for m in expected] == list(range(1, len(expected) + 1)), "gap in the ids"
        assert self.store.messages_after(self.room, 0, 1000) == expected
        for client in self.clients:
            assert [client.seen[i] for i in sorted(client.seen)] == expected, client.name
            assert len(client.live) == len(set(client.live)), (client.name, client.live)


class NotAQueue:
    """Stands in for PubSubManager in the test client's refusal check; nothing is one."""


def allow_message_queue(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Let Flask-SocketIO's test client drive an app whose manager is the Redis message queue;
    returns a function that stops the queue's listener thread."""
    # The test client refuses any pub/sub manager because events from other hosts would reach it
    # asynchronously. Here every connection is in this process, and the manager delivers to its
    # own clients before it publishes, so delivery stays synchronous; the publish still goes to
    # the real Redis, and the listener must ignore what this host published.
    monkeypatch.setattr(flask_socketio.test_client, "PubSubManager", NotAQueue)
    manager = socketio.server.manager
    start, listen, stopping = manager.initialize, manager._listen, threading.Event()

    def initialize_once() -> None:
        """Start the queue's listener thread once, not once per test client."""
        if not getattr(manager, "thread", None):
            start()

    def listen_until_stopped() -> Iterator[Any]:
        """The listener's stream of messages, ending at the first one after `stopping` is set."""
        for data in listen():
            if stopping.is_set():
                return
            yield data

    def stop() -> None:
        """End the listener thread, so it neither outlives the test nor logs when Redis stops."""
        thread = getattr(manager, "thread", None)
        if thread is None:
            return
        stopping.set()
        waker = redis.Redis.from_url(manager.redis_url)
        try:
            waker.publish(manager.channel, "stop")  # wakes its blocked read
        finally:
            waker.close()
        thread.join(10)
        manager.pubsub.close()

    monkeypatch.setattr(manager, "initialize", initialize_once)
    monkeypatch.setattr(manager, "_listen", listen_until_stopped)
    return stop


@pytest.fixture(params=["memory", "redis"])
def chat_app(request, app_factory_with, monkeypatch):
    """The app on each backend; with Redis, also the Redis message queue, on its own channel."""
    if request.param == "memory":
        yield app_factory_with()
        return
    app = app_factory_with(REDIS_URL=request.getfixturevalue("redis_url"),
                           MQ_CHANNEL=f"recovery-property-{uuid.uuid4().hex}")
    stop_listener = allow_message_queue(monkeypatch)
    yield app
    stop_listener()


def test_every_client_recovers_exactly_the_acknowledged_messages(chat_app):
    """Random interleavings of sends, resends, drops and rejoins, each in a fresh room."""
    @settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(script=SCRIPTS)
    def check(script):
        Scenario(chat_app, f"recovery-{next(ROOM_NUMBERS)}").run(script)
    check()
