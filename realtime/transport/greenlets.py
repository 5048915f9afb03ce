"""A running count of live gevent greenlets, for /metrics and the dashboard.

Replaces nothing: it counts through gevent's public spawn callback, in every state of the layer
(realtime.transport.install starts it, `uninstall` stops it). Verified against python-engineio
4.15.1, python-socketio 5.18.1, Flask-SocketIO 5.7.0, gevent 26.9.0, gevent-websocket 0.10.1
(realtime.transport.VERIFIED). Held by tests/unit/test_greenlet_count.py.

Counting them by walking the heap (`gc.get_objects()`) stalls the event loop for as long as the
heap is big, on a replica with many connections, which every client feels as latency.
A spawn callback counts each gevent Greenlet as it starts and a link as it ends instead; the raw
greenlets wsdirect keeps for its readers count themselves (`count_raw`).
"""
from __future__ import annotations

from typing import Any

_live = 0
_installed = False


def install() -> None:
    """Start counting (once per process; greenlets spawned before are not counted)."""
    global _installed
    if _installed:
        return
    from gevent import Greenlet
    Greenlet.add_spawn_callback(_spawned)
    _installed = True


def uninstall() -> None:
    """Stop counting (tests): gevent's spawn callbacks as they were."""
    global _installed
    if _installed:
        from gevent import Greenlet
        Greenlet.remove_spawn_callback(_spawned)
        _installed = False


def live() -> int:
    """Greenlets spawned since `install()` that have not finished yet."""
    return _live


def count_raw(change: int) -> None:
    """Count raw greenlets the spawn callback cannot see (wsdirect's reader greenlets)."""
    global _live
    _live += change


def _spawned(greenlet: Any) -> None:
    """One more, until it finishes."""
    global _live
    _live += 1
    greenlet.rawlink(_ended)


def _ended(_greenlet: Any) -> None:
    """One fewer."""
    global _live
    _live -= 1
