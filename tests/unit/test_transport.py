"""The transport layer: one switch, all adapters or none, a real uninstall, create_app patches nothing."""
from __future__ import annotations

import json
import logging

import flask_socketio
import pytest
import socketio
from engineio.socket import Socket
from geventwebsocket.websocket import Header, WebSocket
from socketio.manager import Manager

from realtime import transport
from realtime.settings import load_settings
from realtime.transport import roomindex, socketsession, wirejson, wirepacket, wsdirect, wsfast

ON = {"FAST_PATHS": "on", "MAX_HTTP_BUFFER_SIZE": 100_000}


def library_objects() -> dict[str, object]:
    """Every attribute an adapter replaces, as the libraries hold it now."""
    found = {f"Socket.{name}": Socket.__dict__[name]
             for name in ("send", "close", "schedule_ping", "_websocket_handler")}
    found["Manager.emit"] = Manager.__dict__["emit"]
    found.update({f"Header.{name}": Header.__dict__[name] for name in ("mask_payload", "unmask_payload")})
    found.update({f"WebSocket.{name}": WebSocket.__dict__[name]
                  for name in ("current_app", "read_frame", "read_message")})
    found["flask_socketio._ManagedSession"] = flask_socketio._ManagedSession
    return found


@pytest.fixture
def stock():
    """The libraries' own objects; the layer uninstalled after the test whatever happened."""
    before = library_objects()
    yield before
    transport.uninstall()
    assert library_objects() == before


def test_install_patches_every_adapter_and_uninstall_restores_the_originals(stock):
    assert transport.install(ON) == "on" and transport.active()
    now = library_objects()
    assert all(now[name] is not stock[name] for name in stock), [n for n in stock if now[n] is stock[n]]
    assert Socket.send is wsdirect.send and Manager.emit is wsdirect.emit
    assert Header.unmask_payload is wsfast._mask_payload
    assert flask_socketio._ManagedSession is socketsession.SocketSession
    transport.uninstall()
    assert not transport.active()
    now = library_objects()
    assert all(now[name] is stock[name] for name in stock)


def test_off_patches_nothing(stock):
    assert transport.install({"FAST_PATHS": "off"}) == "off"
    assert library_objects() == stock and transport.status()["reason"] == "REALTIME_FAST_PATHS=off"


def test_auto_on_an_unverified_version_runs_the_stock_path_and_names_it(stock, monkeypatch, caplog):
    monkeypatch.setitem(transport.VERIFIED, "python-engineio", ("0.0.1",))
    with caplog.at_level(logging.WARNING, logger="realtime.transport"):
        assert transport.install({"FAST_PATHS": "auto"}) == "unverified"
    assert library_objects() == stock and not transport.active()
    installed = transport.versions()["python-engineio"]
    assert f"python-engineio {installed}" in caplog.text
    assert f"python-engineio {installed}" in transport.summary() and "stock path" in transport.summary()


def test_on_refuses_to_start_on_an_unverified_version(stock, monkeypatch):
    monkeypatch.setitem(transport.VERIFIED, "gevent", ("0.0.1",))
    with pytest.raises(RuntimeError, match=r"gevent \d"):
        transport.install(ON)
    assert library_objects() == stock and not transport.active()


def test_the_table_names_the_installed_versions_or_auto_falls_back_cleanly(stock):
    """An upgrade is not a failure: either the table lists what is installed, or auto runs stock."""
    wrong = transport.unverified(transport.versions())
    state = transport.install({"FAST_PATHS": "auto"})
    if wrong:
        assert state == "unverified" and library_objects() == stock
    else:
        assert state == "on"


@pytest.mark.parametrize("raw, expected", [("auto", "auto"), ("on", "on"), ("off", "off"), ("true", "on"),
                                           ("1", "on"), ("false", "off"), ("0", "off"), ("ON", "on")])
def test_the_switch_takes_auto_on_off_and_the_old_booleans(raw, expected):
    assert load_settings(environ={"REALTIME_FAST_PATHS": raw})["FAST_PATHS"] == expected


def test_a_bad_switch_stops_the_start():
    with pytest.raises(ValueError, match="REALTIME_FAST_PATHS"):
        load_settings(environ={"REALTIME_FAST_PATHS": "fast"})


def test_create_app_patches_nothing_and_takes_the_stock_path_with_the_layer_off(stock, app_factory_with):
    from realtime.extensions import socketio as ext
    app_factory_with()
    assert library_objects() == stock
    assert type(ext.server.manager) is socketio.Manager and ext.server.packet_class.json is json
    assert ext.server.packet_class is socketio.packet.Packet


def test_create_app_picks_the_room_index_and_wire_json_with_the_layer_on(stock, app_factory_with):
    from realtime.extensions import socketio as ext
    transport.install(ON)
    patched = library_objects()
    app_factory_with()
    assert library_objects() == patched  # create_app added no patch of its own
    assert isinstance(ext.server.manager, roomindex.LocalManager) and ext.server.packet_class.json is wirejson
    assert ext.server.packet_class is wirepacket.WirePacket


def test_metrics_and_the_dashboard_say_which_path_runs(stock, app_factory_with):
    transport.install(ON)
    app = app_factory_with()
    text = app.test_client().get("/metrics").get_data(as_text=True)
    assert 'realtime_fast_paths{state="on"} 1.0' in text
    view = app.extensions["realtime"].dashboard.local()["transport"]
    assert view["state"] == "on" and view["versions"]["python-engineio"] == transport.versions()["python-engineio"]


def test_the_redis_queue_indexes_rooms_only_with_the_layer_on(stock, app_factory_with, redis_url):
    from realtime.extensions import socketio as ext
    app_factory_with(REDIS_URL=redis_url)
    assert ext.server.manager.indexed is False
    transport.install(ON)
    app_factory_with(REDIS_URL=redis_url)
    assert ext.server.manager.indexed is True


def test_a_room_index_built_with_the_layer_off_is_the_stock_manager():
    class Indexed(roomindex.RoomIndex, socketio.Manager):
        """A manager with the mixin, as RedisQueue has it."""
    manager = Indexed()
    manager.set_server(socketio.Server())
    assert manager.indexed is False
    sid = manager.connect("e1", "/chat")
    manager.enter_room(sid, "/chat", "lobby")
    assert sorted(manager.get_rooms(sid, "/chat"), key=str) == sorted([sid, "lobby"], key=str)
    assert type(manager.rooms["/chat"]["lobby"]) is not roomindex.Room and not manager.joined
    manager.disconnect(sid, "/chat")
    assert "lobby" not in manager.rooms.get("/chat", {})


def test_realtime_serve_refuses_on_with_an_unverified_version_before_starting_gunicorn(monkeypatch, capsys):
    import argparse

    from realtime import cli
    monkeypatch.setitem(transport.VERIFIED, "python-socketio", ("0.0.1",))
    monkeypatch.setenv("REALTIME_FAST_PATHS", "on")
    monkeypatch.setattr(cli.os, "execv", lambda *args: pytest.fail("gunicorn started"))
    assert cli.serve(argparse.Namespace(host="127.0.0.1", port=0)) == 2
    assert "python-socketio" in capsys.readouterr().err
