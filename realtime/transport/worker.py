"""The gunicorn worker of a replica: gevent-websocket's, with requests in gunicorn's access log.

Replaces gevent-websocket's gunicorn worker (gunicorn's `worker_class`), and applies the transport
layer at worker start (`Worker.load_wsgi`: realtime.transport.install). Verified against
python-engineio 4.15.1, python-socketio 5.18.1, Flask-SocketIO 5.7.0, gevent 26.9.0,
gevent-websocket 0.10.1 (realtime.transport.VERIFIED) and gunicorn 27.0.1. Held by
tests/unit/test_wsdetach.py and every integration test (they run it).

gevent-websocket's handler writes its own plain-text request line to a private logger and never
calls gunicorn's access logger, so `accesslog`/`logconfig_dict` would have no effect. This worker
keeps gevent-websocket's handler (written for gevent-websocket 0.10.x and gunicorn 23-27) and only
routes its request log through gunicorn's `log.access`, which realtime.logs turns into JSON.
Websocket sessions are logged too, when they end, with their duration.

A websocket can be detached (`Handler.detach`, used by realtime.transport.wsdirect): its connection goes to
an event-driven reader and the handler greenlet ends, taking its stack, the request's headers,
environ and read buffer with it. The connection keeps its place in the server's pool (`Detached`
stands in for the greenlet there), so `worker_connections` and gunicorn's graceful stop count it
as before, and its access line is written when it ends, from the few environ keys gunicorn's
atoms read (header atoms, `%({name}i)s` and `%({name}o)s`, are empty for detached sessions).
"""
from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, Callable

import gevent
from gevent import socket as gsocket
from gevent.pool import PoolFull
from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from geventwebsocket.handler import WebSocketHandler
from gunicorn.workers.ggevent import GeventResponse

from .interned import secret, shared, shared_public

# What gunicorn's access atoms read from the environ (glogging.Logger.atoms), kept per session.
ACCESS_ENVIRON = ("REMOTE_ADDR", "REQUEST_METHOD", "RAW_URI", "PATH_INFO", "QUERY_STRING",
                  "SERVER_PROTOCOL", "HTTP_REFERER", "HTTP_USER_AGENT", "HTTP_AUTHORIZATION")


def text(value: bytes | str) -> str:
    """A header name or value as text (gevent keeps them as latin-1 bytes)."""
    return value.decode("latin-1") if isinstance(value, bytes) else value


class Handler(WebSocketHandler):
    """gevent-websocket's handler whose request log goes to gunicorn's access logger."""

    READ_BUFFER = 2048  # gevent's default is 8 KiB per connection, idle websockets included
    session_log: "SessionLog | None" = None  # a detached websocket's access line, written at its end

    def __init__(self, sock, address, server):
        super().__init__(sock, address, server)
        # A smaller read buffer: requests and frames larger than it are read straight through.
        self.rfile = sock.makefile("rb", self.READ_BUFFER)

    def detach(self) -> tuple[Any, bytes, Callable[[], None]]:
        """Give this websocket's connection away: (socket, bytes already read, call when it ends).

        Called from the application, in this handler's greenlet, once the websocket is up. The
        socket is a new one owning the connection's descriptor; the bytes are what the read
        buffer held past the handshake. This greenlet then finishes without touching the
        connection, which keeps its place in the server's pool until the callback runs.
        """
        old = self.socket
        timeout = old.gettimeout()
        pending = bytearray()
        old.settimeout(0.0)  # take what the buffer holds without waiting for more
        try:
            while chunk := self.rfile.read1(65536):
                pending += chunk
        except (OSError, ValueError):  # the connection failed; the new owner's first read says how
            pass
        sock = gsocket.socket(old.family, old.type, old.proto, fileno=old.detach())
        sock.settimeout(timeout)
        self.socket = None  # pywsgi must neither read out nor close a connection no longer its own
        self.websocket.closed = True  # nor gevent-websocket send a close frame on its way out
        if hasattr(self.server.log, "access"):
            self.session_log = SessionLog(self)
        detached = Detached(getattr(self.server, "pool", None), gevent.getcurrent(), sock,
                            self.session_log)
        return sock, bytes(pending), detached.end

    def log_request(self):
        """One access line per request or websocket session, as gunicorn's own handler logs it."""
        if self.session_log is not None:  # a detached websocket: logged when it ends
            return None
        if not hasattr(self.server.log, "access"):  # not under gunicorn
            return super().log_request()
        # Unlike gunicorn's handler, decode the headers: its `{name}o` atoms expect text keys.
        environ = self.environ
        if environ is None:  # refused before the request was parsed (e.g. 414): log what is known
            address = self.client_address
            environ = {"REMOTE_ADDR": address[0] if isinstance(address, tuple) else str(address or "-"),
                       "REQUEST_METHOD": "-",
                       "RAW_URI": "-", "PATH_INFO": "-", "SERVER_PROTOCOL": "-"}
        parsed = self.environ is not None
        headers = [(text(k), text(v)) for k, v in (self.response_headers or ()) if parsed]
        status = text(self.status or "")
        response = GeventResponse(status, headers, self.response_length)
        elapsed = timedelta(seconds=max(0.0, (self.time_finish or 0) - (self.time_start or 0)))
        request_headers = self.headers.items() if parsed and getattr(self, "headers", None) else []
        self.server.log.access(response, request_headers, environ, elapsed)

    def get_environ(self):
        """The WSGI environ plus what gunicorn's access atoms read (as gunicorn's handler adds)."""
        environ = super().get_environ()
        environ["gunicorn.sock"] = self.socket
        environ["RAW_URI"] = self.path
        return environ


class SessionLog:
    """The access line of a detached websocket, written when the session ends.

    It keeps references to what the handler already had (the status, the environ values
    gunicorn's atoms read), not copies, and builds the line only at the end. The 101's own headers
    (Upgrade, Connection, Sec-WebSocket-Accept) are not kept: `%({name}o)s` is empty here.
    """

    __slots__ = ("log", "status", "length", "values", "started")

    def __init__(self, handler: Handler):
        self.log = handler.server.log
        self.status, self.length = handler.status, handler.response_length
        # Shared strings, and one tuple of them: most clients send the same request line, address
        # and user agent. A client's credentials (a token in the query, an Authorization header)
        # stay its own.
        environ = handler.environ
        authorization = environ.get("HTTP_AUTHORIZATION")
        values = tuple(authorization if key == "HTTP_AUTHORIZATION" else shared_public(environ.get(key))
                       for key in ACCESS_ENVIRON)
        private = authorization or any(secret(value) for value in values)
        self.values = values if private else shared(values)
        self.started = handler.time_start or time.time()

    def write(self) -> None:
        """Log the session with its duration."""
        elapsed = timedelta(seconds=max(0.0, time.time() - self.started))
        environ = {key: value for key, value in zip(ACCESS_ENVIRON, self.values) if value is not None}
        response = GeventResponse(text(self.status or ""), [], self.length)
        self.log.access(response, [], environ, elapsed)


class Detached:
    """A detached connection as a member of the server's pool, and its access line at its end.

    gunicorn limits a worker to `worker_connections` through that pool and, when stopping, waits
    for it to empty (then kills what is left). So the connection takes the handler greenlet's
    place in the pool as that greenlet ends, and behaves there as a greenlet does for gevent's
    Pool: `rawlink`/`unlink` (the pool links itself to its members to learn when they end, and so
    does `Pool.kill`'s join), `kill` (ends the connection) and links called when it ends.
    """

    __slots__ = ("pool", "sock", "session_log", "links", "ended")

    def __init__(self, pool: Any, handler_greenlet: Any, sock: Any, session_log: SessionLog | None):
        self.pool, self.sock, self.session_log = pool, sock, session_log
        self.links: tuple | None = None  # the pool's callback, usually alone
        self.ended = False
        if pool is not None and hasattr(handler_greenlet, "rawlink"):
            # The pool frees the handler's place when the greenlet ends; take it at that moment.
            handler_greenlet.rawlink(self._take)

    def _take(self, _greenlet: Any) -> None:
        """Join the pool (in the hub, right after the handler's place was freed)."""
        if not self.ended:
            try:
                self.pool.add(self, blocking=False)
            except PoolFull:  # not expected: the handler's place was just released
                pass

    def rawlink(self, callback: Callable[[Any], None]) -> None:
        """Call `callback(self)` (in the hub) when the connection ends, as Greenlet.rawlink does."""
        if self.ended:
            gevent.get_hub().loop.run_callback(callback, self)
        else:
            self.links = (*(self.links or ()), callback)

    def unlink(self, callback: Callable[[Any], None]) -> None:
        """Forget a callback given to `rawlink`."""
        if self.links and callback in self.links:
            self.links = tuple(link for link in self.links if link != callback) or None

    def kill(self, exception: Any = None, block: bool = False, timeout: float | None = None) -> None:
        """What `Pool.kill` does to its members (gunicorn's graceful timeout ran out): end the
        connection; its reader sees the end and finishes it."""
        try:
            self.sock.shutdown(2)
        except OSError:
            pass

    def end(self) -> None:
        """The connection ended: its links run (the pool frees its place), its access line."""
        if self.ended:
            return
        self.ended = True
        links, self.links = self.links or (), None
        loop = gevent.get_hub().loop
        for callback in links:
            loop.run_callback(callback, self)
        if self.session_log is not None:
            self.session_log.write()


class Worker(GeventWebSocketWorker):
    """The gevent-websocket worker with JSON access logs; it applies the transport layer."""

    wsgi_handler = Handler

    def load_wsgi(self) -> None:
        """Apply the transport layer (or refuse to start), then build the app that reads its state."""
        from realtime.settings import load_settings

        from . import install
        install(load_settings())
        super().load_wsgi()
