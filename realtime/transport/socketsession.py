"""Flask-SocketIO's per-client session without an instance dict (a small, pinned adapter).

Flask-SocketIO keeps one session per client for the connection's life (`_ManagedSession`, a
dict with Flask's SessionMixin), and Flask sets `session.accessed = True` on every access. On a
dict subclass that attribute grew an instance `__dict__`: 336 bytes per connection. The subclass
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
