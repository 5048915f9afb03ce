"""Group commit: the appends greenlets start in one turn of the gevent hub go to Redis as one pipeline.

The first caller of a turn (the leader) opens a batch and yields once to the hub (`sleep(0)`): the
greenlets that the same turn woke (the other sends read in it) run meanwhile, and a call of theirs
joins the open batch instead of going out on its own. The leader then sends its own call and
theirs as one pipeline, in its own greenlet, and hands each follower its script's reply. A leader
that nobody joined sends its call alone, as without group commit. Batches of different turns may
be in flight at once, on different connections, as single calls were.

Redis runs each script of a pipeline atomically, in the pipeline's order: ids, idempotency and
per-room order are the script's, unchanged. Every caller waits for its own script's reply (or
error) before it returns, so an ack still means the message is persisted.

Deadlines (store/deadline.py) hold per caller. The leader's pipeline runs under the leader's
deadline; if that passes first, the followers it carried get `Expired` with an unknown outcome
at once. A follower whose own deadline passes while it waits gives up then: before the pipeline
left, its call is taken out (nothing of it reaches Redis: the outcome is known); after, unknown.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import gevent
from gevent.hub import Waiter, get_hub

from . import deadline

# run_batch(calls) -> one reply or exception per call, in order.
Runner = Callable[[Sequence[tuple[Any, ...]]], list[Any]]


class _Call:
    """A follower's call: its arguments, and where its reply goes."""

    __slots__ = ("args", "waiter", "sent", "cancelled", "reply")

    def __init__(self, args: tuple[Any, ...]):
        self.args = args
        self.waiter = Waiter()
        self.sent = False
        self.cancelled = False
        self.reply: Any = None


class GroupCommit:
    """Calls of one hub turn through `run_batch` together; a call alone through `run_one`."""

    def __init__(self, run_one: Callable[..., Any], run_batch: Runner, spawn: Callable[..., Any] = gevent.spawn):
        self._run_one = run_one
        self._run = run_batch
        self._spawn = spawn
        self._open: list[_Call] | None = None  # the batch of this turn, while its leader waits
        self.batches = 0  # round trips (a call alone or a pipeline), and the calls in them
        self.calls = 0

    def call(self, *args: Any) -> Any:
        """This call's reply (raised if it is an exception), sent with the turn's others; gevent only."""
        if self._open is not None:
            return self._follow(args)
        followers: list[_Call] = []
        self._open = followers
        try:
            gevent.sleep(0)  # the rest of this turn runs; its calls join `followers`
        except BaseException as exc:  # the leader's deadline passed here: nothing of its call was sent
            self._open = None
            deadline.mark_unsent(exc)
            if followers:  # theirs still go
                self._spawn(self._send_for, followers)
            raise
        self._open = None
        followers = [c for c in followers if not c.cancelled]
        self.batches += 1
        self.calls += 1 + len(followers)
        if not followers:
            return self._run_one(*args)  # alone: under the caller's own deadline, as without group commit
        return self._lead(args, followers)

    def _follow(self, args: tuple[Any, ...]) -> Any:
        """Join the open batch and wait for this call's reply."""
        mine = _Call(args)
        self._open.append(mine)  # type: ignore[union-attr]
        try:
            mine.waiter.get()
        except BaseException as exc:  # this caller's deadline (a gevent.Timeout) or a kill
            if not mine.sent:
                mine.cancelled = True  # the leader leaves it out: nothing of it reaches Redis
                deadline.mark_unsent(exc)
            raise
        if isinstance(mine.reply, BaseException):
            raise mine.reply
        return mine.reply

    def _lead(self, args: tuple[Any, ...], followers: list[_Call]) -> Any:
        """Send this call and the followers' as one pipeline; hand each follower its reply."""
        for follower in followers:
            follower.sent = True
        try:
            mine, *theirs = self._run([args, *(f.args for f in followers)])
        except BaseException as exc:  # the leader's deadline, or the pipeline as a whole failed
            failure = exc if isinstance(exc, Exception) else deadline.Expired(outcome_unknown=True)
            self._hand(followers, [failure] * len(followers))
            raise
        self._hand(followers, theirs)
        if isinstance(mine, BaseException):
            raise mine
        return mine

    def _send_for(self, followers: list[_Call]) -> None:
        """Send the followers of a leader that gave up before sending (in a greenlet of their own)."""
        followers = [c for c in followers if not c.cancelled]
        if not followers:
            return
        for follower in followers:
            follower.sent = True
        try:
            replies = self._run([f.args for f in followers])
        except Exception as exc:  # noqa: BLE001 - each follower raises it as its own call's failure
            replies = [exc] * len(followers)
        self.batches += 1
        self.calls += len(followers)
        self._hand(followers, replies)

    @staticmethod
    def _hand(followers: list[_Call], replies: Sequence[Any]) -> None:
        """Wake each follower with its reply (from the hub: a Waiter is switched to from there)."""
        loop = get_hub().loop
        for follower, reply in zip(followers, replies):
            follower.reply = reply
            loop.run_callback(follower.waiter.switch, None)
