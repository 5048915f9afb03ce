"""A bounded send buffer per connection: a client that stops reading is cut off, not buffered for.

Engine.IO keeps a queue per socket for what waits to be sent: a polling client's packets until
its next poll, a websocket's on the stock path until its writer greenlet has sent them. Nothing
bounds it: a client that stops reading while a room's messages flow to it grows it until the
ping timeout closes the socket. Here the server's `create_queue` (engine.io's public hook for the
queue class) makes queues that count the bytes they hold; past MAX_SEND_BUFFER the queue drops
its packets and the connection is closed (and, on the stock websocket path, its TCP connection
shut down, which the writer blocked in a send needs to let go). The direct websocket path
(realtime.transport.wsdirect.DirectWriter) holds the same bound for its own buffer and reports through
`slow_reader` too. A cut-off client reconnects and recovers what it missed by id, as after
any drop. Each cut is counted in `realtime_connections_refused{reason="slow_reader"}` and logged
once.
"""
from __future__ import annotations

import logging
import socket
from typing import Any

log = logging.getLogger(__name__)

PACKET_OVERHEAD = 16  # what a queued packet costs beyond its data, roughly, in bytes


def packet_size(pkt: Any) -> int:
    """About what a queued Engine.IO packet holds (its encoded data, in characters or bytes)."""
    data = getattr(pkt, "data", None)
    return PACKET_OVERHEAD + (len(data) if isinstance(data, (str, bytes, bytearray)) else 0)


def bounded_queue_class(base: type, limit: int, on_overflow: Any) -> type:
    """A subclass of engine.io's queue class `base` that holds at most `limit` bytes of packets."""

    class BoundedQueue(base):  # type: ignore[misc, valid-type]
        """engine.io's queue, counting the bytes it holds; past `limit` it empties and says so."""

        held = 0
        overflowed = False

        def put(self, item: Any, *args: Any, **kwargs: Any) -> None:
            """Queue `item`; when over the limit, drop everything and report (once)."""
            if item is not None:
                if self.overflowed:
                    return
                before = self.held
                self.held += packet_size(item)
                if self.held > limit and before:  # one packet alone (a large ack) always goes
                    self.overflowed = True
                    held, self.held = self.held, 0
                    self.drop()
                    on_overflow(self, held)
                    return
            super().put(item, *args, **kwargs)

        def get(self, *args: Any, **kwargs: Any) -> Any:
            """Take one packet off (engine.io's poll and writer)."""
            item = super().get(*args, **kwargs)
            if item is not None:
                self.held = max(0, self.held - packet_size(item))
            return item

        def drop(self) -> None:
            """Let go of every queued packet (what a poll or the writer waits for stays possible)."""
            while True:
                try:
                    super().get(block=False)
                    self.task_done()
                except Exception:  # empty
                    return

    BoundedQueue.__name__ = f"Bounded{base.__name__}"
    return BoundedQueue


class SendBound:
    """The send-buffer bound of one Engine.IO server, for its queues and its direct writers."""

    def __init__(self, eio: Any, limit: int, refused: Any):
        self.eio, self.limit, self.count_refusal = eio, limit, refused

    def install(self) -> "SendBound":
        """Make the server create bounded queues; direct writers read `limit` from here."""
        if self.limit:
            queue_class = bounded_queue_class(self.eio._async["queue"], self.limit, self.queue_overflowed)
            self.eio.create_queue = lambda *args, **kwargs: queue_class(*args, **kwargs)
        self.eio._rt_send_bound = self
        return self

    def queue_overflowed(self, queue: Any, held: int) -> None:
        """A socket's queue passed the limit (in whoever was sending): cut it off outside that call."""
        self.eio.start_background_task(self.cut_queued, queue, held)

    def cut_queued(self, queue: Any, held: int) -> None:
        """Close the socket whose queue overflowed, and its TCP connection if it has one."""
        sock = next((s for s in list(self.eio.sockets.values()) if s.queue is queue), None)
        if sock is None or sock.closed:
            return
        self.slow_reader(sock.sid, held)
        sock.close(wait=False, abort=True, reason=self.eio.reason.TRANSPORT_ERROR)
        queue.put(None)  # the writer (or a pending poll) stops waiting
        shutdown(self.environ_of(sock.sid))

    def environ_of(self, eio_sid: str) -> Any:
        """The WSGI environ python-socketio keeps for the connection (None once it has gone)."""
        owner = getattr(getattr(self.eio, "_rt_guard", None), "sio", None)
        environ = getattr(owner, "environ", None)
        return environ.get(eio_sid) if environ is not None else None

    def slow_reader(self, eio_sid: str, held: int) -> None:
        """Count and log one slow reader cut off."""
        self.count_refusal("slow_reader")
        log.warning("connection refused: slow_reader (%d bytes waiting, limit %d)", held, self.limit,
                    extra={"reason": "slow_reader", "eio_sid": eio_sid})


def shutdown(environ: Any) -> None:
    """Shut down a websocket's TCP connection from the socket its handshake request came on."""
    sock = environ.get("gunicorn.sock") if isinstance(environ, dict) else None
    if sock is not None and environ.get("wsgi.websocket") is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def install(eio: Any, limit: int, refused: Any) -> SendBound:
    """Bound `eio`'s send queues (and direct writers) at `limit` bytes (0: unbounded)."""
    return SendBound(eio, limit, refused).install()
