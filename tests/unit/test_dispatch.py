"""Flask-SocketIO's event dispatch as realtime.transport.dispatch replaces it: what handlers see, the same."""
from __future__ import annotations

import flask
import flask_socketio
import pytest
from flask_socketio import ConnectionRefusedError, Namespace

from realtime.extensions import socketio
from realtime.transport import dispatch

from test_chat import call


@pytest.fixture(params=["stock", "adapter"])
def state(request):
    """Each test once with Flask-SocketIO's own dispatch and once with the adapter's."""
    if request.param == "adapter":
        dispatch.install()
    yield request.param
    dispatch.uninstall()


class Probe(Namespace):
    """Handlers that report what they see of the request, the session and `g`."""

    def on_connect(self, auth=None):
        if auth == "refuse":
            raise ConnectionRefusedError("no", {"code": "refused"})
        flask.session["connected_as"] = auth
        flask.g.set_at_connect = True

    def on_look(self, payload=None):
        request, session = flask.request, flask.session
        seen = session.get("events", 0)
        session["events"] = seen + 1
        stale_g = sorted(vars(flask.g._get_current_object()))
        flask.g.marker = payload
        return {"sid": request.sid, "namespace": request.namespace, "event": request.event,
                "session": dict(session), "session_type": type(session._get_current_object()).__name__,
                "session_is_kept": session._get_current_object() is request.environ.get("saved_session"),
                "g_before": stale_g, "path": request.path, "method": request.method,
                "remote_addr": request.remote_addr, "host": request.host, "args": dict(request.args),
                "url_rule": str(request.url_rule), "has_app": flask.current_app.name,
                "request_id_logged": flask.g.get("request_id")}

    def on_fail(self, payload=None):
        raise ValueError("handler bug")

    def on_tuple(self, payload=None):
        return "a", 2, {"b": None}


def probe_client(app, **kwargs):
    """A test client on /probe of a fresh app (its namespace registered on the shared extension)."""
    socketio.on_namespace(Probe("/probe"))
    errors = []

    @socketio.on_error("/probe")
    def on_probe_error(exc):
        errors.append(repr(exc))
        return {"error": str(exc)}
    client = socketio.test_client(app, namespace="/probe", query_string="v=1", **kwargs)
    return client, errors


def test_handlers_see_the_same_request_session_and_g(app, state, monkeypatch):
    stock_calls = []
    if state == "adapter":
        own = dispatch._stock["_handle_event"]
        monkeypatch.setitem(dispatch._stock, "_handle_event",
                            lambda *args: stock_calls.append(args[2]) or own(*args))
    client, _ = probe_client(app, auth={"k": "v"})
    assert client.is_connected("/probe")
    first = client.emit("look", {"n": 1}, namespace="/probe", callback=True)
    second = client.emit("look", [1, 2], namespace="/probe", callback=True)
    sid = first["sid"]
    assert isinstance(sid, str) and second["sid"] == sid
    assert first == {
        "sid": sid, "namespace": "/probe", "event": {"message": "look", "args": [{"n": 1}]},
        "session": {"connected_as": {"k": "v"}, "events": 1}, "session_type": flask_socketio._ManagedSession.__name__,
        "session_is_kept": True, "g_before": [], "path": "/socket.io", "method": "GET",
        "remote_addr": None, "host": "localhost", "args": {"v": "1"}, "url_rule": "None",
        "has_app": app.name, "request_id_logged": None}
    assert second["session"] == {"connected_as": {"k": "v"}, "events": 2}  # the session persists
    assert second["g_before"] == [] and second["event"]["args"] == [[1, 2]]  # g does not
    # With the adapter only the connect (no kept session yet) took Flask-SocketIO's own path.
    assert stock_calls == (["connect"] if state == "adapter" else [])
    client.disconnect(namespace="/probe")


def test_errors_acks_and_refusals_take_the_same_course(app, state):
    client, errors = probe_client(app)
    assert client.emit("fail", None, namespace="/probe", callback=True) == {"error": "handler bug"}
    assert errors == ["ValueError('handler bug')"]
    assert client.emit("tuple", None, namespace="/probe", callback=True) == ["a", 2, {"b": None}]
    client.disconnect(namespace="/probe")
    refused, _ = probe_client(app, auth="refuse")
    assert not refused.is_connected("/probe")


def normalized(value):
    """An ack without what differs between runs (times, connection ids)."""
    if isinstance(value, dict):
        return {k: normalized(v) for k, v in value.items() if k not in ("ts", "server_time", "sid", "epoch")}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    return value


def chat_session(chat):
    """A conversation's acks: joins, sends (one duplicate), history, typing, reads, refusals."""
    ana, bo = chat("Ana"), chat("Bo")
    acks = [call(ana, "join", {"room": "lobby"}), call(bo, "join", {"room": "lobby"})]
    for n in range(3):
        acks.append(call(ana, "send", {"room": "lobby", "type": "text", "body": f"hi {n}", "client_id": f"c{n}"}))
    acks += [call(ana, "send", {"room": "lobby", "type": "text", "body": "hi 0", "client_id": "c0"}),
             call(bo, "history", {"room": "lobby"}), call(bo, "typing", {"room": "lobby", "typing": True}),
             call(bo, "read", {"room": "lobby", "id": 2}), call(ana, "send", {"room": "nowhere", "body": "x"}),
             call(ana, "send", "not a dict"), call(ana, "nosuchevent", {}), call(ana, "connect", {}),
             call(ana, "leave", {"room": "lobby"})]
    return normalized(acks), normalized([e for e in bo.get_received("/chat")])


def test_chat_acks_and_deliveries_are_identical_with_the_adapter(app_factory_with):
    results = []
    for install in (False, True):
        (dispatch.install if install else dispatch.uninstall)()
        app = app_factory_with()
        clients = []

        def connect(name="Ana"):
            with app.app_context():
                from flask_jwt_extended import create_access_token
                jwt = create_access_token(identity=name.lower(), additional_claims={"name": name})
            sio = socketio.test_client(app, namespace="/chat", auth={"token": jwt})
            clients.append(sio)
            return sio
        try:
            results.append(chat_session(connect))
        finally:
            for sio in clients:
                if sio.is_connected("/chat"):
                    sio.disconnect(namespace="/chat")
            dispatch.uninstall()
    assert results[0] == results[1]
    assert results[0][0][2]["ok"] and results[0][0][9]["ok"] is False  # the sends went, a bad one refused


def test_install_is_idempotent_and_uninstall_restores_flask_socketio():
    own = flask_socketio.SocketIO.__dict__["_handle_event"]
    assert dispatch.install() and dispatch.install()
    assert flask_socketio.SocketIO._handle_event is dispatch.handle_event
    dispatch.uninstall()
    dispatch.uninstall()
    assert flask_socketio.SocketIO.__dict__["_handle_event"] is own
