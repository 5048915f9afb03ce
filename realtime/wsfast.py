"""Two fixes to gevent-websocket 0.10 (small, tested adapters).

- Frame unmasking: gevent-websocket unmasks every client frame byte by byte in Python: a 100 kB
  frame costs tens of milliseconds of the replica's only worker. wsaccel's C masker does it in
  microseconds; without wsaccel, one big-integer XOR does it in C too. The UTF-8 check already
  uses wsaccel when it is installed (gevent-websocket looks for it itself).
- `WebSocket.current_app`: when the WSGI application has no `current_app` (Flask has none),
  gevent-websocket defines a new `MockApp` class on every call, and calls it twice for every
  websocket as the object is dropped (its `__del__` closes it again): two class objects per
  connection (13.7 µs each here), which only the cyclic collector frees. One shared stand-in
  answers instead.
"""
from __future__ import annotations

from typing import Any

from geventwebsocket.websocket import Header, WebSocket

try:
    from wsaccel.xormask import XorMaskerSimple
except ImportError:  # pragma: no cover - wsaccel is a dependency; this keeps it optional
    XorMaskerSimple = None


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


def install() -> None:
    """Replace gevent-websocket's per-byte loop and its class per `current_app`; idempotent."""
    Header.mask_payload = _mask_payload
    Header.unmask_payload = _mask_payload
    WebSocket.current_app = property(_current_app)
