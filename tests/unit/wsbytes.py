"""Websocket frames as a client sends them, for the frame parser's and the detached reader's tests."""
from __future__ import annotations

import os
import struct


def client_frame(opcode: int, payload: bytes, fin: bool = True, mask: bool = True, rsv: int = 0) -> bytes:
    """A frame as a client sends it (masked unless told otherwise)."""
    size = len(payload)
    first = (0x80 if fin else 0) | rsv | opcode
    if size < 126:
        header = bytes((first, (0x80 if mask else 0) | size))
    elif size <= 0xFFFF:
        header = bytes((first, (0x80 if mask else 0) | 126)) + struct.pack("!H", size)
    else:
        header = bytes((first, (0x80 if mask else 0) | 127)) + struct.pack("!Q", size)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))
