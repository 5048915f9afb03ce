"""KeptEnvirons: python-socketio's environ per connection, held as a shared part and own values."""
from __future__ import annotations

import pytest

from realtime.transport import keptenviron
from realtime.transport.keptenviron import Kept, KeptEnvirons

APP, ERRORS = object(), object()


def environ(port: str, address: str = "127.0.0.1", query: str = "EIO=4&transport=websocket",
            **extra) -> dict:
    return {"REQUEST_METHOD": "GET", "PATH_INFO": "/socket.io/", "QUERY_STRING": query,
            "REMOTE_ADDR": address, "REMOTE_PORT": port, "HTTP_HOST": "x", "flask.app": APP,
            "wsgi.errors": ERRORS, "wsgi.version": (1, 0), **extra}


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.setattr(keptenviron, "_shared", {})


def test_a_kept_environ_reads_back_whole_as_a_new_dict_each_time():
    kept = KeptEnvirons()
    kept.keep("a", environ("5000"))
    first, second = kept["a"], kept.get("a")
    assert first == environ("5000") == second and first is not second
    assert isinstance(dict.__getitem__(kept, "a"), Kept)
    assert kept.get("missing") is None and kept.get("missing", {}) == {}
    with pytest.raises(KeyError):
        kept["missing"]


def test_connections_share_what_is_equal_and_keep_their_own_address_port_and_query():
    kept = KeptEnvirons()
    kept.keep("a", environ("5000"))
    kept.keep("b", environ("5001", address="10.0.0.2", query="EIO=4&transport=websocket&token=t"))
    a, b = dict.__getitem__(kept, "a"), dict.__getitem__(kept, "b")
    assert a.rest is b.rest and "REMOTE_PORT" not in a.rest
    assert (kept["a"]["REMOTE_PORT"], kept["b"]["REMOTE_PORT"]) == ("5000", "5001")
    assert kept["b"]["REMOTE_ADDR"] == "10.0.0.2" and kept["b"]["QUERY_STRING"].endswith("token=t")
    kept.keep("c", environ("5002", HTTP_HOST="other"))
    assert dict.__getitem__(kept, "c").rest is not a.rest and kept["c"]["HTTP_HOST"] == "other"


def test_the_session_stored_on_a_first_event_is_there_on_the_next():
    kept = KeptEnvirons()
    kept.keep("a", environ("5000"))
    first = kept["a"]
    assert "saved_session" not in first
    session = object()
    first["saved_session"] = session        # as Flask-SocketIO does on a connection's first event
    first["werkzeug.request"] = None        # as Flask does when its request context ends
    again = kept["a"]
    assert again["saved_session"] is session and "werkzeug.request" not in again
    kept.keep("b", environ("5001", saved_session=session))  # a session from before (polling)
    assert kept["b"]["saved_session"] is session


def test_an_environ_that_cannot_be_shared_is_kept_whole():
    kept = KeptEnvirons()
    unhashable = environ("5000", extra=["a list"])
    kept.keep("a", unhashable)
    assert kept["a"] is unhashable


def test_the_shared_parts_are_bounded(monkeypatch):
    monkeypatch.setattr(keptenviron, "LIMIT", 1)
    kept = KeptEnvirons()
    kept.keep("a", environ("5000"))
    kept.keep("b", environ("5001"))  # the same shared part: still shared
    whole = environ("5002", HTTP_HOST="other")
    kept.keep("c", whole)  # a second distinct one: past the limit
    assert isinstance(dict.__getitem__(kept, "b"), Kept) and kept["c"] is whole
    assert len(keptenviron._shared) == 1


def test_python_socketios_own_use_stores_tests_and_deletes():
    kept = KeptEnvirons({"polling": {"REMOTE_ADDR": "1.2.3.4"}})
    kept["new"] = {"REMOTE_ADDR": "5.6.7.8"}  # python-socketio's connect stores the full environ
    kept.keep("a", environ("5000"))
    assert kept["polling"] == {"REMOTE_ADDR": "1.2.3.4"} and kept.get("new")["REMOTE_ADDR"] == "5.6.7.8"
    assert "a" in kept and len(kept) == 3
    del kept["a"]
    assert "a" not in kept
