"""Time bounds on the store calls of a client event or an HTTP request, so a Redis that hangs gets
a prompt refusal instead of a silence.

A Redis that is alive but does not answer (stopped, partitioned, its socket buffer full) makes every
call wait for the socket timeout, and a client's later events queue behind the one waiting. An event
or a request sets a deadline (`within`) for the greenlet running it; every store call it makes then
waits at most until that deadline, under a gevent.Timeout that can only fire inside redis-py, which
drops a connection interrupted mid-command instead of returning it to the pool with a reply still
due. Nothing else is interrupted (a write to a client's socket never is). Past the deadline a store
call fails at once. Threading mode (the unit tests) keeps only the socket timeout.
"""
from __future__ import annotations

import contextlib
import contextvars
import time
from typing import Any, Callable, Iterator

from .base import StoreUnavailable

_until: contextvars.ContextVar[float | None] = contextvars.ContextVar("realtime_store_deadline", default=None)


class Expired(StoreUnavailable):
    """The deadline passed before the store answered; `outcome_unknown` if a write was under way."""

    def __init__(self, seconds: float | None = None, outcome_unknown: bool = False):
        within = f" within {seconds:g} s" if seconds else " in time"
        super().__init__(f"no answer from the state store{within}")
        self.outcome_unknown = outcome_unknown


@contextlib.contextmanager
def within(seconds: float | None) -> Iterator[None]:
    """Store calls in this block (this greenlet) end `seconds` from now at the latest; None: unbounded."""
    token = _until.set(time.monotonic() + seconds if seconds else None)
    try:
        yield
    finally:
        _until.reset(token)


def remaining() -> float | None:
    """Seconds left before this greenlet's deadline; None when it has none."""
    until = _until.get()
    return None if until is None else until - time.monotonic()


def until() -> float | None:
    """This greenlet's deadline (time.monotonic()); None when it has none."""
    return _until.get()


def mark_unsent(exc: BaseException) -> None:
    """Say that the call `exc` interrupted never reached the store (so its outcome is known)."""
    exc.realtime_unsent = True  # type: ignore[attr-defined]


def bounded() -> bool:
    """Whether a wait can be interrupted here: a gevent-patched process (a gunicorn gevent worker)."""
    global _patched
    if not _patched:  # asked per store call: once patched, a process stays so
        try:
            from gevent import monkey
        except ImportError:  # gevent is optional outside the server
            return False
        _patched = monkey.is_module_patched("socket")
    return _patched


_patched = False


def call(function: Callable[..., Any], *args: Any, write: bool = False, **kwargs: Any) -> Any:
    """`function(*args, **kwargs)` within the deadline: Expired past it (outcome unknown for a write)."""
    left = remaining()
    if left is None:
        return function(*args, **kwargs)
    if left <= 0:
        raise Expired()  # nothing sent: the outcome is known
    if not bounded():
        return function(*args, **kwargs)
    import gevent

    timer = gevent.Timeout(left)
    timer.start()
    try:
        return function(*args, **kwargs)
    except gevent.Timeout as exc:
        if exc is not timer:  # an outer bound of the caller's own
            raise
        # A call that could tell (store/groupcommit.py: still queued) says it never left.
        raise Expired(outcome_unknown=write and not getattr(exc, "realtime_unsent", False)) from None
    finally:
        timer.close()
