"""The direct websocket writer: same frames as gevent-websocket, order kept, slow clients bounded."""
from __future__ import annotations

import gevent
import pytest
from engineio import packet as eio_packet
from gevent import socket as gsocket
from geventwebsocket.websocket import Header

from realtime import transport
from realtime.transport import wsdirect

ON = {"FAST_PATHS": "on", "MAX_HTTP_BUFFER_SIZE": 100_000}


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536, 70000])
def test_frames_match_gevent_websocket(size):
    text = "4" + "x" * size
    pkt = eio_packet.Packet(eio_packet.MESSAGE, "x" * size)
    expected = Header.encode_header(True, 0x1, b"", len(text.encode()), 0) + text.encode()
    assert wsdirect.frame_of(pkt) == expected


def test_binary_packets_get_binary_frames():
    pkt = eio_packet.Packet(eio_packet.MESSAGE, b"\x00\x01\x02")
    assert wsdirect.frame_of(pkt) == bytes((0x82, 3)) + b"\x00\x01\x02"


def test_a_broadcast_builds_its_frame_once():
    pkt = eio_packet.Packet(eio_packet.MESSAGE, '2["message",{"id":1}]')
    assert wsdirect.frame_of(pkt) is wsdirect.frame_of(pkt)


def test_unicode_length_counts_bytes():
    pkt = eio_packet.Packet(eio_packet.MESSAGE, "é" * 100)
    frame = wsdirect.frame_of(pkt)
    assert frame[1] == 126 and int.from_bytes(frame[2:4], "big") == 201


def pair():
    """A connected pair of gevent sockets with small kernel buffers."""
    left, right = gsocket.socketpair()
    for sock in (left, right):
        sock.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_SNDBUF, 4096)
        sock.setsockopt(gsocket.SOL_SOCKET, gsocket.SO_RCVBUF, 4096)
    return left, right


def read_exactly(sock, size):
    data = bytearray()
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        assert chunk, "connection closed early"
        data += chunk
    return bytes(data)


class CountingSocket:
    """A gevent socket whose sends (on the socket it wraps, as a writer makes them) are counted.

    `fail` makes a send raise that.
    """

    def __init__(self, sock, fail=None):
        self.sock, self.fail, self.sends = sock, fail, 0
        self._sock = self  # the writer sends on the non-blocking socket gevent wraps

    def send(self, data, flags=0):
        self.sends += 1
        if self.fail:
            raise self.fail
        return self.sock._sock.send(data, flags)

    def shutdown(self, how):
        self.sock.shutdown(how)


def test_an_idle_client_is_written_at_the_turns_end_without_a_greenlet():
    left, right = pair()
    sock = CountingSocket(left)
    writer = wsdirect.DirectWriter(sock, gevent.spawn)
    writer.write(b"hello")
    assert sock.sends == 0 and writer.buffer == [b"hello"]
    gevent.sleep(0)  # the loop's turn ends
    assert sock.sends == 1 and writer.flusher is None and not writer.buffer
    assert read_exactly(right, 5) == b"hello"


def test_frames_written_in_one_turn_leave_in_one_send_in_order():
    pairs = [pair() for _ in range(3)]
    socks = [CountingSocket(left) for left, _ in pairs]
    writers = [wsdirect.DirectWriter(sock, gevent.spawn) for sock in socks]
    for n in range(3):
        for writer in writers:
            writer.write(b"frame%d;" % n)
    gevent.sleep(0)
    assert [sock.sends for sock in socks] == [1, 1, 1]
    for _, right in pairs:
        assert read_exactly(right, 21) == b"frame0;frame1;frame2;"
    writers[0].write(b"next")  # a later turn: a send of its own
    gevent.sleep(0)
    assert socks[0].sends == 2 and read_exactly(pairs[0][1], 4) == b"next"


def test_a_large_turn_is_sent_without_waiting_for_its_end():
    left, right = pair()
    sock = CountingSocket(left)
    writer = wsdirect.DirectWriter(sock, gevent.spawn)
    writer.write(b"x" * 100)
    writer.write(b"y" * wsdirect.SEND_AT)
    assert sock.sends == 1, "a turn's worth of SEND_AT bytes goes at once"
    received = gevent.spawn(read_exactly, right, 100 + wsdirect.SEND_AT)
    writer.drain()
    assert received.get(timeout=10) == b"x" * 100 + b"y" * wsdirect.SEND_AT


def test_one_writer_failing_at_the_turns_end_does_not_hold_the_others():
    (left, right), (bad_left, _) = pair(), pair()
    bad = wsdirect.DirectWriter(CountingSocket(bad_left, fail=RuntimeError("bug")), gevent.spawn)
    good = wsdirect.DirectWriter(left, gevent.spawn)
    bad.write(b"lost")
    good.write(b"kept")
    gevent.sleep(0)
    assert bad.dead and not good.dead
    assert read_exactly(right, 4) == b"kept"


def test_a_client_behind_gets_everything_in_order_once_it_reads():
    left, right = pair()
    writer = wsdirect.DirectWriter(left, gevent.spawn)
    chunks = [bytes([n % 251]) * 3000 for n in range(100)]  # far more than the socket buffers
    for chunk in chunks:
        writer.write(chunk)
    assert writer.flusher is not None, "what the kernel did not take waits in the buffer"
    received = gevent.spawn(read_exactly, right, sum(map(len, chunks)))
    writer.drain()
    assert received.get(timeout=10) == b"".join(chunks)
    assert writer.flusher is None and not writer.buffer


def test_a_client_too_far_behind_is_cut_off(monkeypatch):
    monkeypatch.setattr(wsdirect, "MAX_BUFFERED", 50_000)
    left, right = pair()
    writer = wsdirect.DirectWriter(left, gevent.spawn)
    for _ in range(100):
        writer.write(b"x" * 3000)
    assert writer.dead and not writer.buffer
    writer.write(b"more")  # ignored once dead
    assert not writer.buffer


def test_a_dead_peer_stops_the_writer():
    left, right = pair()
    right.close()
    writer = wsdirect.DirectWriter(left, gevent.spawn)
    for _ in range(3):
        writer.write(b"x" * 3000)
    writer.drain()
    assert writer.dead


class FakeServer:
    """The engine.io server surface the ping clock uses, on gevent."""
    ping_interval = 0.05

    def start_background_task(self, target):
        return gevent.spawn(target)

    def sleep(self, seconds):
        gevent.sleep(seconds)


class FakeSocket:
    def __init__(self, sid, closed=False):
        self.sid, self.closing, self.closed, self.last_ping, self.sent = sid, False, closed, None, []

    def send(self, pkt):
        self.sent.append(pkt.packet_type)


def test_one_clock_pings_every_open_socket_once_per_interval():
    clock = wsdirect.PingClock(FakeServer())
    open_one, closed_one = FakeSocket("a"), FakeSocket("b", closed=True)
    clock.schedule(open_one)
    clock.schedule(closed_one)
    task = clock.task
    task.join(timeout=2)
    assert open_one.sent == [eio_packet.PING] and open_one.last_ping
    assert closed_one.sent == [] and clock.task is None


def test_the_layer_installs_the_direct_path_and_uninstall_restores_engineio():
    from engineio.socket import Socket
    from socketio.manager import Manager
    stock, stock_emit = Socket.send, Manager.emit
    try:
        assert transport.install(ON) == "on" and transport.install(ON) == "on"  # once per process
        assert Socket.send is wsdirect.send and Socket._websocket_handler is wsdirect.websocket_handler
        assert Manager.emit is wsdirect.emit
    finally:
        transport.uninstall()
    assert Socket.send is stock and Manager.emit is stock_emit


@pytest.fixture
def room():
    """A python-socketio server (direct writes installed) and three /chat clients in room r: two
    upgraded websockets on direct writers (socket pairs), one still on engine.io's queue."""
    import socketio
    from engineio.socket import Socket
    installed = not transport.active()
    transport.install(ON)
    server = socketio.Server(async_mode="gevent")
    clients = []
    for n in range(3):
        sock = Socket(server.eio, f"e{n}")
        sock.connected = True
        peer = None
        if n < 2:
            sock.upgraded = True
            left, peer = pair()
            sock.__dict__["_rt_writer"] = wsdirect.DirectWriter(left, gevent.spawn)
        server.eio.sockets[sock.sid] = sock
        sid = server.manager.connect(sock.sid, "/chat")
        server.manager.enter_room(sid, "/chat", "r")
        clients.append((sid, sock, peer))
    yield server, clients
    if installed:
        transport.uninstall()


def test_a_broadcast_writes_one_frame_to_each_websocket_and_queues_the_rest(room):
    server, ((first, _, first_peer), (second, _, second_peer), (_, polling, _)) = room
    from socketio import packet as sio_packet
    server.manager.emit("message", {"id": 1, "body": "é"}, namespace="/chat", room="r", skip_sid=second)
    stock = sio_packet.Packet(sio_packet.EVENT, namespace="/chat", data=["message", {"id": 1, "body": "é"}])
    text = ("4" + stock.encode()).encode()
    assert read_exactly(first_peer, len(text) + 2) == bytes((0x81, len(text))) + text
    second_peer.setblocking(False)
    with pytest.raises(BlockingIOError):  # skipped
        second_peer.recv(100)
    queued = polling.queue.get(block=False)  # engine.io's own path for a client not on a websocket
    assert (queued.packet_type, queued.data) == (eio_packet.MESSAGE, text.decode()[1:])


def test_a_socket_past_its_ping_timeout_takes_engineios_path(room, monkeypatch):
    import time
    server, ((first, first_sock, first_peer), (second, _, second_peer), _) = room
    first_sock.last_ping = time.time() - server.eio.ping_timeout - 1
    stock_sends = []
    monkeypatch.setattr(server, "_send_eio_packet", lambda eio_sid, pkt: stock_sends.append(eio_sid))
    server.manager.emit("message", {"id": 2}, namespace="/chat", room="r")
    assert sorted(stock_sends) == ["e0", "e2"]  # engine.io closes e0 there; e2 polls
    text = b'42/chat,["message",{"id":2}]'
    assert read_exactly(second_peer, len(text) + 2)[2:] == text


def test_callbacks_and_binary_data_take_the_stock_emit(room, monkeypatch):
    server, _ = room
    calls = []
    stock = wsdirect._stock["emit"]
    monkeypatch.setitem(wsdirect._stock, "emit", lambda *a, **k: calls.append(k) or stock(*a, **k))
    server.manager.emit("message", {"id": 3}, namespace="/chat", room="r", callback=lambda *_: None)
    server.manager.emit("message", b"\x00\x01", namespace="/chat", room="r")
    server.manager.emit("message", {"id": 4, "file": [b"\x00\x01"]}, namespace="/chat", room="r")
    server.manager.emit("message", {"id": 5}, namespace="/chat", room="r")
    assert len(calls) == 3


def test_what_json_cannot_hold_fails_as_with_the_stock_emit(room):
    server, _ = room
    with pytest.raises(TypeError):
        server.manager.emit("message", {"id": 6, "at": object()}, namespace="/chat", room="r")
