"""The packet JSON decoder, the packet class and the websocket unmasking adapter."""
import json
import os
import random
from collections import OrderedDict

import pytest
from geventwebsocket.websocket import Header
from socketio.packet import ACK, BINARY_ACK, EVENT, Packet

from realtime.transport import wirejson, wirepacket, wsfast


@pytest.fixture(autouse=True)
def stock_afterwards():
    """gevent-websocket's own reader back after each test (wsfast.install patches it process-wide)."""
    yield
    wsfast.uninstall()


def test_ordinary_packets_decode_unchanged():
    packet = {"room": "lobby", "since": 41, "body": "héllo", "nested": [1, [2, {"a": None}]]}
    assert wirejson.loads(json.dumps(packet)) == packet


def test_overlong_integers_become_infinity_not_an_error():
    assert wirejson.loads('{"since": %s}' % ("9" * 150)) == {"since": float("inf")}
    assert wirejson.loads("[%s]" % ("1" * 100)) == [int("1" * 100)]


def test_deep_nesting_is_cut_and_absurd_nesting_is_a_value_error():
    deep = "[" * 500 + "1" + "]" * 500
    value = wirejson.loads(deep)
    depth = 0
    while isinstance(value, list):
        value, depth = value[0], depth + 1
    assert value is None and depth == wirejson.MAX_DEPTH + 1
    with pytest.raises(ValueError):
        wirejson.loads("[" * 100_000 + "]" * 100_000)


@pytest.mark.parametrize("levels", [wirejson.MAX_DEPTH + 1, wirejson.MAX_DEPTH + 2])
def test_the_depth_limit_is_exact(levels):
    text = "[" * levels + "1" + "]" * levels
    for packet in (text, text.encode()):
        value, depth = wirejson.loads(packet), 0
        while isinstance(value, list):
            value, depth = value[0], depth + 1
        assert (depth, value) == ((levels, 1) if levels <= wirejson.MAX_DEPTH + 1 else (wirejson.MAX_DEPTH + 1, None))


def test_malformed_json_still_raises_value_error():
    with pytest.raises(ValueError):
        wirejson.loads("{not json")


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 127, 65_536, 100_001])
def test_unmask_matches_gevent_websocket(size):
    header = Header(length=size)
    header.mask = os.urandom(4)
    payload = os.urandom(size)
    expected = bytearray(b ^ header.mask[i % 4] for i, b in enumerate(payload))
    assert wsfast._mask_payload(header, payload) == expected


def test_unmask_without_wsaccel(monkeypatch):
    monkeypatch.setattr(wsfast, "XorMaskerSimple", None)
    payload, mask = os.urandom(1001), os.urandom(4)
    assert wsfast.xor_mask(payload, mask) == bytearray(b ^ mask[i % 4] for i, b in enumerate(payload))


def test_install_replaces_the_per_byte_loop():
    wsfast.install()
    assert Header.unmask_payload is wsfast._mask_payload


def test_a_closed_websocket_asks_for_no_new_class(monkeypatch):
    """gevent-websocket made a MockApp class per `current_app`, twice per dropped websocket."""
    from types import SimpleNamespace

    from geventwebsocket.websocket import WebSocket
    wsfast.install()
    handler = SimpleNamespace(server=SimpleNamespace(application=object()))
    ws = WebSocket.__new__(WebSocket)
    ws.handler = handler
    assert ws.current_app is wsfast.NO_APP and ws.current_app is ws.current_app
    ws.current_app.on_close("closed")
    own = SimpleNamespace(on_close=lambda reason: None)
    handler.server.application = SimpleNamespace(current_app=own)
    assert ws.current_app is own


def stock_websocket(data: bytes):
    """A gevent-websocket WebSocket reading `data` and recording what it writes."""
    import io
    from types import SimpleNamespace

    from geventwebsocket.websocket import WebSocket
    written = []
    stream = SimpleNamespace(read=io.BytesIO(data).read, write=written.append)
    import logging
    handler = SimpleNamespace(server=SimpleNamespace(application=object()), logger=logging.getLogger("test"))
    ws = WebSocket({}, stream, handler)
    ws.raw_write = written.append
    return ws, written


@pytest.mark.parametrize("frames", [
    [(0x1, b"x" * 300)],                                          # one frame over the limit
    [(0x1, b"x" * 150, False), (0x0, b"x" * 150, True)],           # fragments adding up past it
])
def test_stock_websocket_refuses_a_message_over_the_limit(monkeypatch, frames):
    from wsbytes import client_frame
    wsfast.install()
    monkeypatch.setattr(wsfast, "MAX_MESSAGE", 200)
    data = b"".join(client_frame(op, payload, fin=rest[0] if rest else True) for op, payload, *rest in frames)
    ws, written = stock_websocket(data)
    assert ws.receive() is None and ws.closed  # gevent-websocket closes on the protocol error


def test_stock_websocket_reads_messages_within_the_limit(monkeypatch):
    from wsbytes import client_frame
    wsfast.install()
    monkeypatch.setattr(wsfast, "MAX_MESSAGE", 200)
    data = client_frame(0x1, b"a" * 100, fin=False) + client_frame(0x0, b"b" * 100) + client_frame(0x2, b"\x01" * 200)
    ws, _ = stock_websocket(data)
    assert ws.receive() == "a" * 100 + "b" * 100
    assert ws.receive() == bytearray(b"\x01" * 200)


def test_a_frame_header_over_the_limit_is_refused_before_its_payload(monkeypatch):
    import struct
    wsfast.install()
    monkeypatch.setattr(wsfast, "MAX_MESSAGE", 200)
    ws, _ = stock_websocket(bytes((0x81, 0xFF)) + struct.pack("!Q", 10**12) + b"\x00" * 4)
    with pytest.raises(wsfast.MessageTooBig):
        ws.read_message()


class Tagged(list):
    """A list subclass (stock python-socketio walks into those too)."""


def random_payload(rng: random.Random, depth: int = 0):
    """A random payload of the shapes handlers return, now and then with bytes somewhere."""
    leaves = [None, True, 0, 1.5, "text", b"bytes", bytearray(b"x"), ("tuple", b"not walked"), {1, 2}]
    if depth > 4 or rng.random() < 0.3:
        return rng.choice(leaves[:5] if rng.random() < 0.9 else leaves)
    shape = rng.choice([list, dict, Tagged, OrderedDict])
    items = [random_payload(rng, depth + 1) for _ in range(rng.randint(0, 5))]
    if shape in (dict, OrderedDict):
        return shape((f"k{n}", item) for n, item in enumerate(items))
    return shape(items)


def test_the_packet_class_finds_binary_data_exactly_where_stock_does():
    rng = random.Random(22)
    payloads = [random_payload(rng) for _ in range(3000)]
    assert any(Packet.data_is_binary(p) for p in payloads) and not all(Packet.data_is_binary(p) for p in payloads)
    for payload in payloads:
        assert wirepacket.WirePacket.data_is_binary(payload) == Packet.data_is_binary(payload), payload


ACK_OF_A_JOIN = [{"ok": True, "online": [{"id": "a", "name": "A"}], "reads": {"a": 3}}]


@pytest.mark.parametrize("data, binary", [(ACK_OF_A_JOIN, False), ([{"ok": True, "file": b"\x00\x01"}], True)])
def test_the_packet_class_encodes_acks_and_events_as_stock(data, binary):
    for kind in (ACK, EVENT):
        ours = wirepacket.WirePacket(kind, namespace="/chat", id=7, data=data)
        stock = Packet(kind, namespace="/chat", id=7, data=data)
        assert (ours.packet_type, ours.encode()) == (stock.packet_type, stock.encode())
    assert wirepacket.WirePacket(ACK, data=data).packet_type == (BINARY_ACK if binary else ACK)
