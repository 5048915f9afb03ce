"""The environs python-socketio keeps, one per connection, held as what differs between clients.

Replaces the WSGI environ python-socketio keeps per client with a compact one (used by wsdirect, so
only with the layer on). Verified against python-engineio 4.15.1, python-socketio 5.18.1,
Flask-SocketIO 5.7.0, gevent 26.9.0, gevent-websocket 0.10.1 (realtime.transport.VERIFIED). Held to
the stock behaviour by tests/unit/test_keptenviron.py and tests/unit/test_wsdetach.py.

Flask-SocketIO builds a request context from a connection's environ for every event, so
python-socketio keeps it (`Server.environ`) for the connection's life. Slimmed (wsdirect), it is
still a dict of some twenty WSGI keys per connection, though a replica's connections differ only
in the client's address, port and query string and in their Flask-SocketIO session. A
`KeptEnvirons` holds each as a `Kept` record of those and one dict of the rest, shared by every
connection with equal rest; reading one builds a new dict (once per event, cheap next to the event), and the
session Flask-SocketIO stores in it on a connection's first event is kept.
"""
from __future__ import annotations

from typing import Any

OWN = ("REMOTE_ADDR", "REMOTE_PORT", "QUERY_STRING", "saved_session")  # per connection
LIMIT = 256  # distinct shared parts at most (bounded memory); past it an environ is kept whole
_shared: dict[tuple, dict[str, Any]] = {}


class Environ(dict):
    """A kept environ as read for one event: a session stored in it is kept for the next."""

    __slots__ = ("kept",)

    def __setitem__(self, key: str, value: Any) -> None:
        dict.__setitem__(self, key, value)
        if key == "saved_session":
            self.kept.session = value


class Kept:
    """One connection's environ: the part it shares, and its own values."""

    __slots__ = ("rest", "address", "port", "query", "session")

    def __init__(self, rest: dict[str, Any], own: dict[str, Any]):
        self.rest = rest
        self.address, self.port, self.query, self.session = (own.get(key) for key in OWN)

    def environ(self) -> Environ:
        """A new dict of the whole environ."""
        environ = Environ(self.rest)
        environ.kept = self
        for key, value in zip(OWN, (self.address, self.port, self.query, self.session)):
            if value is not None:
                dict.__setitem__(environ, key, value)
        return environ


def shared_rest(environ: dict[str, Any]) -> dict[str, Any] | None:
    """The dict of `environ` but its OWN keys, shared with equal ones; None past LIMIT."""
    rest = {key: value for key, value in environ.items() if key not in OWN}
    try:
        identity = tuple(sorted(rest.items(), key=lambda item: item[0]))
        found = _shared.get(identity)
    except TypeError:  # an unhashable value: this one is not shared
        return None
    if found is None and len(_shared) < LIMIT:
        found = _shared[identity] = rest
    return found


class KeptEnvirons(dict):
    """python-socketio's `Server.environ` (engine.io sid -> environ), with compact entries.

    python-socketio stores, reads (`get`, `[]`), tests and deletes entries; entries given to
    `keep` are read back as new dicts (Kept.environ), any other as stored.
    """

    __slots__ = ()

    def keep(self, sid: str, environ: dict[str, Any]) -> None:
        """Hold `environ` compactly (whole when its shared part cannot be)."""
        rest = shared_rest(environ)
        dict.__setitem__(self, sid, environ if rest is None else Kept(rest, environ))

    def get(self, sid: str, default: Any = None) -> Any:
        """The environ of `sid`, or `default`."""
        value = dict.get(self, sid, default)
        return value.environ() if type(value) is Kept else value

    def __getitem__(self, sid: str) -> Any:
        value = dict.__getitem__(self, sid)
        return value.environ() if type(value) is Kept else value
