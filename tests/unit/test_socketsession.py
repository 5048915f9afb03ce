"""Flask-SocketIO's per-client session as realtime.transport.socketsession installs it."""
from __future__ import annotations

import flask_socketio
import pytest

from realtime.extensions import socketio
from realtime.transport import socketsession


@pytest.fixture(autouse=True)
def installed():
    """The adapter on (the transport layer applies it at worker start; these apps run without)."""
    socketsession.install()
    yield
    socketsession.uninstall()


def kept_sessions():
    """The sessions Flask-SocketIO keeps in the environs python-socketio holds per client."""
    return [environ["saved_session"] for environ in socketio.server.environ.values()
            if "saved_session" in environ]


def test_client_sessions_are_slotted_and_keep_the_principal(chat):
    client = chat("Ana")
    assert client.emit("join", {"room": "lobby"}, namespace="/chat", callback=True)["ok"]
    sessions = kept_sessions()
    assert sessions and all(type(session) is socketsession.SocketSession for session in sessions)
    for session in sessions:
        assert session["principal"].id == "ana"
        assert session.accessed is True and session.modified is True  # Flask's flags, in slots
        assert not getattr(session, "__dict__", {}), "the session grew an instance dict"


def test_install_is_idempotent_and_uninstall_restores_flask_socketio(app):
    assert socketsession.install() and socketsession.install()
    assert flask_socketio._ManagedSession is socketsession.SocketSession
    socketsession.uninstall()
    try:
        assert flask_socketio._ManagedSession is not socketsession.SocketSession
        assert issubclass(socketsession.SocketSession, flask_socketio._ManagedSession)
    finally:
        socketsession.install()
