"""The official Socket.IO Admin UI's protocol on a real replica, for admin-role tokens only."""
from __future__ import annotations

import secrets
import threading

import pytest
import socketio

from chatclient import ChatClient
from lonereplica import demo_token, lone_replica
from realtime.devcluster import clean_environ

pytestmark = pytest.mark.integration
NAMESPACE = "/socketio-admin"


@pytest.fixture(scope="module")
def replica(redis_server, tmp_path_factory, start_processes):
    """One replica on the session's Redis with the Admin UI switched on."""
    workdir = tmp_path_factory.mktemp("adminui")
    env = {**clean_environ(), "REALTIME_REDIS_URL": redis_server.url,
           "REALTIME_JWT_SECRET_KEY": secrets.token_urlsafe(32), "REALTIME_DEMO_LOGIN": "1",
           "REALTIME_ENV_FILE": str(workdir / "no.env"), "REALTIME_UPLOAD_DIR": str(workdir / "up"),
           "REALTIME_ADMIN_UI": "1", "REALTIME_DEMO_ADMINS": "boss",
           "REALTIME_DEMO_ADMINS_UNSAFE": "acknowledged"}
    with lone_replica(workdir, env, "adminui-1", start_processes) as server:
        yield server


def token(replica, name: str) -> str:
    return demo_token(replica.url, name)


def admin_ui_client(replica, password: str) -> tuple[socketio.Client, dict, threading.Event]:
    """Log in as the Admin UI does (username + password) and keep what the server pushes."""
    client, seen, stats = socketio.Client(reconnection=False), {}, threading.Event()
    client.on("config", lambda data: seen.update(config=data), namespace=NAMESPACE)

    def server_stats(data):
        seen["server_stats"] = data
        stats.set()
    client.on("server_stats", server_stats, namespace=NAMESPACE)
    client.connect(replica.url, namespaces=[NAMESPACE], transports=["websocket"],
                   auth={"username": "ops", "password": password}, wait_timeout=10)
    return client, seen, stats


def test_an_admin_token_sees_the_replica_and_its_clients(replica):
    chat = ChatClient(replica.url, token(replica, "alice"), transports=["websocket"]).connect()
    client, seen, stats = admin_ui_client(replica, token(replica, "boss"))
    try:
        assert stats.wait(10), "server_stats arrive every 2 s"
        figures = seen["server_stats"]
        assert figures["serverId"] == "adminui-1" and figures["clientsCount"] == 2  # chat + UI
        assert figures["pollingClientsCount"] == 0
        assert {"rawConnection", "packetsIn", "packetsOut"} <= {e["type"] for e in figures["aggregatedEvents"]}
        assert "EMIT" not in seen["config"]["supportedFeatures"], "read-only by default"
    finally:
        client.disconnect()
        chat.close()


@pytest.mark.parametrize("who", ["alice", None, "not-a-token"])
def test_anyone_else_is_refused(replica, who):
    password = token(replica, who) if who == "alice" else who
    with pytest.raises(socketio.exceptions.ConnectionError):
        admin_ui_client(replica, password)


def test_development_mode_reports_the_chat_messages_a_replica_sends(redis_server, tmp_path, start_processes):
    """Development mode reports every emit by wrapping the manager's emit, so there chat messages
    take python-socketio's emit instead of being published by the store's append script."""
    env = {**clean_environ(), "REALTIME_REDIS_URL": redis_server.url,
           "REALTIME_JWT_SECRET_KEY": secrets.token_urlsafe(32), "REALTIME_DEMO_LOGIN": "1",
           "REALTIME_ENV_FILE": str(tmp_path / "no.env"), "REALTIME_UPLOAD_DIR": str(tmp_path / "up"),
           "REALTIME_ADMIN_UI": "1", "REALTIME_ADMIN_UI_MODE": "development", "REALTIME_DEMO_ADMINS": "boss",
           "REALTIME_DEMO_ADMINS_UNSAFE": "acknowledged"}
    with lone_replica(tmp_path, env, "adminui-dev", start_processes) as server:
        client, _, _ = admin_ui_client(server, token(server, "boss"))
        sent, reported = [], threading.Event()

        def event_sent(*args):
            sent.append(args)
            if any(isinstance(a, list) and a and a[0] == "message" for a in args):
                reported.set()
        client.on("event_sent", event_sent, namespace=NAMESPACE)
        chat = ChatClient(server.url, token(server, "alice"), transports=["websocket"]).connect()
        try:
            chat.call("join", {"room": "lobby"})
            assert chat.call("send", {"room": "lobby", "body": "seen by the UI"})["ok"]
            assert reported.wait(10), f"no event_sent for the message: {sent}"
            assert chat.wait_for("message", lambda m: m["body"] == "seen by the UI")
        finally:
            chat.close()
            client.disconnect()

