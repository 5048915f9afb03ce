"""Detached websockets: an in-process gevent server with our handler, python-socketio and raw clients.

The handler greenlet ends once a websocket is up; an io watcher wakes a short greenlet when bytes
arrive. These tests drive that over real sockets: messages, fragments and pings, bytes already
buffered at the switch, both ways of closing, the upgrade from polling, the pool place and the
access line, and that what the handshake held is let go.
"""
from __future__ import annotations

import base64
import contextvars
import gc
import json
import os
import struct

import gevent
import greenlet
import pytest
import socketio
from gevent import socket as gsocket
from gevent.pool import Pool
from gevent.pywsgi import WSGIServer

from realtime import transport
from realtime.transport import greenlets, interned, keptenviron, worker, wsdirect
from realtime.transport.worker import Handler
from realtime.transport.wsframes import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT

from wsbytes import client_frame


class AccessLog:
    """gunicorn's logger as far as our handler uses it."""

    def __init__(self):
        self.lines = []

    def access(self, resp, req, environ, elapsed):
        self.lines.append((resp.status, environ.get("PATH_INFO"), environ.get("REMOTE_ADDR"), elapsed))

    def write(self, data):
        pass


class App:
    """A python-socketio server on gevent with our handler, recording what its handlers see."""

    def __init__(self, ping_interval: float = 25, ping_timeout: float = 20, connections: int = 20,
                 async_handlers: bool = True):
        self.sio = socketio.Server(async_mode="gevent", ping_interval=ping_interval,
                                   ping_timeout=ping_timeout, async_handlers=async_handlers)
        self.seen, self.gone = [], []
        self.sio.on("connect", self.on_connect)
        self.sio.on("disconnect", lambda sid, reason: self.gone.append((sid, reason)))
        self.sio.on("echo", lambda sid, data: self.seen.append(data) or data)
        wsgi = socketio.WSGIApp(self.sio)
        # Flask-SocketIO hands engine.io a copy of the environ, as this does.
        self.pool = Pool(connections)
        self.log = AccessLog()
        self.server = WSGIServer(("127.0.0.1", 0), lambda env, start: wsgi(dict(env), start),
                                 handler_class=Handler, spawn=self.pool, log=self.log)

    def on_connect(self, sid, environ, auth=None):
        self.seen.append(("connect", environ.get("QUERY_STRING"), auth))

    @property
    def eio(self):
        return self.sio.eio


@pytest.fixture
def app_with():
    """Start Apps with the given options; stop them and uninstall the adapter afterwards."""
    assert transport.install({"FAST_PATHS": "on", "MAX_HTTP_BUFFER_SIZE": 100_000}) == "on"
    started = []

    def start(**options) -> App:
        started.append(App(**options))
        started[-1].server.start()
        return started[-1]
    try:
        yield start
    finally:
        for app in started:
            app.server.stop(timeout=1)
        transport.uninstall()


@pytest.fixture
def app(app_with):
    return app_with()


class Client:
    """A raw websocket client speaking Engine.IO 4 / Socket.IO 5 frames."""

    def __init__(self, app: App, query: str = "", first: bytes = b"", headers: str = ""):
        self.sock = gsocket.create_connection(app.server.address, timeout=5)
        key = base64.b64encode(os.urandom(16)).decode()
        request = (f"GET /socket.io/?EIO=4&transport=websocket{query} HTTP/1.1\r\nHost: x\r\n"
                   f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                   f"Sec-WebSocket-Version: 13\r\nUser-Agent: raw-test\r\n{headers}\r\n").encode()
        self.sock.sendall(request + first)  # frames right behind the handshake: they land in its buffer
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.recv_some()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        assert head.startswith(b"HTTP/1.1 101"), head
        opcode, payload = self.frame()
        assert opcode == TEXT and payload.startswith(b"0")
        self.sid = json.loads(payload[1:])["sid"]

    def recv_some(self) -> bytes:
        data = self.sock.recv(65536)
        assert data, "the server closed the connection"
        return data

    def frame(self) -> tuple[int, bytes]:
        """The next server frame (unmasked, unfragmented, under 64 KiB)."""
        while True:
            if len(self.buffer) >= 4 or (len(self.buffer) >= 2 and self.buffer[1] < 126):
                size, start = self.buffer[1], 2
                if size == 126:
                    size, start = struct.unpack("!H", self.buffer[2:4])[0], 4
                if len(self.buffer) >= start + size:
                    break
            self.buffer += self.recv_some()
        opcode, payload = self.buffer[0] & 0x0F, self.buffer[start:start + size]
        self.buffer = self.buffer[start + size:]
        return opcode, payload

    def text(self) -> str:
        """The next text frame, answering pings on the way."""
        while True:
            opcode, payload = self.frame()
            if opcode == TEXT:
                text = payload.decode()
                if text == "2":
                    self.send("3")
                    continue
                return text

    def send(self, text: str) -> None:
        self.sock.sendall(client_frame(TEXT, text.encode()))

    def connect(self) -> str:
        """Socket.IO connect to the default namespace; its sid."""
        self.send("40")
        answer = self.text()
        assert answer.startswith("40"), answer
        return json.loads(answer[2:])["sid"]

    def closed_by_server(self) -> bool:
        """Read until the server closes the TCP connection; True if it did."""
        try:
            while self.sock.recv(65536):
                pass
        except OSError:
            pass
        return True


def wait_for(condition, timeout: float = 5.0) -> None:
    """Let the server run until `condition()` holds."""
    with gevent.Timeout(timeout):
        while not condition():
            gevent.sleep(0.01)


def test_events_flow_with_no_greenlet_left_per_connection(app):
    clients = [Client(app) for _ in range(5)]
    for client in clients:
        client.connect()
    gevent.sleep(0.1)
    # every handler greenlet ended; each connection stands in the pool in its place
    assert all(isinstance(member, worker.Detached) for member in app.pool)
    assert len(app.pool) == 5
    for n, client in enumerate(clients):
        client.send(f'420["echo",{{"n":{n}}}]')
        assert client.text() == f'430[{{"n":{n}}}]'
    assert sorted(item["n"] for item in app.seen if isinstance(item, dict)) == list(range(5))


LAST_EVENT = contextvars.ContextVar("last_event", default=None)


def test_events_run_in_reused_greenlets_with_a_fresh_context_each(app_with):
    app = app_with(async_handlers=False)  # as realtime runs: the handler in the reader's greenlet
    ran, leaked = [], []

    def remember(sid, data):
        ran.append(greenlet.getcurrent())
        leaked.append(LAST_EVENT.get())
        LAST_EVENT.set(data)  # must not be seen by the next event run in this greenlet
        return data

    app.sio.on("remember", remember)
    clients = [Client(app) for _ in range(3)]
    for client in clients:
        client.connect()
    for n in range(20):
        client = clients[n % 3]
        client.send(f'421["remember",{n}]')
        assert client.text() == f"431[{n}]"
    assert len(set(ran)) < 3, "each event had a greenlet of its own"
    assert leaked == [None] * 20, "a context variable outlived its event"
    readers = wsdirect.of_hub(wsdirect.ReaderGreenlets)
    assert 0 < len(readers.idle) <= readers.KEEP
    for idle in readers.idle:  # an idle greenlet keeps no connection alive
        assert not any(isinstance(value, wsdirect.Reader) for value in idle.gr_frame.f_locals.values())


def test_an_idle_reader_greenlet_woken_by_anything_else_retires(app):
    client = Client(app)
    client.connect()
    client.send('420["echo",1]')
    assert client.text() == "430[1]"
    readers = wsdirect.of_hub(wsdirect.ReaderGreenlets)
    idle, live = readers.idle[-1], greenlets.live()
    gevent.get_hub().loop.run_callback(idle.switch)  # a stray wake-up, from the hub
    gevent.sleep(0)
    assert idle.dead and idle not in readers.idle
    assert greenlets.live() == live - 1, "/metrics' greenlet count follows the reader greenlets"
    client.send('420["echo",2]')  # the next event gets another greenlet
    assert client.text() == "430[2]"


def test_bytes_buffered_with_the_handshake_are_read(app):
    first = client_frame(TEXT, b'40{"token":"t"}') + client_frame(TEXT, b'421["echo","early"]')
    client = Client(app, first=first)
    assert client.text().startswith("40")
    assert client.text() == '431["early"]'
    assert ("connect", "EIO=4&transport=websocket", {"token": "t"}) in app.seen


def test_fragments_pings_and_binary(app):
    client = Client(app)
    client.connect()
    message = '422["echo","' + "é" * 200 + '"]'
    raw = message.encode()
    client.sock.sendall(client_frame(TEXT, raw[:101], fin=False) + client_frame(PING, b"hey")
                        + client_frame(CONTINUATION, raw[101:]))
    assert client.frame() == (PONG, b"hey")
    answer = client.text()
    assert answer.startswith("432") and json.loads(answer[3:]) == ["é" * 200]
    # a Socket.IO binary event: the placeholder packet, then the attachment as a binary frame
    client.send('451-2["echo",{"_placeholder":true,"num":0}]')
    client.sock.sendall(client_frame(BINARY, b"\x00\x01\x02"))
    assert client.text() == '461-2[{"_placeholder":true,"num":0}]'
    assert client.frame() == (BINARY, b"\x00\x01\x02")


def test_a_client_close_ends_the_connection_and_frees_its_place(app):
    client = Client(app)
    client.connect()
    wait_for(lambda: len(app.pool) == 1)
    client.sock.sendall(client_frame(CLOSE, struct.pack("!H", 1000)))
    assert client.frame() == (CLOSE, struct.pack("!H", 1000))
    assert client.closed_by_server()
    wait_for(lambda: app.gone and len(app.pool) == 0)
    assert app.gone[0][1] == app.sio.reason.TRANSPORT_CLOSE
    assert client.sid not in app.eio.sockets


def test_the_reader_waits_on_the_sockets_own_watcher_and_the_close_releases_it(app):
    client = Client(app)
    client.connect()
    wait_for(lambda: len(app.pool) == 1)
    reader = app.eio.sockets[client.sid].__dict__["_rt_reader"]
    watcher = reader.watcher
    assert watcher is reader.sock._read_event and watcher.active  # no second watcher per connection
    client.send('420["echo",{"n":1}]')
    assert client.text() == '430[{"n":1}]'
    wait_for(lambda: watcher.active)  # re-armed after the event
    client.sock.sendall(client_frame(CLOSE, struct.pack("!H", 1000)))
    assert client.closed_by_server()
    wait_for(lambda: app.gone and len(app.pool) == 0)
    assert not watcher.active and reader.sock._read_event is None  # gevent's close dropped it


def test_a_socket_closed_under_a_waiting_reader_ends_its_connection(app, monkeypatch):
    """A worker shutting down closes sockets while their readers wait: gevent then throws into
    the watcher's callback owner, the reader, which ends the connection (no hub error)."""
    errors = []
    hub = gevent.get_hub()
    monkeypatch.setattr(hub, "handle_error", lambda *args: errors.append(args))
    client = Client(app)
    client.connect()
    wait_for(lambda: len(app.pool) == 1)
    reader = app.eio.sockets[client.sid].__dict__["_rt_reader"]
    assert reader.watcher.active
    reader.sock.close()
    wait_for(lambda: app.gone and len(app.pool) == 0)
    assert client.sid not in app.eio.sockets and not errors


def test_a_protocol_error_is_answered_with_its_close_code(app):
    client = Client(app)
    client.connect()
    client.sock.sendall(client_frame(TEXT, b"\xff\xfe"))
    assert client.frame() == (CLOSE, struct.pack("!H", 1007))
    assert client.closed_by_server()
    wait_for(lambda: app.gone)


def test_a_server_disconnect_closes_and_cuts_a_client_that_does_not_answer(app, monkeypatch):
    monkeypatch.setattr(wsdirect, "CLOSE_WAIT", 0.2)
    client = Client(app)
    sid = client.connect()
    app.sio.disconnect(sid)
    assert client.text() == "41"  # Socket.IO disconnect of the namespace
    app.eio.disconnect(client.sid)
    assert client.text() == "1"  # Engine.IO CLOSE
    assert client.frame() == (CLOSE, b"")
    assert client.closed_by_server()  # without answering: cut after CLOSE_WAIT
    wait_for(lambda: len(app.pool) == 0)


def blocking(function, *args, **kwargs):
    """Run a blocking call (stdlib sockets: this process is not monkey-patched) in a thread while
    the server keeps running."""
    result = gevent.get_hub().threadpool.spawn(function, *args, **kwargs)
    wait_for(result.ready)
    return result.get()


def test_a_client_that_stops_answering_pings_is_closed_then_cut(app_with, monkeypatch):
    monkeypatch.setattr(wsdirect, "CLOSE_WAIT", 0.2)
    app = app_with(ping_interval=0.2, ping_timeout=0.2)
    client = Client(app)
    client.send("40")
    frames = []
    while not frames or frames[-1][0] != CLOSE:  # read, never answer
        frames.append(client.frame())
    assert (TEXT, b"2") in frames and (TEXT, b"1") in frames  # pinged, then Engine.IO CLOSE
    assert client.closed_by_server()
    wait_for(lambda: app.gone and len(app.pool) == 0)
    assert app.gone[0][1] == app.sio.reason.PING_TIMEOUT


def test_upgrade_from_polling_keeps_order_then_detaches(app):
    import requests
    base = f"http://127.0.0.1:{app.server.address[1]}/socket.io/?EIO=4&transport=polling"
    session = requests.Session()
    sid = json.loads(blocking(session.get, base, timeout=5).text[1:])["sid"]
    blocking(session.post, f"{base}&sid={sid}", data="40", timeout=5)
    assert blocking(session.get, f"{base}&sid={sid}", timeout=5).text.startswith("40")
    # packets sent while the client is still polling wait in engine.io's queue...
    app.eio.send(sid, "queued-1")
    client = Client.__new__(Client)
    client.sock = gsocket.create_connection(app.server.address, timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    client.sock.sendall((f"GET /socket.io/?EIO=4&transport=websocket&sid={sid} HTTP/1.1\r\nHost: x\r\n"
                         f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n").encode())
    client.buffer = b""
    while b"\r\n\r\n" not in client.buffer:
        client.buffer += client.recv_some()
    client.buffer = client.buffer.split(b"\r\n\r\n", 1)[1]
    client.send("2probe")
    assert client.text() == "3probe"
    app.eio.send(sid, "queued-2")
    client.send("5")  # UPGRADE
    app.eio.send(sid, "after")
    # ...and go out first, in order, once the websocket takes over
    assert [client.text() for _ in range(3)] == ["4queued-1", "4queued-2", "4after"]
    client.send('421["echo","over websocket"]')
    assert client.text() == '431["over websocket"]'
    wait_for(lambda: [member for member in app.pool if isinstance(member, worker.Detached)])
    environ = app.sio.environ[sid]  # the one kept from the first polling request, slimmed
    assert set(environ) <= wsdirect.KEPT_ENVIRON | {"wsgi.input"}
    assert environ["wsgi.input"] is wsdirect.EMPTY_INPUT and environ["QUERY_STRING"] == "EIO=4&transport=polling"


def test_kept_environs_share_equal_strings_but_not_client_ports(app):
    clients = [Client(app) for _ in range(2)]
    sids = [client.sid for client in clients]
    wait_for(lambda: len([member for member in app.pool if isinstance(member, worker.Detached)]) == 2)
    first, second = (app.sio.environ[sid] for sid in sids)
    for key in ("REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL", "REMOTE_ADDR",
                "HTTP_HOST"):
        assert first[key] == second[key] and first[key] is second[key], key
    assert first["REMOTE_PORT"] != second["REMOTE_PORT"]
    kept = [dict.__getitem__(app.sio.environ, sid) for sid in sids]  # one shared part for both
    assert all(isinstance(k, keptenviron.Kept) for k in kept) and kept[0].rest is kept[1].rest
    logs = [member.session_log for member in app.pool if isinstance(member, worker.Detached)]
    assert logs[0].values is logs[1].values  # equal access-line values: one tuple
    for key in ("REMOTE_ADDR", "REQUEST_METHOD", "RAW_URI", "HTTP_USER_AGENT"):  # the access lines'
        index = worker.ACCESS_ENVIRON.index(key)
        assert logs[0].values[index] == "raw-test" or key != "HTTP_USER_AGENT"
        assert logs[0].values[index] is logs[1].values[index], key


def test_credentials_stay_out_of_the_shared_strings(app, monkeypatch):
    monkeypatch.setattr(interned, "_strings", {})
    in_query = Client(app, query="&token=secret-123")
    Client(app, headers="Authorization: Bearer secret-456\r\n")
    wait_for(lambda: len([member for member in app.pool if isinstance(member, worker.Detached)]) == 2)
    assert app.sio.environ[in_query.sid]["QUERY_STRING"].endswith("token=secret-123")
    logs = [member.session_log for member in app.pool if isinstance(member, worker.Detached)]
    assert sorted(str(log.values[-1]) for log in logs) == ["Bearer secret-456", "None"]
    assert interned._strings and not [v for v in interned._strings if "secret-" in str(v)]


def test_the_shared_strings_are_bounded(app, monkeypatch):
    monkeypatch.setattr(interned, "_strings", {})
    monkeypatch.setattr(interned, "LIMIT", 0)
    client = Client(app)
    wait_for(lambda: [member for member in app.pool if isinstance(member, worker.Detached)])
    assert app.sio.environ[client.sid]["PATH_INFO"] == "/socket.io/"
    assert interned._strings == {}


def test_the_handshake_is_let_go_and_its_session_logged_at_the_end(app):
    client = Client(app)
    client.connect()
    gevent.sleep(0.1)
    gc.collect()
    assert not [o for o in gc.get_objects() if isinstance(o, Handler)], "a handler outlived its detach"
    environ = app.sio.environ[client.sid]
    assert "wsgi.websocket" not in environ and "HTTP_USER_AGENT" not in environ
    assert environ["REMOTE_ADDR"] == "127.0.0.1" and environ["PATH_INFO"] == "/socket.io/"
    assert app.log.lines == []  # not at the switch...
    client.sock.close()
    wait_for(lambda: app.log.lines)
    status, path, address, elapsed = app.log.lines[0]  # ...but when the session ends
    assert status.startswith("101") and path == "/socket.io/" and address == "127.0.0.1"
    assert elapsed.total_seconds() >= 0.1


def test_the_pool_kill_ends_detached_connections_and_waits_for_them(app):
    client = Client(app)
    client.connect()
    wait_for(lambda: len(app.pool) == 1)
    app.pool.kill(timeout=1)  # what gunicorn does when its graceful timeout runs out
    assert len(app.pool) == 0 and app.pool.wait_available(timeout=0) == app.pool.size
    assert client.closed_by_server()
    wait_for(lambda: app.gone)


def test_detached_connections_count_against_the_connection_limit(app_with):
    app = app_with(connections=2)
    clients = [Client(app), Client(app)]  # (kept referenced: their sockets stay open)
    wait_for(lambda: len(app.pool) == 2)
    third = gevent.spawn(Client, app)  # the kernel accepts it; the server does not, yet
    gevent.sleep(0.3)
    assert not third.ready()
    clients[0].sock.close()
    assert third.get(timeout=5).sid


def test_without_a_detaching_handler_the_blocking_reader_still_works(app, monkeypatch):
    monkeypatch.setattr(wsdirect, "DETACH", False)
    client = Client(app)
    client.connect()
    client.send('420["echo","blocking"]')
    assert client.text() == '430["blocking"]'
    gevent.sleep(0.05)
    assert [g for g in app.pool if g]  # the handler greenlet is still reading
    client.sock.close()
    wait_for(lambda: app.gone and len(app.pool) == 0)
