"""The rooms of each connection, indexed, for python-socketio's client managers.

python-socketio keeps room -> members only, so a disconnect copies the namespace's whole room
dict and scans it for the connection (`basic_disconnect`), and `get_rooms` (Flask-SocketIO's
`rooms()`) scans it too. Every connection has a room of its own, so that is O(connections) per
disconnect: ~50 µs each at 1000 connections, ~0.5 ms at 10 000, and seconds with the event loop
blocked when thousands drop at once (O(n²)). `RoomIndex` keeps, per connection, the rooms it is
in besides its own and the namespace's (None), so both are answered from that.

Written for python-socketio 5.18's BaseManager (wsdirect.EMIT_SUPPORTED pins the same version);
tests/unit/test_roomindex.py checks the state it leaves against the stock manager's.
"""
from __future__ import annotations

from typing import Any

import socketio


class RoomIndex:
    """Mixin for a python-socketio manager: each connection's other rooms, kept on enter/leave."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # namespace -> sid -> the rooms it entered besides None and its own (a tuple: most have one
        # or two, and one is kept per connection)
        self.joined: dict[str, dict[str, tuple]] = {}

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: Any = None) -> None:
        """Enter the room, and note it."""
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        if room is not None and room != sid:
            index = self.joined.setdefault(namespace, {})
            rooms = index.get(sid, ())
            if room not in rooms:
                index[sid] = (*rooms, room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        """Leave the room, and forget it."""
        super().basic_leave_room(sid, namespace, room)
        index = self.joined.get(namespace)
        rooms = index.get(sid) if index is not None else None
        if rooms and room in rooms:
            rest = tuple(r for r in rooms if r != room)
            if rest:
                index[sid] = rest
            else:
                del index[sid]
                if not index:
                    del self.joined[namespace]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        """What python-socketio's does, leaving the rooms the index names instead of a scan."""
        if namespace not in self.rooms:
            return
        for room in (*self._rooms_of(sid, namespace), None):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            if sid in pending.get(namespace, ()):
                pending[namespace].remove(sid)
                if not pending[namespace]:
                    del pending[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list:
        """The rooms `sid` is in (but None), from the index."""
        return self._rooms_of(sid, namespace)

    def _rooms_of(self, sid: str, namespace: str) -> list:
        """Its own room and the indexed ones, those it is still in."""
        rooms = self.rooms.get(namespace, {})
        return [room for room in (sid, *self.joined.get(namespace, {}).get(sid, ()))
                if sid in rooms.get(room, ())]


class LocalManager(RoomIndex, socketio.Manager):
    """The single-process manager (no message queue), with the room index."""
