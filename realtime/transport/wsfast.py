"""Three fixes to gevent-websocket 0.10 (small, tested adapters).

Replaces gevent-websocket's `Header.mask_payload`/`unmask_payload` and
`WebSocket.current_app`/`read_frame`/`read_message` (realtime.transport.install; `uninstall` puts
them back). Verified against python-engineio 4.15.1, python-socketio 5.18.1, Flask-SocketIO 5.7.0,
gevent 26.9.0, gevent-websocket 0.10.1 (realtime.transport.VERIFIED). Held to the stock behaviour
by tests/unit/test_wire_adapters.py and tests/integration/test_hostile.py (run with the layer on
and off).

- Frame unmasking: gevent-websocket unmasks every client frame byte by byte in Python: a large
  frame holds the replica's only worker for a long time. wsaccel's C masker does it at C speed;
  without wsaccel, one big-integer XOR does it in C too. The UTF-8 check already
  uses wsaccel when it is installed (gevent-websocket looks for it itself).
- `WebSocket.current_app`: when the WSGI application has no `current_app` (Flask has none),
  gevent-websocket defines a new `MockApp` class on every call, and calls it twice for every
  websocket as the object is dropped (its `__del__` closes it again): two class objects per
  connection, which only the cyclic collector frees. One shared stand-in
  answers instead.
- Message size: gevent-websocket reads a frame of whatever length its header announces, and
  joins any number of fragments, before engine.io checks the message against its size limit.
  Here a data frame that would take the message past MAX_MESSAGE bytes is refused from its
  header (a protocol error: gevent-websocket closes with 1002), as realtime.transport.wsframes refuses it
  on the detached path (1009).
"""
from __future__ import annotations

from typing import Any

from geventwebsocket.exceptions import ProtocolError, WebSocketError
from geventwebsocket.websocket import Header, WebSocket

try:
    from wsaccel.xormask import XorMaskerSimple
except ImportError:  # pragma: no cover - wsaccel is a dependency; this keeps it optional
    XorMaskerSimple = None

MAX_MESSAGE = 4 * 1_000_000 + 4  # bytes a message may take; install() sets it from the settings
_stock: dict[tuple[type, str], Any] = {}  # (class, attribute) -> gevent-websocket's own


def xor_mask(payload: bytes, mask: bytes) -> bytearray:
    """`payload` XORed with the 4-byte `mask` repeated."""
    if not payload:
        return bytearray()
    if XorMaskerSimple is not None:
        return bytearray(XorMaskerSimple(bytes(mask)).process(bytes(payload)))
    size = len(payload)
    key = (bytes(mask) * (size // 4 + 1))[:size]
    value = int.from_bytes(payload, "little") ^ int.from_bytes(key, "little")
    return bytearray(value.to_bytes(size, "little"))


def _mask_payload(self: Header, payload: bytes) -> bytearray:
    """Drop-in for Header.mask_payload (same result, C speed)."""
    return xor_mask(bytes(payload)[: self.length], bytes(self.mask))


class NoApp:
    """The application gevent-websocket tells of a closed websocket when the WSGI app has none."""

    @staticmethod
    def on_close(reason: Any) -> None:
        """Nothing to tell."""


NO_APP = NoApp()


def _current_app(self: WebSocket) -> Any:
    """WebSocket.current_app: the WSGI application's `current_app`, else the shared stand-in."""
    return getattr(self.handler.server.application, "current_app", NO_APP)


class MessageTooBig(ProtocolError):
    """A client's message passes MAX_MESSAGE (gevent-websocket closes the connection)."""


def _read_frame(self: WebSocket, taken: int = 0) -> tuple:
    """WebSocket.read_frame, refusing from its header a data frame that takes its message
    (`taken` bytes so far) past MAX_MESSAGE."""
    header = Header.decode_header(self.stream)
    if header.flags:
        raise ProtocolError
    if header.opcode < self.OPCODE_CLOSE and taken + header.length > MAX_MESSAGE:
        raise MessageTooBig(f"message of more than {MAX_MESSAGE} bytes")
    if not header.length:
        return header, b""
    try:
        payload = self.raw_read(header.length)
    except Exception:
        payload = b""
    if len(payload) != header.length:
        raise WebSocketError("Unexpected EOF reading frame payload")
    if header.mask:
        payload = header.unmask_payload(payload)
    return header, payload


def _read_message(self: WebSocket) -> Any:
    """WebSocket.read_message (0.10, unchanged but for the size its frames are read against)."""
    opcode = None
    message = bytearray()
    while True:
        header, payload = _read_frame(self, len(message))
        f_opcode = header.opcode
        if f_opcode in (self.OPCODE_TEXT, self.OPCODE_BINARY):
            if opcode:
                raise ProtocolError(f"The opcode in non-fin frame is expected to be zero, got {f_opcode!r}")
            self.utf8validator.reset()
            self.utf8validate_last = (True, True, 0, 0)
            opcode = f_opcode
        elif f_opcode == self.OPCODE_CONTINUATION:
            if not opcode:
                raise ProtocolError("Unexpected frame with opcode=0")
        elif f_opcode == self.OPCODE_PING:
            self.handle_ping(header, payload)
            continue
        elif f_opcode == self.OPCODE_PONG:
            self.handle_pong(header, payload)
            continue
        elif f_opcode == self.OPCODE_CLOSE:
            self.handle_close(header, payload)
            return None
        else:
            raise ProtocolError(f"Unexpected opcode={f_opcode!r}")
        if opcode == self.OPCODE_TEXT:
            self.validate_utf8(payload)
        message += payload
        if header.fin:
            break
    if opcode == self.OPCODE_TEXT:
        self.validate_utf8(message)
        return self._decode_bytes(message)
    return message


def install(max_message: int | None = None) -> None:
    """Replace gevent-websocket's per-byte loop and its class per `current_app`, bound its
    messages at `max_message` bytes; idempotent."""
    global MAX_MESSAGE
    if max_message:
        MAX_MESSAGE = max_message
    if not _stock:
        _stock.update({(Header, name): Header.__dict__[name] for name in ("mask_payload", "unmask_payload")})
        _stock.update({(WebSocket, name): WebSocket.__dict__[name]
                       for name in ("current_app", "read_frame", "read_message")})
    Header.mask_payload = _mask_payload
    Header.unmask_payload = _mask_payload
    WebSocket.current_app = property(_current_app)
    WebSocket.read_frame = _read_frame
    WebSocket.read_message = _read_message


def uninstall() -> None:
    """Put gevent-websocket's own attributes back."""
    for (owner, name), stock in _stock.items():
        setattr(owner, name, stock)
    _stock.clear()
