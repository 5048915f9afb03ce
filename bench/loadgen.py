"""The load generator of bench/persistence.py: Socket.IO clients on raw websockets, one selector loop.

A python-socketio Client costs a few threads per connection; with 200 receivers on a 2-core
machine the generator would compete with the servers it measures. Here a connection is a socket
and a buffer, and one process serves every receiver (another one, every sender), so the
generator's CPU can be measured apart from the servers'. Engine.IO 4, websocket transport only.
"""
from __future__ import annotations

import base64
import json
import os
import selectors
import socket
import time
from array import array
from collections import Counter
from multiprocessing.connection import Connection
from typing import Any, Iterable

NAMESPACE = "/chat"
EVENT = f"42{NAMESPACE},"
ACK = f"43{NAMESPACE},"
CONNECTED = f"40{NAMESPACE},"
REFUSED = f"44{NAMESPACE},"
MESSAGE = EVENT + '["message",'
BODY_CHARS = 150
DRAIN_TIMEOUT = 10.0


class Closed(ConnectionError):
    """The server closed the websocket."""


def mask_payload(payload: bytes, mask: bytes) -> bytes:
    """XOR with the 4-byte mask, as RFC 6455 requires of client frames (one big-int XOR)."""
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


def frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One final, masked client frame."""
    n = len(payload)
    if n < 126:
        header = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        header = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        header = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    mask = os.urandom(4)
    return header + mask + mask_payload(payload, mask)


class WsClient:
    """One Socket.IO client of the /chat namespace on one websocket."""

    def __init__(self, host: str, port: int, timeout: float = 15.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.fragments: list[bytes] = []
        self.upgrade(host, port)

    def upgrade(self, host: str, port: int) -> None:
        """The websocket handshake, straight to the websocket transport (no polling first)."""
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n"
                           f"Host: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        while b"\r\n\r\n" not in self.buf:
            self.fill()
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"websocket upgrade refused: {head.decode(errors='replace')}")
        self.buf = bytearray(rest)

    def fill(self) -> None:
        """Read what the socket has (blocking unless the socket is non-blocking)."""
        data = self.sock.recv(262144)
        if not data:
            raise Closed("server closed the connection")
        self.buf += data

    def send(self, text: str) -> None:
        """Send one Engine.IO packet as a text frame."""
        self.sock.sendall(frame(text.encode()))

    def packets(self) -> list[str]:
        """Complete Engine.IO packets in the buffer; pings and control frames are answered here."""
        texts = []
        for text in self.texts():
            if text == "2":
                self.send("3")  # Engine.IO heartbeat: the server drops us without the pong
            else:
                texts.append(text)
        return texts

    def texts(self) -> Iterable[str]:
        """Parse whole frames off the buffer (server frames are never masked)."""
        buf, pos, out = self.buf, 0, []
        while len(buf) - pos >= 2:
            first, length = buf[pos], buf[pos + 1] & 0x7F
            head = 2 if length < 126 else 4 if length == 126 else 10
            if len(buf) - pos < head:
                break
            if head > 2:
                length = int.from_bytes(buf[pos + 2:pos + head], "big")
            end = pos + head + length
            if len(buf) < end:
                break
            self.control_or_data(first, bytes(buf[pos + head:end]), out)
            pos = end
        del buf[:pos]
        return out

    def control_or_data(self, first: int, payload: bytes, out: list[str]) -> None:
        """Collect data frames (reassembling fragments); answer pings; raise on close."""
        opcode = first & 0x0F
        if opcode in (0x0, 0x1, 0x2):
            self.fragments.append(payload)
            if first & 0x80:
                out.append(b"".join(self.fragments).decode())
                self.fragments = []
        elif opcode == 0x8:
            raise Closed(f"close frame {payload[:2].hex()}")
        elif opcode == 0x9:
            self.sock.sendall(frame(payload, 0xA))

    def wait_for(self, *prefixes: str) -> str:
        """Block until a packet starting with one of `prefixes` arrives; drop the others."""
        while True:
            for text in self.packets():
                if text.startswith(prefixes):
                    return text
            self.fill()

    def join(self, auth: Any, room: str) -> None:
        """Open the /chat namespace with `auth`, then join `room` and check the ack."""
        self.wait_for("0{")
        self.send(CONNECTED + json.dumps(auth))
        reply = self.wait_for(CONNECTED, REFUSED)
        if reply.startswith(REFUSED):
            raise ConnectionError(f"connection refused: {reply[len(REFUSED):]}")
        self.send(EVENT + "1" + json.dumps(["join", {"room": room}]))
        ack = json.loads(self.wait_for(ACK + "1[")[len(ACK) + 1:])[0]
        if not ack.get("ok"):
            raise ConnectionError(f"join refused: {ack}")

    def close(self) -> None:
        """Close the TCP connection (the server sees a disconnect)."""
        try:
            self.sock.close()
        except OSError:
            pass


def connect_all(host: str, port: int, tokens: list[str | None], room: str) -> list[WsClient]:
    """Connect and join one client per token, one after the other, then go non-blocking."""
    clients = []
    for token in tokens:
        client = WsClient(host, port)
        client.join({"token": token} if token else {}, room)
        clients.append(client)
    for client in clients:
        client.sock.setblocking(False)
    return clients


def selector_for(clients: list[WsClient]) -> selectors.BaseSelector:
    """A selector with every client registered for reading."""
    selector = selectors.DefaultSelector()
    for client in clients:
        selector.register(client.sock, selectors.EVENT_READ, client)
    return selector


def readable(selector: selectors.BaseSelector, timeout: float) -> list[tuple[WsClient, list[str]]]:
    """The packets of every client with data, within `timeout` seconds."""
    ready = []
    for key, _ in selector.select(timeout):
        client = key.data
        try:
            client.fill()
        except BlockingIOError:
            continue
        ready.append((client, client.packets()))
    return ready


def body(sender: int, seq: int) -> str:
    """A ~150-character text: sender, sequence number and send time, padded."""
    head = f"{sender}:{seq}:{time.time():.6f}:"
    return head + "x" * max(0, BODY_CHARS - len(head))


def parse_message(text: str) -> tuple[int, int, float, int | None]:
    """(sender, seq, sent at, room id or None) of a `message` packet."""
    message = json.loads(text[len(EVENT):])[1]
    sender, seq, sent, _ = message["body"].split(":", 3)
    return int(sender), int(seq), float(sent), message.get("id")


# ---------------------------------------------------------------------------------------------
# receivers


class Tally:
    """What the receivers got: unique keys per client, duplicates, reorders, latencies."""

    def __init__(self, count: int):
        self.got: list[set[int]] = [set() for _ in range(count)]
        self.last_id = [0] * count
        self.latencies = array("d")
        self.duplicates = self.reorders = self.frames = 0

    def take(self, index: int, text: str, now: float) -> None:
        """Count one `message` packet received by client `index`."""
        sender, seq, sent, message_id = parse_message(text)
        self.frames += 1
        key = sender * 10_000_000 + seq
        if key in self.got[index]:
            self.duplicates += 1
            return
        self.got[index].add(key)
        self.latencies.append((now - sent) * 1000)
        if message_id is not None:
            # A room id below one already seen on this connection: `since = highest id` would skip it.
            if message_id < self.last_id[index]:
                self.reorders += 1
            self.last_id[index] = max(self.last_id[index], message_id)

    def missing(self, expected: set[int]) -> int:
        """Expected deliveries not received, over every client."""
        return sum(len(expected - got) for got in self.got)

    def summary(self, expected: set[int]) -> dict[str, Any]:
        """The figures the orchestrator prints."""
        ordered = sorted(self.latencies)
        pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0
        received = sum(len(got & expected) for got in self.got)
        return {"expected": len(expected) * len(self.got), "received": received,
                "missing": self.missing(expected), "duplicates": self.duplicates,
                "unexpected": sum(len(got - expected) for got in self.got),
                "reorders": self.reorders, "frames": self.frames,
                "p50": pick(0.50), "p99": pick(0.99), "max": ordered[-1] if ordered else 0.0}


def receive(host: str, port: int, room: str, tokens: list[str | None], ctl: Connection) -> None:
    """Receivers' process: connect and join, report ready, count messages until told to drain.

    Commands from the orchestrator: ("expect", keys the senders had acknowledged), ("close",).
    """
    try:
        clients = connect_all(host, port, tokens, room)
    except Exception as exc:  # reported to the orchestrator, which fails the run with it
        ctl.send(("error", f"receivers could not connect: {exc!r}"))
        return
    try:
        ctl.send(("ready", len(clients)))
        summary = count_until_drained(clients, ctl)
        if summary is not None:
            ctl.send(("done", summary))
            wait_for_close(ctl)  # stay connected until the orchestrator has read the CPU counters
    except Exception as exc:
        ctl.send(("error", f"receivers failed: {exc!r}"))
    finally:
        for client in clients:
            client.close()


def count_until_drained(clients: list[WsClient], ctl: Connection) -> dict[str, Any] | None:
    """Count `message` packets until every expected one arrived (or a timeout); None on close."""
    index = {id(client): n for n, client in enumerate(clients)}
    tally, selector = Tally(len(clients)), selector_for(clients)
    expected, deadline, next_check = None, 0.0, 0.0
    while True:
        for client, texts in readable(selector, 0.05):
            now = time.time()
            for text in texts:
                if text.startswith(MESSAGE):
                    tally.take(index[id(client)], text, now)
        if expected is None and ctl.poll():
            command = ctl.recv()
            if command[0] == "close":
                return None
            expected, deadline = set(command[1]), time.monotonic() + DRAIN_TIMEOUT
        # Comparing sets is not free: look at most every 50 ms while draining.
        if expected is not None and time.monotonic() >= next_check:
            next_check = time.monotonic() + 0.05
            if not tally.missing(expected) or time.monotonic() > deadline:
                return tally.summary(expected)


def wait_for_close(ctl: Connection, timeout: float = 60.0) -> None:
    """Block until the orchestrator says close (or goes quiet for `timeout` seconds)."""
    while ctl.poll(timeout):
        if ctl.recv()[0] == "close":
            return


# ---------------------------------------------------------------------------------------------
# senders


class Outbox:
    """Sends in flight and their outcome, per sender."""

    def __init__(self, count: int):
        self.seq = [0] * count
        self.pending: dict[tuple[int, int], int] = {}  # (sender, ack id) -> seq
        self.acked: list[int] = []  # keys (sender * 10M + seq) acknowledged ok
        self.errors: Counter[str] = Counter()
        self.echoes = 0
        self.lag_max = 0.0

    def send(self, sender: int, client: WsClient, room: str) -> None:
        """Emit one message with an ack id (the ack id is the sequence number + 1)."""
        seq = self.seq[sender]
        self.seq[sender] += 1
        payload = {"room": room, "type": "text", "body": body(sender, seq),
                   "client_id": f"bench-{sender}-{seq}"}
        self.pending[(sender, seq + 1)] = seq
        client.send(EVENT + str(seq + 1) + json.dumps(["send", payload], separators=(",", ":")))

    def take(self, sender: int, text: str) -> None:
        """Count an ack or an echo of our own broadcast."""
        if text.startswith(MESSAGE):
            self.echoes += 1
        elif text.startswith(ACK):
            digits = text[len(ACK):text.index("[")]
            seq = self.pending.pop((sender, int(digits)), None)
            reply = json.loads(text[len(ACK) + len(digits):])[0]
            if seq is None:
                self.errors["unknown_ack"] += 1
            elif isinstance(reply, dict) and reply.get("ok"):
                self.acked.append(sender * 10_000_000 + seq)
            else:
                self.errors[str((reply.get("error") or {}).get("code", reply))] += 1

    def summary(self) -> dict[str, Any]:
        """The figures the orchestrator needs."""
        return {"sent": sum(self.seq), "acked": self.acked, "unacked": len(self.pending),
                "errors": dict(self.errors), "echoes": self.echoes, "lag_max": self.lag_max}


def pump(selector: selectors.BaseSelector, index: dict[int, int], outbox: Outbox,
         timeout: float) -> None:
    """Read acks and echoes for up to `timeout` seconds."""
    for client, texts in readable(selector, max(0.0, timeout)):
        for text in texts:
            outbox.take(index[id(client)], text)


def send(host: str, port: int, room: str, tokens: list[str | None], ctl: Connection) -> None:
    """Senders' process: connect and join, then send at a fixed rate, round-robin.

    Commands from the orchestrator: ("go", rate per second, seconds), ("close",).
    """
    try:
        clients = connect_all(host, port, tokens, room)
    except Exception as exc:
        ctl.send(("error", f"senders could not connect: {exc!r}"))
        return
    index = {id(client): n for n, client in enumerate(clients)}
    selector, outbox = selector_for(clients), Outbox(len(clients))
    try:
        ctl.send(("ready", len(clients)))
        command = ctl.recv()
        if command[0] == "go":
            send_at_rate(clients, selector, index, outbox, room, *command[1:])
            ctl.send(("done", outbox.summary()))
            # Keep reading (echoes would otherwise fill the socket buffers) until told to close.
            while not ctl.poll(0):
                pump(selector, index, outbox, 0.05)
    except Exception as exc:
        ctl.send(("error", f"senders failed: {exc!r}"))
    finally:
        for client in clients:
            client.close()


def send_at_rate(clients: list[WsClient], selector: selectors.BaseSelector, index: dict[int, int],
                 outbox: Outbox, room: str, rate: float, duration: float) -> None:
    """`rate` messages a second for `duration` seconds on a fixed schedule, then wait for acks."""
    start = time.monotonic()
    for k in range(int(rate * duration)):
        due = start + k / rate
        while (wait := due - time.monotonic()) > 0:
            pump(selector, index, outbox, wait)
        outbox.lag_max = max(outbox.lag_max, time.monotonic() - due)
        outbox.send(k % len(clients), clients[k % len(clients)], room)
    drain_until = time.monotonic() + DRAIN_TIMEOUT
    while outbox.pending and time.monotonic() < drain_until:
        pump(selector, index, outbox, 0.05)
