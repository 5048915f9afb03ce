"""Flask-SocketIO's per-client session without an instance dict (a small, pinned adapter).

Replaces Flask-SocketIO's `_ManagedSession` (realtime.transport.install; `uninstall` puts it back).
Verified against python-engineio 4.15.1, python-socketio 5.18.1, Flask-SocketIO 5.7.0, gevent
26.9.0, gevent-websocket 0.10.1 (realtime.transport.VERIFIED). Held to the stock behaviour by
tests/unit/test_socketsession.py.

Flask-SocketIO keeps one session per client for the connection's life (`_ManagedSession`, a
dict with Flask's SessionMixin), and Flask sets `session.accessed = True` on every access. On a
dict subclass that attribute grew an instance `__dict__` per connection. The subclass
installed here holds Flask's two flags in slots instead, with SessionMixin's defaults.
"""
from __future__ import annotations

from typing import Any

import flask_socketio

_stock: dict[str, type] = {}


class SocketSession(flask_socketio._ManagedSession):
    """A client's Socket.IO session: a dict, with Flask's `accessed` and `modified` in slots."""

    __slots__ = ("accessed", "modified")

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.accessed = self.modified = True  # SessionMixin's class defaults, which slots hide


def install() -> bool:
    """Have Flask-SocketIO create SocketSession (idempotent; realtime.transport checks versions)."""
    if _stock:
        return True
    _stock["_ManagedSession"] = flask_socketio._ManagedSession
    flask_socketio._ManagedSession = SocketSession
    return True


def uninstall() -> None:
    """Put Flask-SocketIO's class back (tests)."""
    if _stock:
        flask_socketio._ManagedSession = _stock.pop("_ManagedSession")
