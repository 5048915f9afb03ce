"""Websocket frames from a client, decoded from bytes as they arrive (RFC 6455, no I/O here).

Replaces gevent-websocket's frame reader for wsdirect's detached reader (nothing patched: wsdirect
calls it). Verified against python-engineio 4.15.1, python-socketio 5.18.1, Flask-SocketIO 5.7.0,
gevent 26.9.0, gevent-websocket 0.10.1 (realtime.transport.VERIFIED). Held to the stock behaviour
by tests/unit/test_wsframes.py (the same frames accepted and refused as gevent-websocket's reader).

The event-driven reader (realtime/transport/wsdirect.py) feeds whatever a socket had ready and gets the
complete messages and control frames back; a partial frame waits in the parser. It accepts and
refuses what gevent-websocket 0.10's reader does: reserved bits, unknown opcodes, fragmented or
long control frames, stray continuations and bad close frames are protocol errors (1002), invalid
UTF-8 in a text message is 1007. Unmasked client frames are accepted, as gevent-websocket does.
Unlike it, a message is refused as soon as its size passes `limit` bytes (1009), instead of being
read in full first.
"""
from __future__ import annotations

import struct
from typing import Iterator

from .wsfast import xor_mask

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
PROTOCOL_ERROR, INVALID_DATA, TOO_BIG = 1002, 1007, 1009


class FrameError(Exception):
    """The client broke the websocket protocol; `code` is the close code to answer with."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code


def valid_close_code(code: int) -> bool:
    """gevent-websocket's rule for a close code a client may send."""
    return (code >= 1000 and not 1004 <= code <= 1006 and not 1012 <= code <= 1016
            and code != 1100 and not 2000 <= code <= 2999)


def frame(opcode: int, payload: bytes = b"") -> bytes:
    """A server frame (FIN set, unmasked): pongs and close frames."""
    size = len(payload)
    if size < 126:
        return bytes((0x80 | opcode, size)) + payload
    if size <= 0xFFFF:
        return bytes((0x80 | opcode, 126)) + struct.pack("!H", size) + payload
    return bytes((0x80 | opcode, 127)) + struct.pack("!Q", size) + payload


class FrameParser:
    """Turns a client's bytes into (opcode, payload) items: TEXT (str), BINARY (bytes), PING,
    PONG and CLOSE (bytes). A partial frame, and a fragmented message, wait for more bytes."""

    __slots__ = ("limit", "buffer", "need", "parts", "opcode", "size")

    def __init__(self, limit: int):
        self.limit = limit
        self.buffer: bytearray | None = None  # bytes not yet parsed (None: nothing waits)
        self.need = 0                         # bytes the buffer needs before parsing again
        self.parts: list[bytes] | None = None  # payloads of a fragmented message so far
        self.opcode = 0                       # that message's opcode
        self.size = 0                         # and its size so far

    @property
    def idle(self) -> bool:
        """True when no partial frame or message waits (the parser holds no memory)."""
        return self.buffer is None and self.parts is None

    def feed(self, data: bytes) -> Iterator[tuple[int, bytes | str]]:
        """Everything `data` completes, in order, one item at a time (as gevent-websocket reads
        one message at a time): a protocol violation raises FrameError after the items before it."""
        if self.buffer is not None:
            self.buffer += data
            if len(self.buffer) < self.need:
                return
            data, self.buffer = self.buffer, None
        pos, end = 0, len(data)
        try:
            while pos < end:
                items: list[tuple[int, bytes | str]] = []
                taken = self._frame(data, pos, end, items)
                if taken == 0:
                    break
                pos += taken
                yield from items
        finally:  # (also when the caller stops early: what is left waits for next time)
            self.buffer = bytearray(data[pos:]) if pos < end else None

    def _frame(self, data: bytes, pos: int, end: int, items: list) -> int:
        """Parse the frame at `pos` into `items`; its size, or 0 (and `need` set) if incomplete."""
        self.need = 0
        if end - pos < 2:
            self.need = 2
            return 0
        first, second = data[pos], data[pos + 1]
        opcode, length, header = first & 0x0F, second & 0x7F, 2
        if first & 0x70:
            raise FrameError(PROTOCOL_ERROR, "reserved bits set")
        if opcode >= CLOSE and (not first & 0x80 or length > 125):
            raise FrameError(PROTOCOL_ERROR, "fragmented or long control frame")
        if length >= 126:
            header = 4 if length == 126 else 10
            if end - pos < header:
                self.need = header
                return 0
            length = struct.unpack_from("!H" if header == 4 else "!Q", data, pos + 2)[0]
        masked = second & 0x80
        start = pos + header + (4 if masked else 0)
        if opcode < CLOSE and self.size + length > self.limit:
            raise FrameError(TOO_BIG, "message too large")
        if end - start < length:
            self.need = start - pos + length
            return 0
        payload = data[start:start + length]
        if masked:
            payload = xor_mask(payload, data[start - 4:start])
        self._complete(opcode, bool(first & 0x80), bytes(payload), items)
        return start - pos + length

    def _complete(self, opcode: int, fin: bool, payload: bytes, items: list) -> None:
        """A whole frame: a control frame as is, a data frame into its message."""
        if opcode >= CLOSE:
            if opcode not in (CLOSE, PING, PONG):
                raise FrameError(PROTOCOL_ERROR, f"unknown opcode {opcode}")
            if opcode == CLOSE:
                check_close(payload)
            items.append((opcode, payload))
            return
        if opcode in (TEXT, BINARY):
            if self.parts is not None:
                raise FrameError(PROTOCOL_ERROR, "a new message inside a fragmented one")
            self.parts, self.opcode, self.size = [], opcode, 0
        elif opcode != CONTINUATION or self.parts is None:
            raise FrameError(PROTOCOL_ERROR, f"unexpected opcode {opcode}")
        self.parts.append(payload)
        self.size += len(payload)
        if fin:
            message = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
            self.parts, self.size = None, 0
            items.append((self.opcode, text(message) if self.opcode == TEXT else message))


def text(payload: bytes) -> str:
    """A text message's payload as str; invalid UTF-8 is a protocol error (1007)."""
    try:
        return payload.decode("utf-8")
    except UnicodeDecodeError:
        raise FrameError(INVALID_DATA, "invalid UTF-8 in a text message") from None


def check_close(payload: bytes) -> None:
    """A close frame's payload: empty, or a valid code and an optional UTF-8 reason."""
    if not payload:
        return
    if len(payload) < 2:
        raise FrameError(PROTOCOL_ERROR, "close frame with a one-byte payload")
    if not valid_close_code(struct.unpack("!H", payload[:2])[0]):
        raise FrameError(PROTOCOL_ERROR, "invalid close code")
    text(payload[2:])
