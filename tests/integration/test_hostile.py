"""Hostile or broken connections against a real gunicorn replica, with raw sockets.

One embedded replica with short limits: a 2 s namespace-connect timeout, 4 connections per
address, a 256 KiB send buffer, messages up to 50 000 characters (so a few fill the buffer); every
test runs against a replica with the transport adapters (realtime/transport/wsdirect.py) and one without.
Each test talks from its own loopback source address, so per-address counts do not mix.
"""
from __future__ import annotations

import json
import re
import socket
import struct
import time

import pytest
import requests
import websocket

from chatclient import ChatClient, bound_session, wait_until
from lonereplica import demo_token, lone_replica
from realtime.devcluster import clean_environ

pytestmark = pytest.mark.integration

CONNECT_TIMEOUT = 2
PER_ADDRESS = 4
SEND_BUFFER = 256 * 1024


@pytest.fixture(scope="module", params=["fast", "stock"])
def replica(request, tmp_path_factory, start_processes):
    """One embedded replica with the guards' limits set low, on the direct or the stock path."""
    workdir = tmp_path_factory.mktemp("hostile")
    env = {**clean_environ(), "REALTIME_ENV_FILE": str(workdir / "no.env"),
           "REALTIME_FAST_PATHS": "on" if request.param == "fast" else "off",
           "REALTIME_CONNECT_TIMEOUT": str(CONNECT_TIMEOUT),
           "REALTIME_MAX_CONNECTIONS_PER_ADDRESS": str(PER_ADDRESS),
           "REALTIME_MAX_SEND_BUFFER": str(SEND_BUFFER),
           "REALTIME_MESSAGE_MAX_CHARS": "50000",
           "REALTIME_RATE_LIMITS": "connect=10/minute; send=100000/minute; join=100000/minute",
           "REALTIME_HTTP_RATE_LIMIT": "100000/minute", "REALTIME_LOGIN_RATE_LIMIT": "100000/minute"}
    with lone_replica(workdir, env, "hostile", start_processes) as server:
        server.fast_paths = env["REALTIME_FAST_PATHS"]
        yield server


def token(replica, name: str) -> str:
    """A demo token."""
    return demo_token(replica.url, name)


def polling_chat(replica, address: str, name: str) -> tuple[requests.Session, str]:
    """A long-polling session from `address` connected to /chat as `name`, and its URL."""
    http = bound_session(address)
    base = replica.url + "/socket.io/?EIO=4&transport=polling"
    sid = json.loads(http.get(base, timeout=5).text[1:])["sid"]
    url = f"{base}&sid={sid}"
    assert http.post(url, data="40/chat," + json.dumps({"token": token(replica, name)}), timeout=5).ok
    assert "40/chat," in http.get(url, timeout=5).text
    return http, url


def refused(replica, reason: str) -> float:
    """realtime_connections_refused_total{reason} now."""
    text = requests.get(replica.url + "/metrics", timeout=5).text
    found = re.search(r'^realtime_connections_refused_total\{reason="%s"\} (\S+)$' % reason, text, re.M)
    return float(found.group(1)) if found else 0.0


def raw_ws(replica, source: str, rcvbuf: int | None = None) -> websocket.WebSocket:
    """A raw Engine.IO websocket from `source`, its OPEN packet read."""
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.bind((source, 0))
    sock.settimeout(10)
    sock.connect(("127.0.0.1", replica.port))
    ws = websocket.create_connection(
        f"ws://127.0.0.1:{replica.port}/socket.io/?EIO=4&transport=websocket", socket=sock, timeout=10)
    opcode, data = ws.recv_data(control_frame=True)
    if opcode == websocket.ABNF.OPCODE_CLOSE:
        raise Refused(struct.unpack("!H", data[:2])[0], data[2:].decode())
    assert data.startswith(b"0{")
    return ws


class Refused(Exception):
    """The server closed a new websocket at once: (close code, reason)."""


def join_chat(ws: websocket.WebSocket, tok: str) -> None:
    """Connect /chat on a raw websocket and wait for the namespace's CONNECT."""
    ws.send("40/chat," + json.dumps({"token": tok}))
    assert read_until(ws, lambda m: m.startswith("40/chat,")), "namespace not connected"


def read_until(ws: websocket.WebSocket, match, timeout: float = 10) -> str | None:
    """Messages until one matches (answering pings); None when the connection ends."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            message = ws.recv()
        except (websocket.WebSocketConnectionClosedException, ConnectionError, OSError):
            return None
        if message == "2":
            ws.send("3")
        elif not message:  # a close frame
            return None
        elif match(message):
            return message
    raise AssertionError("no matching message in time")


def closed_by_server(ws: websocket.WebSocket, timeout: float = 10) -> bool:
    """True once the server has closed the connection (Engine.IO CLOSE, close frame, or EOF)."""
    return read_until(ws, lambda m: m == "1", timeout) in (None, "1")


def test_a_connection_without_a_namespace_is_closed_after_the_timeout(replica):
    before = refused(replica, "connect_timeout")
    idle = raw_ws(replica, "127.0.0.21")
    chat = raw_ws(replica, "127.0.0.21")
    join_chat(chat, token(replica, "Nora"))
    started = time.monotonic()
    assert closed_by_server(idle, CONNECT_TIMEOUT + 8)
    assert CONNECT_TIMEOUT - 0.5 <= time.monotonic() - started <= CONNECT_TIMEOUT + 3
    # The connection that connected a namespace stays: it still gets acks after the deadline.
    time.sleep(1)
    chat.send('42/chat,7["join",{"room":"lobby"}]')
    assert read_until(chat, lambda m: m.startswith("43/chat,7"))
    assert refused(replica, "connect_timeout") == before + 1
    chat.close()


def test_an_address_holds_at_most_the_cap(replica):
    before = refused(replica, "per_address")
    tok = token(replica, "Cap")
    held = [raw_ws(replica, "127.0.0.22") for _ in range(PER_ADDRESS)]
    for ws in held:
        join_chat(ws, tok)
    with pytest.raises(Refused) as refusal:
        raw_ws(replica, "127.0.0.22")
    assert refusal.value.args == (1008, "too_many_connections")
    polling = bound_session("127.0.0.22").get(replica.url + "/socket.io/?EIO=4&transport=polling", timeout=5)
    assert polling.status_code == 401 and polling.json()["data"]["code"] == "too_many_connections"
    other = raw_ws(replica, "127.0.0.23")  # another address is not affected
    assert refused(replica, "per_address") == before + 2
    held.pop().close()
    wait_until(lambda: try_connect(replica, "127.0.0.22"), timeout=5)
    for ws in held + [other]:
        ws.close()


def try_connect(replica, source: str) -> bool:
    """Whether a new websocket from `source` is accepted now (closed again at once)."""
    try:
        raw_ws(replica, source).close()
        return True
    except Refused:
        return False


@pytest.mark.parametrize("message", [
    '451-/chat,["send",{"_placeholder":true,"num":0}]',   # Socket.IO BINARY_EVENT
    '461-/chat,3[{"_placeholder":true,"num":0}]',         # Socket.IO BINARY_ACK
    b"\x04" + b"\x00" * 1000,                              # an Engine.IO binary message
])
def test_binary_packets_close_the_websocket(replica, message):
    before = refused(replica, "binary")
    ws = raw_ws(replica, "127.0.0.24")
    join_chat(ws, token(replica, "Bin"))
    if isinstance(message, bytes):
        ws.send_binary(message)
    else:
        ws.send(message)
    assert closed_by_server(ws, 5)
    assert refused(replica, "binary") == before + 1


def test_binary_packets_close_a_polling_session(replica):
    before = refused(replica, "binary")
    http, url = polling_chat(replica, "127.0.0.25", "Poll")
    http.post(url, data="bAAAAAAAAAA==", timeout=5)  # a base64 binary Engine.IO message
    answer = http.get(url, timeout=5)
    assert answer.status_code == 400 or answer.text.endswith("1")
    assert refused(replica, "binary") == before + 1


def test_a_frame_over_the_size_limit_is_refused_from_its_header(replica):
    ws = raw_ws(replica, "127.0.0.26")
    join_chat(ws, token(replica, "Big"))
    if replica.fast_paths == "off":
        # The header check is the transport layer's (wsfast, wsframes): stock gevent-websocket
        # reads a frame whole before engine.io checks its size (docs/security.md). The limit
        # still holds: a whole frame past it closes the connection.
        ws.sock.sendall(masked_text_frame(b"x" * 150_000))
    else:
        # A text frame announcing 50 MB: refused before any of it arrives.
        ws.sock.sendall(bytes((0x81, 0xFF)) + struct.pack("!Q", 50_000_000) + b"\x00\x00\x00\x00")
    assert closed_by_server(ws, 5)


def masked_text_frame(payload: bytes) -> bytes:
    """One final client text frame, masked with a zero key (the mask leaves the payload as is)."""
    return bytes((0x81, 0xFF)) + struct.pack("!Q", len(payload)) + b"\x00\x00\x00\x00" + payload


def test_a_websocket_client_that_stops_reading_is_cut_off_and_others_are_not(replica):
    before = refused(replica, "slow_reader")
    slow = raw_ws(replica, "127.0.0.27", rcvbuf=4096)
    join_chat(slow, token(replica, "Slow"))
    slow.send('42/chat,1["join",{"room":"slowroom"}]')
    assert read_until(slow, lambda m: m.startswith("43/chat,1"))
    sender = ChatClient(replica.url, token(replica, "Fast"), source_ip="127.0.0.28").connect()
    try:
        sender.call("join", {"room": "slowroom"})
        body = "x" * 40_000
        for n in range(400):  # ~16 MB at most: the kernel's buffers, then the bound
            started = time.monotonic()
            assert sender.call("send", {"room": "slowroom", "body": body, "client_id": f"s{n}"})["ok"]
            assert time.monotonic() - started < 2, "the sender waited on the slow reader"
            if refused(replica, "slow_reader") > before:
                break
        assert refused(replica, "slow_reader") == before + 1
        assert sender.call("history", {"room": "slowroom", "limit": 1})["ok"]
    finally:
        sender.close()
    slow.sock.settimeout(10)
    with pytest.raises((websocket.WebSocketException, OSError, AssertionError)):
        while True:  # what the kernel held, then the end
            slow.recv()


def test_a_polling_client_that_stops_polling_is_cut_off(replica):
    before = refused(replica, "slow_reader")
    http, url = polling_chat(replica, "127.0.0.29", "Napper")
    http.post(url, data='42/chat,1["join",{"room":"naproom"}]', timeout=5)
    assert "43/chat,1" in http.get(url, timeout=5).text
    sender = ChatClient(replica.url, token(replica, "Loud"), source_ip="127.0.0.30").connect()
    try:
        sender.call("join", {"room": "naproom"})
        for n in range(SEND_BUFFER // 40_000 + 3):
            assert sender.call("send", {"room": "naproom", "body": "y" * 40_000, "client_id": f"p{n}"})["ok"]
        wait_until(lambda: refused(replica, "slow_reader") == before + 1, timeout=5)
    finally:
        sender.close()
    answer = http.get(url, timeout=5)
    assert answer.status_code == 400 or len(answer.content) < SEND_BUFFER


def test_admin_connection_attempts_count_against_the_connect_limit(replica):
    ws = raw_ws(replica, "127.0.0.31")
    codes = []
    for _ in range(12):  # the limit is 10 a minute per address
        ws.send('40/admin,{"token":"not-a-token"}')
        answer = read_until(ws, lambda m: m.startswith("44/admin,"))
        codes.append(json.loads(answer.split(",", 1)[1])["data"]["code"])
    assert codes[0] == "token_invalid" and codes[-1] == "rate_limited"
    ws.close()
