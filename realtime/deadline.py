"""Time bounds on client events and HTTP requests, so a Redis that hangs gets a prompt refusal.

A Redis that is alive but does not answer (stopped, partitioned, its socket buffer full) makes every
call wait for the socket timeout, and a client's later events queue behind the one waiting. On a
gevent replica the bound is a gevent.Timeout in the greenlet running the event: it can only fire
where that greenlet waits (a socket read or write, a pool or lock wait), and redis-py drops a
connection interrupted mid-command instead of returning it to the pool with a reply still due.
Elsewhere (threading mode: the unit tests) nothing is bounded beyond the socket timeout.
"""
from __future__ import annotations

from typing import Any, Callable

from .store import StoreUnavailable


class Expired(StoreUnavailable):
    """A bounded call ran out of time; `outcome_unknown` if a store write was under way."""

    def __init__(self, seconds: float, outcome_unknown: bool = False):
        super().__init__(f"no answer from the state store within {seconds:g} s")
        self.outcome_unknown = outcome_unknown


def bounded() -> bool:
    """Whether calls can be bounded here: a gevent-patched process (a gunicorn gevent worker)."""
    try:
        from gevent import monkey
    except ImportError:  # gevent is optional outside the server
        return False
    return monkey.is_module_patched("socket")


def call_within(seconds: float | None, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`function(*args, **kwargs)`, or Expired once `seconds` have passed (gevent replicas only)."""
    if not seconds or not bounded():
        return function(*args, **kwargs)
    import gevent

    timer = gevent.Timeout(seconds)
    timer.start()
    try:
        return function(*args, **kwargs)
    except gevent.Timeout as exc:
        if exc is not timer:  # an inner bound of the caller's own
            raise
        raise Expired(seconds, getattr(exc, "outcome_unknown", False)) from None
    finally:
        timer.close()
