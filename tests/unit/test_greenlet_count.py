"""The live greenlet count kept by spawn callbacks (no heap walk)."""
from __future__ import annotations

import gevent
from gevent.event import Event

from realtime.transport import greenlets


def test_greenlets_are_counted_while_they_live():
    greenlets.install()
    greenlets.install()  # idempotent: still one callback
    before = greenlets.live()
    release = Event()
    workers = [gevent.spawn(release.wait) for _ in range(5)]
    assert greenlets.live() == before + 5
    release.set()
    gevent.joinall(workers)
    gevent.sleep(0)  # links run on the next loop turn
    assert greenlets.live() == before
    killed = gevent.spawn(gevent.sleep, 10)
    gevent.sleep(0)
    killed.kill()
    gevent.sleep(0)
    assert greenlets.live() == before
