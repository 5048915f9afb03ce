"""Fast websocket frame unmasking for gevent-websocket 0.10 (a small, tested adapter).

gevent-websocket unmasks every client frame byte by byte in Python: a 100 kB frame costs
tens of milliseconds of the replica's only worker. wsaccel's C masker does it in microseconds;
without wsaccel, one big-integer XOR does it in C too. The UTF-8 check already uses wsaccel
when it is installed (gevent-websocket looks for it itself).
"""
from __future__ import annotations

from geventwebsocket.websocket import Header

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


def install() -> None:
    """Replace gevent-websocket's per-byte loop; idempotent."""
    Header.mask_payload = _mask_payload
    Header.unmask_payload = _mask_payload
