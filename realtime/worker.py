"""The gunicorn worker of a replica: gevent-websocket's, with requests in gunicorn's access log.

gevent-websocket's handler writes its own plain-text request line to a private logger and never
calls gunicorn's access logger, so `accesslog`/`logconfig_dict` would have no effect. This worker
keeps gevent-websocket's handler (written for gevent-websocket 0.10.x and gunicorn 23-27) and only
routes its request log through gunicorn's `log.access`, which realtime.logs turns into JSON.
Websocket sessions are logged too, when they end, with their duration.
"""
from __future__ import annotations

from datetime import timedelta

from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from geventwebsocket.handler import WebSocketHandler
from gunicorn.workers.ggevent import GeventResponse


def text(value: bytes | str) -> str:
    """A header name or value as text (gevent keeps them as latin-1 bytes)."""
    return value.decode("latin-1") if isinstance(value, bytes) else value


class Handler(WebSocketHandler):
    """gevent-websocket's handler whose request log goes to gunicorn's access logger."""

    READ_BUFFER = 2048  # gevent's default is 8 KiB per connection, idle websockets included

    def __init__(self, sock, address, server):
        super().__init__(sock, address, server)
        # A smaller read buffer: requests and frames larger than it are read straight through.
        self.rfile = sock.makefile("rb", self.READ_BUFFER)

    def log_request(self):
        """One access line per request or websocket session, as gunicorn's own handler logs it."""
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


class Worker(GeventWebSocketWorker):
    """The gevent-websocket worker with JSON access logs."""

    wsgi_handler = Handler
