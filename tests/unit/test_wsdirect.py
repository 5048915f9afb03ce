"""The direct websocket writer: same frames as gevent-websocket, order kept, slow clients bounded."""
from __future__ import annotations

import gevent
import pytest
from engineio import packet as eio_packet
from gevent import socket as gsocket
from geventwebsocket.websocket import Header

from realtime import wsdirect


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


def test_an_idle_client_is_written_at_once_without_a_greenlet():
    left, right = pair()
    writer = wsdirect.DirectWriter(left, gevent.spawn)
    writer.write(b"hello")
    assert writer.flusher is None and not writer.buffer
    assert read_exactly(right, 5) == b"hello"


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


def test_install_patches_engineio_for_the_pinned_versions():
    from engineio.socket import Socket
    stock = Socket.send
    assert wsdirect.supported()
    try:
        assert wsdirect.install() and wsdirect.install()  # idempotent
        assert Socket.send is wsdirect.send and Socket._websocket_handler is wsdirect.websocket_handler
    finally:
        wsdirect.uninstall()
    assert Socket.send is stock
