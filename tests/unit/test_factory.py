"""The app factory and its refusals."""
import pytest

from realtime import create_app, cors_origins


def test_factory_builds_an_embedded_replica(app, client):
    assert app.extensions["realtime"].store.name == "memory"
    from realtime.version import VERSION
    assert client.get("/healthz").get_json() == {"status": "ok", "instance": "unit-1", "version": VERSION}
    assert client.get("/readyz").get_json() == {"status": "ready", "store": "memory"}


def test_overrides_reach_the_app(app_config, monkeypatch, tmp_path):
    monkeypatch.setenv("REALTIME_ENV_FILE", str(tmp_path / "none"))
    app = create_app({**app_config, "INSTANCE_ID": "custom"})
    assert app.config["REALTIME"]["INSTANCE_ID"] == "custom"


def test_cluster_mode_needs_a_secret(app_config, monkeypatch, tmp_path):
    monkeypatch.setenv("REALTIME_ENV_FILE", str(tmp_path / "none"))
    config = {**app_config, "REDIS_URL": "redis://127.0.0.1:1/0", "JWT_SECRET_KEY": None}
    with pytest.raises(RuntimeError, match="JWT_SECRET_KEY is required"):
        create_app(config)


def test_weak_secret_is_refused_outside_demo_mode(app_config, monkeypatch, tmp_path):
    monkeypatch.setenv("REALTIME_ENV_FILE", str(tmp_path / "none"))
    config = {**app_config, "REDIS_URL": "redis://127.0.0.1:1/0", "JWT_SECRET_KEY": "short"}
    with pytest.raises(RuntimeError, match="at least 32"):
        create_app(config)


def test_unknown_store_scheme_is_refused(app_config, monkeypatch, tmp_path):
    monkeypatch.setenv("REALTIME_ENV_FILE", str(tmp_path / "none"))
    with pytest.raises(ValueError, match="unsupported store URL scheme"):
        create_app({**app_config, "REDIS_URL": "mongodb://x"})


@pytest.mark.parametrize("value, expected", [
    ("*", "*"), ("", None), ("https://a.example, https://b.example", ["https://a.example", "https://b.example"]),
])
def test_cors_origins_setting(value, expected):
    assert cors_origins(value) == expected


def test_demo_page_is_served(client):
    response = client.get("/")
    assert response.status_code == 200
    assert b"<html" in response.data.lower()


def test_http_errors_are_json(client):
    response = client.get("/nope")
    assert response.status_code == 404
    assert response.get_json()["error"]["code"] == "not_found"


def test_a_clients_events_run_one_at_a_time_in_the_reading_greenlet(app):
    """No greenlet per event: python-socketio calls the handler where the packet was read, so a
    client's events are handled in the order sent (and a flood from one client waits on itself)."""
    from realtime.extensions import socketio
    assert socketio.server.async_handlers is False


def test_socketio_event_contexts_skip_url_routing_and_http_requests_keep_it(app):
    """Flask-SocketIO rebuilds a request context per event at the Socket.IO path: no route match."""
    from flask import request
    with app.test_request_context("/socket.io/", query_string="EIO=4&transport=websocket"):
        assert request.routing_exception is None and request.url_rule is None
    with app.test_request_context("/api/stats"):
        assert request.url_rule is not None and request.url_rule.rule == "/api/stats"
    with app.test_request_context("/nowhere"):
        assert request.routing_exception is not None  # a 404, as before


def test_queue_adapter_hook_still_exists():
    """realtime.mq.queue overrides this private hook of python-socketio; fail loudly if it moves."""
    import socketio
    from realtime.mq.queue import RedisQueue
    for hook in ("_redis_listen_with_retries", "_handle_emit", "_redis_connect", "set_server"):
        assert hasattr(socketio.RedisManager, hook), hook
    assert RedisQueue._redis_listen_with_retries is not socketio.RedisManager._redis_listen_with_retries
    assert RedisQueue._handle_emit is not socketio.RedisManager._handle_emit


def test_the_store_publishes_messages_unless_the_admin_ui_reports_every_emit(app_factory_with, redis_url):
    """(Apps with the Admin UI are not built here: its instrumentation patches engine.io for the
    whole process; tests/integration/test_admin_ui.py runs it in replicas.)"""
    from realtime.ops import adminui
    from realtime.mq.queue import StoreAnnounced
    relay = lambda app: app.extensions["realtime"].messages.relay  # noqa: E731
    assert isinstance(relay(app_factory_with(REDIS_URL=redis_url)), StoreAnnounced)
    assert relay(app_factory_with()) is None  # embedded: no queue
    assert not adminui.reports_emits({"ADMIN_UI": True, "ADMIN_UI_MODE": "production"})
    assert not adminui.reports_emits({"ADMIN_UI": False, "ADMIN_UI_MODE": "development"})
    assert adminui.reports_emits({"ADMIN_UI": True, "ADMIN_UI_MODE": "development"})


def test_queue_messages_are_decoded_with_the_standard_json_and_client_packets_are_not(
        app_factory_with, redis_url):
    import json

    from realtime import transport
    from realtime.extensions import socketio
    from realtime.transport import wirejson
    transport.install({"FAST_PATHS": "on"})  # wirejson is the layer's (off: the standard json)
    try:
        app_factory_with(REDIS_URL=redis_url)
    finally:
        transport.uninstall()
    assert socketio.server.manager.json is json
    assert socketio.server.packet_class.json is wirejson


@pytest.mark.parametrize("setting", [{"ADMIN_UI_MODE": "debug"}, {"ADMIN_UI_NAMESPACE": "/chat"},
                                     {"ADMIN_UI_NAMESPACE": "admin"}])
def test_a_bad_admin_ui_setting_stops_the_start(setting):
    from realtime.ops import adminui
    settings = {"ADMIN_UI": True, "ADMIN_UI_NAMESPACE": "/socketio-admin", "ADMIN_UI_MODE": "production",
                "ADMIN_UI_READ_ONLY": True, "INSTANCE_ID": "x", **setting}
    with pytest.raises(ValueError):
        adminui.install(None, None, None, settings)


def test_readyz_names_no_redis_address_when_it_is_down(app_factory_with):
    # Port 1 on loopback refuses at once; the password and address are in redis-py's error text.
    app = app_factory_with(REDIS_URL="redis://:sekret-pass@127.0.0.1:1/0")
    response = app.test_client().get("/readyz")
    assert response.status_code == 503
    body = response.get_data(as_text=True)
    assert response.get_json()["reason"] == "state store unreachable"
    for leak in ("127.0.0.1", ":1", "sekret", "Error"):
        assert leak not in body
