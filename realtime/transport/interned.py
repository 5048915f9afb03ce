"""One string object for equal per-connection strings (request lines, hosts, user agents).

Replaces equal per-connection strings (kept environs, access-line records) with one shared object
(used by wsdirect and the worker; nothing patched). Verified against python-engineio 4.15.1,
python-socketio 5.18.1, Flask-SocketIO 5.7.0, gevent 26.9.0, gevent-websocket 0.10.1
(realtime.transport.VERIFIED). Held by tests/unit/test_wsdetach.py.

Each handshake parses its request line and headers into new strings, though most clients of a
replica send the same method, path, query, protocol, host, address and user agent; the kept
environ and the access-line record of every connection held their own copies.
"""
from __future__ import annotations

from typing import Any

LIMIT = 1024  # distinct strings shared, at most (bounded memory); past it a new value is kept as is
_strings: dict[str, str] = {}


def secret(value: Any) -> bool:
    """Whether a string may carry a client's credential (a query with a token)."""
    return type(value) is str and "token=" in value


def shared_public(value: Any) -> Any:
    """`shared(value)`, unless it may carry a credential: that stays the connection's own, out of
    a pool that outlives it."""
    return value if secret(value) else shared(value)


def shared(value: Any) -> Any:
    """`value`, or the equal string (or tuple of them) already shared; anything else unchanged."""
    if type(value) is not str and type(value) is not tuple:
        return value
    found = _strings.get(value)
    if found is None and len(_strings) < LIMIT:
        found = _strings[value] = value
    return value if found is None else found
