"""The rooms of each connection, indexed, for python-socketio's client managers.

Replaces python-socketio's room bookkeeping in the client manager (chosen at app build time:
create_app takes `LocalManager` and `RedisQueue` indexes its rooms only when realtime.transport is
active; nothing patched). Verified against python-engineio 4.15.1, python-socketio 5.18.1,
Flask-SocketIO 5.7.0, gevent 26.9.0, gevent-websocket 0.10.1 (realtime.transport.VERIFIED). Held to
the stock behaviour by tests/unit/test_roomindex.py (the state it leaves against the stock
manager's).

python-socketio keeps room -> members only, so a disconnect copies the namespace's whole room
dict and scans it for the connection (`basic_disconnect`), and `get_rooms` (Flask-SocketIO's
`rooms()`) scans it too. Every connection has a room of its own, so that is O(connections) per
disconnect, and the event loop blocked for seconds when thousands drop at once (O(n²)).
`RoomIndex` keeps, per connection, the rooms it is in besides its own and the namespace's (None),
so both are answered from that.

It also keeps each room's members in lighter containers than python-socketio's `bidict` (two
dicts and three objects for a room of one member): a connection's own room is an
`OwnRoom` (one member, a slot) and any other room a `Room` (one dict). Only the namespace's
None room stays a bidict: python-socketio looks up a connection by its engine.io sid there
(`_invm`) and relies on its duplicate check. Of a room, python-socketio reads `_fwdm` (the
members as a dict) and uses it as a mapping; nothing else.

Written for python-socketio 5.18's BaseManager (realtime.transport.VERIFIED pins the version);
tests/unit/test_roomindex.py checks the state it leaves against the stock manager's.
"""
from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import socketio


class Room(dict):
    """A room's members, sid -> engine.io sid: one dict where python-socketio keeps a bidict."""

    __slots__ = ()

    @property
    def _fwdm(self) -> dict:
        """The members, as python-socketio reads a bidict's forward mapping."""
        return self


class OwnRoom(MutableMapping):
    """A connection's own room (its sid names it; no one else may enter): that one member."""

    __slots__ = ("sid", "eio_sid")  # one per connection: no dict at all

    def __init__(self, sid: str, eio_sid: Any):
        self.sid, self.eio_sid = sid, eio_sid

    @property
    def _fwdm(self) -> dict:
        """The member, as python-socketio reads a bidict's forward mapping."""
        return {} if self.sid is None else {self.sid: self.eio_sid}

    def __contains__(self, sid: Any) -> bool:
        return sid is not None and sid == self.sid

    def __getitem__(self, sid: Any) -> Any:
        if sid is None or sid != self.sid:
            raise KeyError(sid)
        return self.eio_sid

    def get(self, sid: Any, default: Any = None) -> Any:
        """The member's engine.io sid, or `default` for any other sid."""
        return self.eio_sid if sid is not None and sid == self.sid else default

    def __setitem__(self, sid: Any, eio_sid: Any) -> None:
        if self.sid is not None and sid != self.sid:
            raise ValueError(f"room {self.sid!r} is that connection's own")
        self.sid, self.eio_sid = sid, eio_sid

    def __delitem__(self, sid: Any) -> None:
        self[sid]  # KeyError unless it is the member
        self.sid = self.eio_sid = None

    def __iter__(self) -> Iterator[Any]:
        return iter(() if self.sid is None else (self.sid,))

    def __len__(self) -> int:
        return 0 if self.sid is None else 1

    def __repr__(self) -> str:
        return f"OwnRoom({self._fwdm!r})"


class RoomIndex:
    """Mixin for a python-socketio manager: each connection's other rooms, kept on enter/leave."""

    always_indexed = False  # True: indexed whatever the layer's state (a class built only for it)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # Built while the transport layer is off (REALTIME_FAST_PATHS), it is python-socketio's own
        # manager: every method below hands over to it (RedisQueue keeps this mixin either way).
        from . import active
        self.indexed = self.always_indexed or active()
        # namespace -> sid -> the rooms it entered besides None and its own (a tuple: most have one
        # or two, and one is kept per connection)
        self.joined: dict[str, dict[str, tuple]] = {}

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: Any = None) -> None:
        """Enter the room (python-socketio's checks, then a `Room` or `OwnRoom`), and note it."""
        if room is None or not self.indexed:
            super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
            return
        if eio_sid is None and namespace not in self.rooms:
            raise ValueError("sid is not connected to requested namespace")
        if sid != room and self.is_sid_room(namespace, room):
            raise ValueError("cannot enter a sid room")
        by_room = self.rooms.setdefault(namespace, {})
        if eio_sid is None:
            eio_sid = by_room[None][sid]  # KeyError for a sid not connected, as python-socketio's
        members = by_room.get(room)
        if members is None:
            by_room[room] = OwnRoom(sid, eio_sid) if room == sid else Room({sid: eio_sid})
        else:
            members[sid] = eio_sid
        if room != sid:
            index = self.joined.setdefault(namespace, {})
            rooms = index.get(sid, ())
            if room not in rooms:
                index[sid] = (*rooms, room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        """Leave the room, and forget it."""
        super().basic_leave_room(sid, namespace, room)
        if not self.indexed:
            return
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
        if not self.indexed:
            return super().basic_disconnect(sid, namespace, **kwargs)
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
        if not self.indexed:
            return super().get_rooms(sid, namespace)
        return self._rooms_of(sid, namespace)

    def _rooms_of(self, sid: str, namespace: str) -> list:
        """Its own room and the indexed ones, those it is still in."""
        rooms = self.rooms.get(namespace, {})
        return [room for room in (sid, *self.joined.get(namespace, {}).get(sid, ()))
                if sid in rooms.get(room, ())]


class LocalManager(RoomIndex, socketio.Manager):
    """The single-process manager (no message queue), with the room index (create_app: layer on)."""

    always_indexed = True
