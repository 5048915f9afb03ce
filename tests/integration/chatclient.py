"""A small blocking Socket.IO client for integration tests, recording every /chat event."""
from __future__ import annotations

import socket
import threading
import time
from typing import Any, Callable
from urllib.parse import urlsplit

import requests
import socketio
from requests.adapters import HTTPAdapter

EVENTS = ("welcome", "message", "stats", "typing", "read", "presence", "token_expiring", "token_revoked",
          "room_left")


class SourceAddressAdapter(HTTPAdapter):
    """Send HTTP requests from a chosen loopback address (nginx hashes on it)."""

    def __init__(self, source_ip: str, **kwargs: Any):
        self.source_ip = source_ip
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["source_address"] = (self.source_ip, 0)
        super().init_poolmanager(*args, **kwargs)


def bound_session(source_ip: str) -> requests.Session:
    """A requests session whose connections leave from `source_ip`."""
    session = requests.Session()
    session.mount("http://", SourceAddressAdapter(source_ip))
    return session


def in_arrival_order(client: socketio.Client) -> None:
    """Handle each received packet in the reading thread, so events are recorded as they arrived.

    python-engineio's client runs every message's handlers in a new thread (`run_async=True`),
    and two threads can record two deliveries in the opposite order of their arrival: a test of
    the server's ordering would then fail on the client's scheduling. Our handlers only record,
    so running an EVENT packet's inline cannot block the reader. Other packets keep their thread
    (a server DISCONNECT makes the client join its own reader, which only works from another).
    """
    eio = client.eio
    trigger = eio._trigger_event

    def inline(event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "message" and args and isinstance(args[0], str) and args[0][:1] == "2":
            kwargs["run_async"] = False
        return trigger(event, *args, **kwargs)
    eio._trigger_event = inline


class ChatClient:
    """Connects to /chat and keeps every received event for assertions."""

    def __init__(self, url: str, token: str | None, transports: list[str] | None = None,
                 source_ip: str | None = None, auth: Any = "default"):
        self.url = url
        self.events: dict[str, list[Any]] = {name: [] for name in EVENTS}
        self.connect_error: Any = None
        self._changed = threading.Condition()
        options: dict[str, Any] = {"reconnection": False}
        if source_ip:
            options["http_session"] = bound_session(source_ip)
            if transports is None or "websocket" in transports:
                # websocket-client takes a ready socket; bind it to the same source address.
                parts = urlsplit(url)
                sock = socket.create_connection((parts.hostname, parts.port), timeout=10,
                                                source_address=(source_ip, 0))
                options["websocket_extra_options"] = {"socket": sock}
        self.sio = socketio.Client(**options)
        in_arrival_order(self.sio)
        for name in EVENTS:
            self.sio.on(name, self._recorder(name), namespace="/chat")
        self.sio.on("connect_error", self._refused, namespace="/chat")
        self.auth = {"token": token} if auth == "default" else auth
        self.transports = transports

    def _recorder(self, name: str) -> Callable[[Any], None]:
        """A handler that appends the payload under `name`."""
        def record(data: Any = None) -> None:
            with self._changed:
                self.events[name].append(data)
                self._changed.notify_all()
        return record

    def _refused(self, data: Any = None) -> None:
        with self._changed:
            self.connect_error = data
            self._changed.notify_all()

    def connect(self, wait_welcome: bool = True) -> "ChatClient":
        """Connect (raising on refusal) and wait for the welcome."""
        self.sio.connect(self.url, namespaces=["/chat"], auth=self.auth,
                         transports=self.transports, wait_timeout=10)
        if wait_welcome:
            self.wait_for("welcome")
        return self

    @property
    def instance(self) -> str:
        """The replica id the server announced in `welcome`."""
        return self.events["welcome"][0]["instance"]

    @property
    def transport(self) -> str:
        """The engine.io transport in use right now."""
        return self.sio.transport()

    def call(self, event: str, payload: Any = None, timeout: float = 10) -> Any:
        """Emit an event and return its ack."""
        return self.sio.call(event, payload, namespace="/chat", timeout=timeout)

    def wait_for(self, name: str, predicate: Callable[[Any], bool] = lambda _: True,
                 timeout: float = 10) -> Any:
        """The first recorded `name` event matching `predicate`, waiting up to `timeout`."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for data in self.events[name]:
                    if predicate(data):
                        return data
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {name!r} event matched within {timeout}s: "
                                         f"{self.events[name][-5:]}")
                self._changed.wait(left)

    def forget(self, name: str) -> None:
        """Drop the recorded `name` events, to wait only for later ones."""
        with self._changed:
            self.events[name].clear()

    def bodies(self, room: str) -> list[Any]:
        """Bodies of the messages received live in `room`, in arrival order."""
        with self._changed:
            return [m["body"] for m in self.events["message"] if m["room"] == room]

    def close(self) -> None:
        """Disconnect quietly."""
        try:
            self.sio.disconnect()
        except Exception:
            pass


def wait_until(check: Callable[[], Any], timeout: float = 10, interval: float = 0.1) -> Any:
    """Poll `check` until it returns something truthy; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last: {value!r})")
        time.sleep(interval)
