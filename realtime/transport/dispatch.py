"""Flask-SocketIO's event dispatch with the client's kept session given to the request context.

Replaces Flask-SocketIO's `SocketIO._handle_event` (realtime.transport.install; `uninstall` puts
it back). Verified against Flask 3.1.3, python-engineio 4.15.1, python-socketio 5.18.1,
Flask-SocketIO 5.7.0, gevent 26.9.0, gevent-websocket 0.10.1 (realtime.transport.VERIFIED). Held
to the stock behaviour by tests/unit/test_dispatch.py (what handlers see, acks, errors, with the
adapter on and off).

For every event Flask-SocketIO pushes a request context built from the client's environ; pushing
it opens Flask's cookie session (a signing serializer and a NullSession or a cookie decode), which
Flask-SocketIO then replaces with the session it keeps per client. Once that session exists (from
the client's first event on) this dispatch builds the context with it (RequestContext's public
`session` argument), so nothing is opened only to be thrown away, and sets `request.sid`,
`namespace` and `event` on the context's request directly instead of through the proxy. Handlers
see the same request, session, `g` and errors; the first event of a client, an app that does not
let Flask-SocketIO manage sessions, and a Flask subclass with its own `request_context` take
Flask-SocketIO's own path.
"""
from __future__ import annotations

import sys
from typing import Any, Callable

import flask_socketio
from flask import Flask
from flask.ctx import RequestContext

_stock: dict[str, Callable] = {}


def handle_event(self: flask_socketio.SocketIO, handler: Callable, message: str, namespace: str, sid: str,
                 *args: Any) -> Any:
    """Flask-SocketIO's `_handle_event`, the context given the client's kept session."""
    environ = self.server.get_environ(sid, namespace=namespace)
    if not environ:
        return '', 400  # as stock: no record of this client, the event is ignored
    saved = environ.get("saved_session") if self.manage_session else None
    app = environ["flask.app"]
    if saved is None or type(app).request_context is not Flask.request_context:
        return _stock["_handle_event"](self, handler, message, namespace, sid, *args)
    with RequestContext(app, environ, session=saved) as ctx:
        request = ctx.request
        request.sid = sid
        request.namespace = namespace
        request.event = {"message": message, "args": args}
        try:
            if message == "connect":
                auth = args[1] if len(args) > 1 else None
                try:
                    return handler(auth)
                except TypeError:
                    return handler()
            return handler(*args)
        except flask_socketio.ConnectionRefusedError:
            raise  # let this error bubble up to python-socketio
        except Exception:
            err_handler = self.exception_handlers.get(namespace, self.default_exception_handler)
            if err_handler is None:
                raise
            return err_handler(sys.exc_info()[1])


def install() -> bool:
    """Have Flask-SocketIO dispatch events here (idempotent; realtime.transport checks versions)."""
    if _stock:
        return True
    _stock["_handle_event"] = flask_socketio.SocketIO.__dict__["_handle_event"]
    flask_socketio.SocketIO._handle_event = handle_event
    return True


def uninstall() -> None:
    """Put Flask-SocketIO's own method back."""
    if _stock:
        flask_socketio.SocketIO._handle_event = _stock.pop("_handle_event")
