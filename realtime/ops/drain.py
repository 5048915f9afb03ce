"""Graceful drain on SIGTERM: stop accepting, send clients elsewhere, finish work, leave.

gunicorn's gevent worker, told to stop, closes its listening socket within a second and then
waits up to the graceful timeout for open connections, which websockets never close by
themselves. Here the replica closes them itself once the listener is gone, at the engine.io
level, so clients see a transport close and reconnect (through nginx, to another replica),
where they recover what they missed with `join {since}`.
"""
from __future__ import annotations

import logging
import signal
from typing import Any

import gevent

log = logging.getLogger(__name__)
LISTENER_CLOSE_WAIT = 1.5  # gunicorn's worker loop notices `alive = False` within a second


def install(worker: Any) -> None:
    """Take over the worker's SIGTERM: the same stop, plus the drain (gunicorn post_worker_init)."""
    app = worker.wsgi
    if "realtime" not in getattr(app, "extensions", {}):
        return  # not a realtime app (e.g. the plain reference app of the benchmark)

    def on_term() -> None:
        worker.alive = False
        gevent.spawn(drain, app, worker.cfg.graceful_timeout)
    gevent.signal_handler(signal.SIGTERM, on_term)


def drain(app: Any, graceful_timeout: float) -> None:
    """Mark the replica draining, wait for the listener to close, then let every client go."""
    from ..extensions import socketio
    services = app.extensions["realtime"]
    services.draining = True
    log.info("draining: %d connections", len(services.cluster.connections))
    gevent.sleep(LISTENER_CLOSE_WAIT)
    server = socketio.server
    for sid in list(services.cluster.connections):
        socketio.emit("draining", {"instance": services.cluster.instance_id}, to=sid,
                      namespace="/chat", ignore_queue=True)
    gevent.sleep(0.2)  # let the notices go out before the transports close
    for sid in list(services.cluster.connections):
        eio_sid = server.manager.eio_sid_from_sid(sid, "/chat")
        if eio_sid is not None:
            server.eio.disconnect(eio_sid)
    worker = services.webhook_worker
    if worker is not None:
        worker.stop(timeout=max(1.0, graceful_timeout - LISTENER_CLOSE_WAIT - 2))
    publisher = getattr(server.manager, "publisher", None)
    if publisher is not None:  # messages acked just before the drain still reach the others
        publisher.join(timeout=5)
    services.cluster.deregister()
    log.info("drained; leaving")
