"""The Socket.IO packet class: python-socketio's, with the search for binary data in one loop.

python-socketio builds a packet for every ack and event it sends, and without being told it walks
the whole payload looking for bytes (`Packet.data_is_binary`): a recursive call, a list and a
`functools.reduce` per value. A join ack lists every user online and every read position, so the
walk grew with the room. This class answers the same question with one loop that stops at the
first bytes. Chosen by create_app (`serializer=` of `socketio.init_app`, a public option) when
realtime.transport is active; nothing patched. Verified against python-socketio 5.18.1
(realtime.transport.VERIFIED); held to the stock answer by tests/unit/test_wire_adapters.py.
"""
from __future__ import annotations

from typing import Any

from socketio import packet


class WirePacket(packet.Packet):
    """python-socketio's Packet; only `data_is_binary` is another implementation of the same answer."""

    @classmethod
    def data_is_binary(cls, data: Any) -> bool:
        """Whether bytes or a bytearray sit anywhere in `data`'s lists and dict values (as stock)."""
        stack = [data]
        pop, extend = stack.pop, stack.extend
        while stack:
            item = pop()
            kind = type(item)
            if kind is str or kind is int or kind is bool or item is None or kind is float:
                continue
            if kind is dict:
                extend(item.values())
            elif kind is list:
                extend(item)
            elif isinstance(item, (bytes, bytearray)):
                return True
            elif isinstance(item, list):  # subclasses: as stock, which asks isinstance
                extend(item)
            elif isinstance(item, dict):
                extend(item.values())
        return False
