"""A steady message stream through nginx: reconnecting readers and idempotent senders.

Readers behave like the browser demo: `reconnection=True`, and on every (re)connect they re-join
the room with `since` = the last id they saw, merging `missed` and deduplicating by id. Senders
send every ~70 ms with a unique `client_id` and resend the same one after an error or a timeout
until it is acknowledged (or the stream stops).
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import socketio

from chatclient import bound_session


def in_order(sio: socketio.Client) -> None:
    """Handle packets on the read loop, in arrival order (order is checked).

    engine.io's client hands every packet to a new thread, so handlers could see them in any
    order; a browser's single event loop does not. Ack callbacks still wake the calling thread.
    """
    trigger = sio.eio._trigger_event

    def ordered(event, *args, **kwargs):
        if event == "message":
            kwargs["run_async"] = False
        return trigger(event, *args, **kwargs)
    sio.eio._trigger_event = ordered


@dataclass
class Epoch:
    """One connection of a reader: where it landed and what it got live, in arrival order."""

    instance: str | None = None
    live: list[int] = field(default_factory=list)


class Reader:
    """A reconnecting client that keeps every message id it saw, live or recovered."""

    def __init__(self, url: str, token: str, source_ip: str, room: str):
        self.room = room
        self.seen: dict[int, dict] = {}
        self.raw_duplicates = 0  # a message seen again (live twice, or live and in `missed`)
        self.live_count = 0
        self.recovered = 0  # first seen through `missed` (or a history page)
        self.epochs: list[Epoch] = []
        self.joins: list[float] = []  # monotonic time of every successful (re)join
        self.drained = False
        self.lock = threading.Lock()
        self.sio = socketio.Client(reconnection=True, reconnection_delay=0.2, reconnection_delay_max=1,
                                   randomization_factor=0.2, http_session=bound_session(source_ip))
        in_order(self.sio)
        self.sio.on("connect", self._connected, namespace="/chat")
        self.sio.on("welcome", self._welcome, namespace="/chat")
        self.sio.on("message", self._message, namespace="/chat")
        self.sio.on("draining", lambda _d=None: setattr(self, "drained", True), namespace="/chat")
        # Polling only: every request leaves from `source_ip`, so nginx's hash keeps it sticky
        # (a websocket upgrade would leave from another address and land on another replica).
        self.sio.connect(url, namespaces=["/chat"], auth={"token": token}, transports=["polling"],
                         wait_timeout=10)

    @property
    def instance(self) -> str | None:
        return self.epochs[-1].instance if self.epochs else None

    def _connected(self) -> None:
        self.sio.start_background_task(self._rejoin)

    def _welcome(self, data: dict) -> None:
        # The server emits `welcome` from its connect handler: it arrives before `connect`.
        with self.lock:
            self.epochs.append(Epoch(data["instance"]))

    def _keep(self, message: dict) -> bool:
        """Record a message; False if it was a duplicate."""
        if message["id"] in self.seen:
            self.raw_duplicates += 1
            return False
        self.seen[message["id"]] = message
        return True

    def _message(self, message: dict) -> None:
        if message.get("room") != self.room:
            return
        with self.lock:
            self.epochs[-1].live.append(message["id"])
            if self._keep(message):
                self.live_count += 1

    def _rejoin(self) -> None:
        """Join with `since`; page through history if `missed` was truncated."""
        for _ in range(20):
            try:
                since = max(self.seen, default=0)
                ack = self.sio.call("join", {"room": self.room, "since": since}, namespace="/chat", timeout=5)
            except Exception:  # disconnected again, or the ack timed out: retry while connected
                if not self.sio.connected:
                    return
                time.sleep(0.3)
                continue
            if ack.get("ok"):
                self._merge(ack.get("missed", []))
                if ack.get("truncated"):
                    self._page_history()
                self.joins.append(time.monotonic())
                return
            time.sleep(float(ack.get("error", {}).get("retry_after") or 0.3))

    def _merge(self, messages: list[dict]) -> None:
        with self.lock:
            for message in messages:
                if self._keep(message):
                    self.recovered += 1

    def _page_history(self) -> None:
        while True:
            after = max(self.seen, default=0)
            ack = self.sio.call("history", {"room": self.room, "after": after, "limit": 100},
                                namespace="/chat", timeout=5)
            if not ack.get("ok") or not ack["messages"]:
                return
            self._merge(ack["messages"])

    def out_of_order(self) -> int:
        """Live deliveries, within one connection, whose id is not above the previous one."""
        return sum(1 for e in self.epochs for a, b in zip(e.live, e.live[1:]) if b <= a)

    def close(self) -> None:
        try:
            self.sio.disconnect()
        except Exception:
            pass


@dataclass
class SendLog:
    """What one sender did."""

    attempts: int = 0
    acked: dict[str, int] = field(default_factory=dict)  # client_id -> message id
    errors: dict[str, int] = field(default_factory=dict)  # error code (or exception name) -> count
    unacked: list[str] = field(default_factory=list)  # still unacknowledged when the stream stopped
    ack_times: list[tuple[float, int]] = field(default_factory=list)  # (monotonic, message id)
    latencies: list[float] = field(default_factory=list)  # seconds from each call to its ack (ok or not)
    outcomes: list[str] = field(default_factory=list)  # each error ack's `outcome`, when it has one
    failures: list[tuple[float, str]] = field(default_factory=list)  # (monotonic, exception) of calls unanswered


class Sender(Reader):
    """A reader that also sends, from its own thread, until `stop()`."""

    def __init__(self, url: str, token: str, source_ip: str, room: str, name: str,
                 interval: float = 0.07, ack_timeout: float = 3):
        super().__init__(url, token, source_ip, room)
        self.name, self.interval, self.ack_timeout = name, interval, ack_timeout
        self.log = SendLog()
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"sender-{name}", daemon=True)

    def start(self) -> "Sender":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=15)

    def _run(self) -> None:
        n = 0
        while not self.stopping.is_set():
            n += 1
            client_id = f"{self.name}-{n}"
            if not self._send_until_acked(client_id):
                self.log.unacked.append(client_id)
                return
            time.sleep(self.interval)

    def _count(self, code: str) -> None:
        self.log.errors[code] = self.log.errors.get(code, 0) + 1

    def _send_until_acked(self, client_id: str) -> bool:
        payload = {"room": self.room, "type": "text", "body": f"{client_id} body", "client_id": client_id}
        while not self.stopping.is_set():
            self.log.attempts += 1
            called = time.monotonic()
            try:
                ack: Any = self.sio.call("send", payload, namespace="/chat", timeout=self.ack_timeout)
            except Exception as exc:  # timeout, or not connected right now
                self._count(type(exc).__name__)
                self.log.failures.append((called, type(exc).__name__))
                time.sleep(0.2)
                continue
            self.log.latencies.append(time.monotonic() - called)
            if "outcome" in ack.get("error", {}):
                self.log.outcomes.append(ack["error"]["outcome"])
            if ack.get("ok"):
                self.log.acked[client_id] = ack["message"]["id"]
                self.log.ack_times.append((time.monotonic(), ack["message"]["id"]))
                return True
            error = ack.get("error", {})
            self._count(error.get("code", "?"))
            time.sleep(min(1.0, float(error.get("retry_after") or 0.2)))
        return False


SOURCES = [f"127.0.0.{n}" for n in range(11, 30)]


class Stream:
    """Readers and senders on one room through nginx."""

    def __init__(self, cluster, room: str, readers: int = 6, senders: int = 2,
                 sources: list[str] | None = None, **sending: Any):
        self.room = room
        ips = iter(sources or SOURCES)
        self.readers = [Reader(cluster.url, cluster.token(f"{room}-r{n}"), next(ips), room)
                        for n in range(readers)]
        self.senders = [Sender(cluster.url, cluster.token(f"{room}-s{n}"), next(ips), room, f"{room}-s{n}",
                               **sending) for n in range(senders)]
        self.started = time.monotonic()

    @property
    def clients(self) -> list[Reader]:
        return [*self.readers, *self.senders]

    def wait_joined(self, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while not all(c.joins for c in self.clients):
            assert time.monotonic() < deadline, "not every client joined the room"
            time.sleep(0.05)

    def start(self) -> "Stream":
        self.wait_joined()
        for sender in self.senders:
            sender.start()
        return self

    def stop(self) -> None:
        for sender in self.senders:
            sender.stopping.set()
        for sender in self.senders:
            sender.stop()

    def acked(self) -> dict[int, str]:
        """Acknowledged message id -> client_id, over all senders."""
        return {mid: cid for s in self.senders for cid, mid in s.log.acked.items()}

    def missing(self) -> dict[str, list[int]]:
        """Per client (by source), acknowledged ids it has not seen."""
        acked = set(self.acked())
        return {f"{i}:{c.instance}": sorted(acked - set(c.seen)) for i, c in enumerate(self.clients)
                if acked - set(c.seen)}

    def wait_caught_up(self, timeout: float = 20) -> dict[str, list[int]]:
        """Wait until every client saw every acknowledged message; what is still missing."""
        deadline = time.monotonic() + timeout
        while (missing := self.missing()) and time.monotonic() < deadline:
            time.sleep(0.2)
        return missing

    def acked_after(self, moment: float) -> float | None:
        """Seconds from `moment` to the first acknowledgement after it (None: there was none)."""
        times = [t for s in self.senders for t, _ in s.log.ack_times if t > moment]
        return min(times) - moment if times else None

    def figures(self) -> dict[str, Any]:
        acked = self.acked()
        errors: dict[str, int] = {}
        for sender in self.senders:
            for code, count in sender.log.errors.items():
                errors[code] = errors.get(code, 0) + count
        return {"send_attempts": sum(s.log.attempts for s in self.senders),
                "messages_acked": len(acked),
                "unacked_at_stop": sum(len(s.log.unacked) for s in self.senders),
                "send_errors": errors,
                "delivered_live": sum(c.live_count for c in self.clients),
                "recovered_via_missed": sum(c.recovered for c in self.clients),
                "raw_duplicates": sum(c.raw_duplicates for c in self.clients),
                "out_of_order_live": sum(c.out_of_order() for c in self.clients),
                "reconnects": sum(len(c.epochs) - 1 for c in self.clients),
                "drain_notices": sum(c.drained for c in self.clients)}

    def close(self) -> None:
        self.stop()
        for client in self.clients:
            client.close()
