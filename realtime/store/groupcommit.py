"""Group commit: the appends greenlets start while Redis is busy go to it as one pipeline.

At most one round trip of appends is in flight per process. A call that finds none goes out at
once, on its own, in its caller's greenlet (no added latency or work when sends do not overlap).
Calls that arrive while one is in flight queue up; when it returns, a flusher greenlet sends the
queue as one pipeline, and the calls queued meanwhile as the next one. So the scripts reach Redis
in the order they were queued, and Redis runs each one atomically as before: ids, idempotency and
per-room order are the script's, unchanged. Every caller still waits for its own script's reply
(or error) before it returns, so an ack still means the message is persisted.

Deadlines (store/deadline.py) hold per caller: a caller whose deadline passes while its call is
still queued takes it back (nothing of it reaches Redis: the outcome is known); once its call is
on its way, the outcome is unknown. The flusher bounds each pipeline by the latest deadline among
its callers, so a Redis that hangs does not keep it (and the calls queued behind it) waiting for
the socket timeout.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import gevent
from gevent.hub import Waiter, get_hub

from . import deadline

# run_batch(calls) -> one reply or exception per call, in order.
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
    """One call at a time through `run_one`; the calls that wait meanwhile go through `run_batch`."""

    def __init__(self, run_one: Callable[..., Any], run_batch: Runner, spawn: Callable[..., Any] = gevent.spawn):
        self._run_one = run_one
        self._run = run_batch
        self._spawn = spawn
        self._queue: list[_Call] = []
        self._busy = False  # a call or a pipeline is in flight
        self.batches = 0  # round trips (a call on its own or a pipeline), and the calls in them
        self.calls = 0

    def call(self, *args: Any) -> Any:
        """`run_one(*args)`, or queued for the next pipeline while one is in flight; gevent greenlets only."""
        if not self._busy:
            self._busy = True
            self.batches += 1
            self.calls += 1
            try:
                return self._run_one(*args)  # under the caller's own deadline, as without group commit
            finally:
                self._hand_over()
        queued = _Call(args, deadline.until())
        self._queue.append(queued)
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

    def _hand_over(self) -> None:
        """After a call in flight returned: the flusher takes what queued meanwhile, if anything."""
        if self._queue:
            self._spawn(self._flush)
        else:
            self._busy = False

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
            self._busy = False

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
