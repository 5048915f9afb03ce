"""The bounded engine.io send queue (realtime/sendbound.py), on gevent's queue as a replica has it."""
from __future__ import annotations

from gevent.queue import JoinableQueue
from engineio import packet

from realtime import sendbound


def bounded(limit: int):
    """A bounded queue class and the overflows it reported."""
    overflows = []
    return sendbound.bounded_queue_class(JoinableQueue, limit, lambda q, held: overflows.append(held)), overflows


def message(size: int) -> packet.Packet:
    """An Engine.IO MESSAGE of `size` characters."""
    return packet.Packet(packet.MESSAGE, "x" * size)


def test_the_queue_counts_what_it_holds_and_what_is_taken():
    cls, overflows = bounded(10_000)
    queue = cls()
    for _ in range(3):
        queue.put(message(1000))
    assert queue.held == 3 * (1000 + sendbound.PACKET_OVERHEAD)
    queue.get()
    queue.task_done()
    assert queue.held == 2 * (1000 + sendbound.PACKET_OVERHEAD) and not overflows


def test_past_the_limit_the_queue_empties_once_and_refuses_more():
    cls, overflows = bounded(10_000)
    queue = cls()
    for _ in range(20):
        queue.put(message(1000))
    assert len(overflows) == 1 and overflows[0] > 10_000
    assert queue.qsize() == 0 and queue.overflowed
    queue.put(None)  # engine.io's end of the writer still goes through
    assert queue.get() is None


def test_one_packet_larger_than_the_limit_goes_into_an_empty_queue():
    cls, overflows = bounded(1000)
    queue = cls()
    queue.put(message(5000))
    assert queue.qsize() == 1 and not overflows
    queue.put(message(10))
    assert overflows


def test_a_drained_queue_is_joinable():
    cls, _ = bounded(1000)
    queue = cls()
    for _ in range(5):
        queue.put(message(300))
    queue.join(timeout=1)  # engine.io's close(wait=True) must not hang on dropped packets
