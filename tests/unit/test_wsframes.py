"""The detached reader's frame parser reads what gevent-websocket's reader reads, byte for byte."""
from __future__ import annotations

import struct

import pytest
from geventwebsocket.websocket import WebSocket
from hypothesis import given, settings
from hypothesis import strategies as st

from realtime.transport import wsframes
from realtime.transport.wsframes import BINARY, CLOSE, CONTINUATION, PING, PONG, TEXT, FrameError, FrameParser
from wsbytes import client_frame


class Stream:
    """What gevent-websocket reads from and writes to."""

    def __init__(self, data: bytes):
        self.data, self.pos, self.written = data, 0, []

    def read(self, size: int) -> bytes:
        chunk = self.data[self.pos:self.pos + size]
        self.pos += len(chunk)
        return chunk

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))


class Handler:
    """The bits of a pywsgi handler gevent-websocket's WebSocket touches."""

    class server:
        application = None

    class logger:
        @staticmethod
        def debug(*args):
            pass


def gevent_websocket_reads(data: bytes) -> tuple[list, list]:
    """Messages gevent-websocket's receive() returns for `data`, and the frames it wrote back."""
    stream = Stream(data)
    ws = WebSocket({}, stream, Handler())
    messages = []
    while stream.pos < len(data) and not ws.closed:
        message = ws.receive()
        if message is None:
            break
        messages.append(bytes(message) if isinstance(message, bytearray) else message)
    return messages, stream.written


def ours(data: bytes, cuts: list[int], limit: int = 1 << 20) -> list:
    """What the parser yields when `data` arrives in pieces cut at `cuts`."""
    parser = FrameParser(limit)
    items = []
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(data)), len(data)]
    for start, end in zip(bounds, bounds[1:]):
        items += parser.feed(data[start:end])
    assert parser.idle
    return items


message = st.one_of(st.tuples(st.just(TEXT), st.text(max_size=300)),
                    st.tuples(st.just(BINARY), st.binary(max_size=300)),
                    st.tuples(st.just(TEXT), st.text(min_size=126, max_size=70000).filter(lambda t: len(t) > 125)))


@st.composite
def conversation(draw):
    """Messages, some fragmented, with pings and pongs in between; the bytes a client sends."""
    sent, expected = b"", []
    for opcode, body in draw(st.lists(message, min_size=1, max_size=6)):
        raw = body.encode() if opcode == TEXT else body
        pieces = draw(st.integers(1, 4))
        step = max(1, len(raw) // pieces)
        chunks = [raw[i:i + step] for i in range(0, len(raw), step)] or [b""]
        for n, chunk in enumerate(chunks):
            sent += client_frame(opcode if n == 0 else CONTINUATION, chunk, fin=n == len(chunks) - 1,
                                 mask=draw(st.booleans()))
            if draw(st.booleans()):
                sent += client_frame(draw(st.sampled_from([PING, PONG])), draw(st.binary(max_size=125)))
        expected.append(body)
    return sent, expected


@settings(max_examples=150, deadline=None)
@given(conversation(), st.lists(st.integers(0, 200000), max_size=12))
def test_messages_match_gevent_websocket_however_the_bytes_arrive(talk, cuts):
    data, expected = talk
    theirs, pongs = gevent_websocket_reads(data)
    items = ours(data, cuts)
    assert [p for op, p in items if op in (TEXT, BINARY)] == theirs == expected
    # every ping gets its payload back: gevent-websocket answered each with a pong frame
    assert [wsframes.frame(PONG, p) for op, p in items if op == PING] == [
        frame for frame in pongs if frame[0] == 0x80 | PONG]  # (a close frame: its EOF at the end)


def test_server_frames_match_gevent_websocket_headers():
    from geventwebsocket.websocket import Header
    for size in (0, 5, 125, 126, 65535, 65536):
        payload = b"x" * size
        assert wsframes.frame(PONG, payload) == bytes(Header.encode_header(True, PONG, b"", size, 0)) + payload


BAD = {
    "reserved bits": client_frame(TEXT, b"hi", rsv=0x40),
    "unknown data opcode": client_frame(0x3, b"hi"),
    "unknown control opcode": client_frame(0xB, b"hi"),
    "fragmented ping": client_frame(PING, b"hi", fin=False),
    "long ping": client_frame(PING, b"x" * 126),
    "stray continuation": client_frame(CONTINUATION, b"hi"),
    "message inside a fragmented one": client_frame(TEXT, b"a", fin=False) + client_frame(TEXT, b"b"),
    "one-byte close": client_frame(CLOSE, b"\x03"),
    "invalid close code": client_frame(CLOSE, struct.pack("!H", 1005)),
    "invalid UTF-8": client_frame(TEXT, b"\xff\xfe"),
    "invalid UTF-8 across fragments": client_frame(TEXT, b"\xe2\x82", fin=False) + client_frame(CONTINUATION, b"A"),
    "invalid UTF-8 in a close reason": client_frame(CLOSE, struct.pack("!H", 1000) + b"\xff"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_protocol_errors_are_refused_like_gevent_websocket(name):
    data = client_frame(TEXT, b"before") + BAD[name]  # in one read: what came first still counts
    theirs, written = gevent_websocket_reads(data)
    assert theirs == ["before"], "gevent-websocket returned a message after the error"
    assert written and written[-1][0] == 0x88, "gevent-websocket answered with a close frame"
    parser, items = FrameParser(1 << 20), []
    with pytest.raises(FrameError) as refused:
        for item in parser.feed(data):
            items.append(item)
    assert items == [(TEXT, "before")]
    expected = wsframes.INVALID_DATA if "UTF-8" in name else wsframes.PROTOCOL_ERROR
    assert refused.value.code == expected


@pytest.mark.parametrize("payload", [b"", struct.pack("!H", 1000), struct.pack("!H", 4000) + "bye é".encode()])
def test_valid_close_frames_come_through(payload):
    assert ours(client_frame(CLOSE, payload), []) == [(CLOSE, payload)]


def test_a_message_over_the_limit_is_refused_before_it_is_read():
    parser = FrameParser(limit=1000)
    with pytest.raises(FrameError) as refused:
        list(parser.feed(client_frame(BINARY, b"x" * 2000)[:20]))  # only the header has arrived
    assert refused.value.code == wsframes.TOO_BIG
    fragments = client_frame(TEXT, b"x" * 600, fin=False) + client_frame(CONTINUATION, b"x" * 600)
    with pytest.raises(FrameError):
        list(FrameParser(limit=1000).feed(fragments))


def test_a_partial_frame_waits_without_being_parsed_again():
    parser = FrameParser(limit=1 << 20)
    data = client_frame(BINARY, b"y" * 50000)
    items = list(parser.feed(data[:10]))
    assert items == [] and parser.need == len(data)  # the header says how much to wait for
    for start in range(10, len(data), 1000):
        items += parser.feed(data[start:start + 1000])
    assert items == [(BINARY, b"y" * 50000)] and parser.idle
