"""Group commit: the appends greenlets start while Redis is busy go to it as one pipeline.

Each send used to cost its own socket write, read and greenlet switches around one EVALSHA. Here
the first caller of a hub turn spawns a flusher; the calls queued before it runs (the rest of the
turn) go out as one pipeline, and the calls queued while that pipeline is in flight go out as the
next one. One pipeline is in flight at a time, so the scripts reach Redis in the order they were
queued, and Redis runs each one atomically as before: ids, idempotency and per-room order are the
script's, unchanged. Every caller still waits for its own script's reply (or error) before it
returns, so an ack still means the message is persisted.

Deadlines (store/deadline.py) hold per caller: a caller whose deadline passes while its call is
still queued takes it back (nothing of it reaches Redis: the outcome is known); once its call is in
a pipeline on its way, the outcome is unknown. The flusher bounds each pipeline by the latest
deadline among its callers, so a Redis that hangs does not keep it (and the calls queued behind
it) waiting for the socket timeout.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import gevent
from gevent.hub import Waiter, get_hub

from . import deadline

# run(calls) -> one reply or exception per call, in order.
Runner = Callable[[Sequence[tuple[Any, ...]]], list[Any]]


class _Call:
    """One queued call: its arguments, its caller's deadline, and where its reply goes."""

    __slots__ = ("args", "until", "waiter", "sent", "cancelled", "reply")

    def __init__(self, args: tuple[Any, ...], until: float | None):
        self.args = args
        self.until = until
        self.waiter = Waiter()
        self.sent = False
        self.cancelled = False
        self.reply: Any = None


class GroupCommit:
    """Queue calls from many greenlets; a flusher greenlet runs them in batches through `run`."""

    def __init__(self, run: Runner, spawn: Callable[..., Any] = gevent.spawn):
        self._run = run
        self._spawn = spawn
        self._queue: list[_Call] = []
        self._flushing = False
        self.batches = 0  # pipelines sent, and the calls in them: for tests and the profile notes
        self.calls = 0

    def call(self, *args: Any) -> Any:
        """Queue `args`, wait for its reply (raised if it is an exception); gevent greenlets only."""
        queued = _Call(args, deadline.until())
        self._queue.append(queued)
        if not self._flushing:
            self._flushing = True
            self._spawn(self._flush)
        try:
            queued.waiter.get()
        except BaseException as exc:  # the caller's deadline (a gevent.Timeout) or a kill
            if not queued.sent:
                queued.cancelled = True  # the flusher skips it: nothing of it reaches Redis
                deadline.mark_unsent(exc)
            raise
        if isinstance(queued.reply, BaseException):
            raise queued.reply
        return queued.reply

    def _flush(self) -> None:
        """Send what is queued, one pipeline at a time, until the queue is empty."""
        hub = get_hub()
        try:
            while True:
                batch = [c for c in self._queue if not c.cancelled]
                self._queue = []
                if not batch:
                    return
                for queued in batch:
                    queued.sent = True
                self.batches += 1
                self.calls += len(batch)
                for queued, reply in zip(batch, self._bounded(batch)):
                    queued.reply = reply
                    hub.loop.run_callback(queued.waiter.switch, None)
        finally:
            self._flushing = False

    def _bounded(self, batch: list[_Call]) -> list[Any]:
        """`run` over the batch's arguments, within the latest of its callers' deadlines."""
        untils = [c.until for c in batch]
        limit = None if None in untils else max(untils) - time.monotonic()  # type: ignore[type-var]
        timer = gevent.Timeout(max(limit, 0.0)) if limit is not None else None
        if timer is not None:
            timer.start()
        try:
            replies = self._run([c.args for c in batch])
        except gevent.Timeout as exc:
            if exc is not timer:
                raise
            replies = [deadline.Expired(outcome_unknown=True) for _ in batch]
        except Exception as exc:  # the pipeline as a whole failed (connection lost, ...): every call
            replies = [exc] * len(batch)
        finally:
            if timer is not None:
                timer.close()
        if len(replies) != len(batch):  # never expected: fail each call rather than mismatch replies
            replies = [RuntimeError("group commit: reply count mismatch")] * len(batch)
        return replies
