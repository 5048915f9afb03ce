"""The JSON module Socket.IO packets are decoded with: hostile shapes become refusable values.

Replaces the JSON module python-socketio encodes and decodes packets with (chosen by create_app,
`json=` of `socketio.init_app`, when realtime.transport is active; nothing patched). Verified
against python-engineio 4.15.1, python-socketio 5.18.1, Flask-SocketIO 5.7.0, gevent 26.9.0,
gevent-websocket 0.10.1 (realtime.transport.VERIFIED). Held to the stock behaviour by
tests/unit/test_wire_adapters.py and tests/unit/test_factory.py.

python-engineio's own decoder raises on integers over 100 digits, which drops the packet
without an ack; deep nesting can exhaust the recursion limit (and, with a binary attachment,
wedge python-socketio's packet state). Here an over-long integer becomes `inf` and anything
nested deeper than MAX_DEPTH becomes None, so the event reaches its handler and is refused
with a structured error like any other bad value.
"""
from __future__ import annotations

import json
from json import dumps  # noqa: F401  (the module must offer dumps too)
from typing import Any

MAX_DIGITS = 100
MAX_DEPTH = 32


def _bounded_int(text: str) -> int | float:
    """An integer, or inf when it has more digits than anyone sends on purpose."""
    return int(text) if len(text) <= MAX_DIGITS else float("inf")


def _flatten(value: Any, depth: int = 0) -> Any:
    """`value` with containers below MAX_DEPTH replaced by None (iterative: no recursion limit)."""
    if not isinstance(value, (dict, list)):
        return value
    root = [value]
    stack = [(root, 0, 0)]
    while stack:
        container, key, level = stack.pop()
        item = container[key]
        if not isinstance(item, (dict, list)):
            continue
        if level > MAX_DEPTH:
            container[key] = None
            continue
        keys = item.keys() if isinstance(item, dict) else range(len(item))
        stack.extend((item, k, level + 1) for k in keys)
    return root[0]


def loads(text: str | bytes, **kwargs: Any) -> Any:
    """Decode a packet; malformed JSON still raises ValueError, as the caller expects."""
    kwargs.setdefault("parse_int", _bounded_int)
    try:
        value = json.loads(text, **kwargs)
    except RecursionError as exc:
        raise ValueError("JSON nested too deeply") from exc
    # Nesting deeper than MAX_DEPTH takes more than MAX_DEPTH + 1 opening brackets: counting
    # them (in C) spares almost every packet the walk.
    brackets = (b"[", b"{") if isinstance(text, (bytes, bytearray)) else ("[", "{")
    if text.count(brackets[0]) + text.count(brackets[1]) <= MAX_DEPTH + 1:
        return value
    return _flatten(value)
