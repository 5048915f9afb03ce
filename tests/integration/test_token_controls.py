"""Tokens and sessions on two real replicas sharing one Redis (issue 19: items 2, 4, 5 and 7).

test_redis_cluster_tokens.py runs these tests again with its `pair` on the session's Redis Cluster.
"""
from __future__ import annotations

import secrets
import threading
import time

import jwt
import pytest
import requests
import socketio

from chatclient import ChatClient, wait_until
from realtime.devcluster import RedisServer, Replica, clean_environ, free_ports, stop_all
from realtime.services.apikeys import hash_key

pytestmark = pytest.mark.integration

API_KEY = "rtk_test_" + secrets.token_urlsafe(16)
ADMIN_UI = "/socketio-admin"


class Pair:
    """Two replicas with the Admin UI on, and a way to make tokens."""

    def __init__(self, replicas, secret):
        self.replicas, self.secret = replicas, secret

    def url(self, replica: int) -> str:
        return self.replicas[replica].url

    def token(self, sub="ana", ttl=300, **claims):
        now = int(time.time())
        payload = {"sub": sub, "name": sub.title(), "type": "access", "iat": now, "nbf": now,
                   "exp": now + ttl, "jti": secrets.token_hex(8), **claims}
        return jwt.encode({k: v for k, v in payload.items() if v is not None}, self.secret, algorithm="HS256")

    def chat(self, replica=0, sub="ana", **claims) -> ChatClient:
        return ChatClient(self.url(replica), self.token(sub, **claims)).connect()

    def revoke(self, body: dict) -> requests.Response:
        return requests.post(self.url(1) + "/api/admin/revocations", json=body,
                             headers={"X-API-Key": API_KEY}, timeout=5)


def pair_replicas(redis_url: str, secret: str, workdir) -> list[Replica]:
    """Two replicas (not started) on `redis_url` with the Admin UI, an API key and short token limits."""
    env = {**clean_environ(), "REALTIME_ENV_FILE": str(workdir / "no.env"),
           "REALTIME_REDIS_URL": redis_url, "REALTIME_JWT_SECRET_KEY": secret,
           "REALTIME_JWT_LEEWAY": "1", "REALTIME_TOKEN_EXPIRING_NOTICE": "60",
           "REALTIME_JWT_MAX_LIFETIME": "3600", "REALTIME_API_KEYS": f"ci:{hash_key(API_KEY)}",
           "REALTIME_ADMIN_UI": "1", "REALTIME_RATE_LIMITS": "connect=1000/minute",
           "REALTIME_HTTP_RATE_LIMIT": "1000/minute"}
    return [Replica(port, env, workdir, instance_id=f"tokens-{n}") for n, port in enumerate(free_ports(2))]


@pytest.fixture(scope="module")
def pair(tmp_path_factory, system_executable, start_processes):
    system_executable("redis-server")
    workdir = tmp_path_factory.mktemp("tokens")
    secret = secrets.token_urlsafe(48)
    redis = RedisServer(free_ports(1)[0], workdir / "redis", log_dir=workdir)
    replicas = pair_replicas(redis.url, secret, workdir)
    try:
        start_processes(redis)
        start_processes(*replicas)
        yield Pair(replicas, secret)
    finally:
        stop_all(replicas)
        redis.stop()


def admin_client(url: str, token: str) -> tuple[socketio.Client, list]:
    """A /admin connection, keeping its token_expiring and token_revoked notices."""
    sio, notices = socketio.Client(reconnection=False), []
    for name in ("token_expiring", "token_revoked"):
        sio.on(name, lambda data, name=name: notices.append((name, data)), namespace="/admin")
    sio.connect(url, namespaces=["/admin"], auth={"token": token}, transports=["websocket"], wait_timeout=10)
    return sio, notices


def admin_ui_client(url: str, token: str) -> socketio.Client:
    """Log in to the Socket.IO Admin UI's namespace as the UI does."""
    sio = socketio.Client(reconnection=False)
    sio.connect(url, namespaces=[ADMIN_UI], transports=["websocket"],
                auth={"username": "ops", "password": token}, wait_timeout=10)
    return sio


def refusal(url: str, auth=None, query: str = "") -> dict:
    """The connect_error data of a /chat connect that must be refused."""
    sio, errors = socketio.Client(reconnection=False), []
    sio.on("connect_error", errors.append, namespace="/chat")
    with pytest.raises(socketio.exceptions.ConnectionError):
        sio.connect(url + query, namespaces=["/chat"], auth=auth, transports=["websocket"], wait_timeout=5)
    return errors[0]["data"]


def test_admin_connections_are_warned_then_closed_unless_refreshed(pair):
    lapsing, lapsing_notices = admin_client(pair.url(0), pair.token("root", ttl=3, roles=["admin"]))
    renewed, renewed_notices = admin_client(pair.url(0), pair.token("root", ttl=3, roles=["admin"]))
    try:
        wait_until(lambda: lapsing_notices and renewed_notices, timeout=5)
        assert lapsing_notices[0][0] == "token_expiring" and lapsing_notices[0][1]["expires_in"] <= 3
        denied = renewed.call("refresh", {"token": pair.token("root", ttl=600)}, namespace="/admin", timeout=5)
        assert denied["error"]["code"] == "forbidden"  # a token without the admin role
        ack = renewed.call("refresh", {"token": pair.token("root", ttl=600, roles=["admin"])},
                           namespace="/admin", timeout=5)
        assert ack["ok"] is True and ack["exp"] > time.time() + 500
        wait_until(lambda: not lapsing.connected, timeout=10)
        time.sleep(1.5)
        assert renewed.connected
        assert renewed.call("snapshot", {}, namespace="/admin", timeout=5)["ok"] is True
    finally:
        lapsing.disconnect()
        renewed.disconnect()


def test_admin_ui_sessions_close_at_expiry_and_on_revocation(pair):
    lapsing = admin_ui_client(pair.url(0), pair.token("ops", ttl=3, roles=["admin"]))
    victim_token = pair.token("ops2", roles=["admin"])
    victim = admin_ui_client(pair.url(1), victim_token)
    lasting = admin_ui_client(pair.url(1), pair.token("ops3", roles=["admin"]))
    try:
        jti = jwt.decode(victim_token, options={"verify_signature": False})["jti"]
        assert pair.revoke({"jti": jti}).status_code == 201
        wait_until(lambda: not victim.connected, timeout=5)
        wait_until(lambda: not lapsing.connected, timeout=10)  # 3 s + 1 s leeway
        assert lasting.connected
    finally:
        for client in (lapsing, victim, lasting):
            client.disconnect()


def test_revoking_a_user_closes_every_older_connection_on_every_replica(pair):
    old = pair.token("chief", roles=["admin"])
    chats = [ChatClient(pair.url(n), old).connect() for n in (0, 1)]
    admin, notices = admin_client(pair.url(1), old)
    ui = admin_ui_client(pair.url(0), old)
    bystander = pair.chat(0, "deputy")
    try:
        answer = pair.revoke({"user": "chief"})
        assert answer.status_code == 201 and answer.json()["user"] == "chief"
        assert answer.json()["seconds"] >= 3600
        for chat in chats:
            assert chat.wait_for("token_revoked", timeout=5) == {"code": "token_invalid", "reason": "revoked"}
            wait_until(lambda: not chat.sio.connected, timeout=5)
        wait_until(lambda: not admin.connected and not ui.connected, timeout=5)
        assert ("token_revoked", {"code": "token_invalid", "reason": "revoked"}) in notices
        assert bystander.sio.connected
        for n in (0, 1):  # cached on both replicas, refused on both
            assert refusal(pair.url(n), {"token": old}) == {"code": "token_invalid", "reason": "revoked"}
        undated = pair.token("chief", iat=None)
        assert refusal(pair.url(0), {"token": undated})["reason"] == "revoked"
        time.sleep(1.1)  # a token issued after the revocation is accepted
        ChatClient(pair.url(0), pair.token("chief")).connect().close()
        assert pair.revoke({"jti": "x", "user": "chief"}).status_code == 400
    finally:
        for client in (*chats, bystander):
            client.close()
        admin.disconnect()
        ui.disconnect()


def test_tokens_outside_the_servers_limits_are_refused(pair):
    url = pair.url(0)
    decade = pair.token("ana", ttl=10 * 365 * 86400)
    assert refusal(url, {"token": decade}) == {"code": "token_invalid", "reason": "lifetime_too_long"}
    old_iat = pair.token("ana", ttl=60, iat=int(time.time()) - 7200)
    assert refusal(url, {"token": old_iat}) == {"code": "token_invalid", "reason": "lifetime_too_long"}
    foreign = pair.token("ana", aud="another-service")
    assert refusal(url, {"token": foreign}) == {"code": "token_invalid", "reason": "bad_claims"}
    demo = requests.post(url + "/api/rooms/lobby/messages", timeout=5,
                         headers={"Authorization": "Bearer " + decade}, json={"body": "x"})
    assert demo.status_code == 401


def test_a_query_string_token_is_ignored_by_default(pair):
    token = pair.token("ana")
    assert refusal(pair.url(0), None, f"?token={token}")["code"] == "auth_required"


def test_invitations_can_be_taken_back_and_refresh_rechecks_rooms(pair):
    lead = pair.chat(0, "lead", rooms=["private-ops"])
    guest = pair.chat(1, "guest")
    lapsing = pair.chat(1, "temp", rooms=["private-ops"])
    try:
        self_invite = lead.call("invite", {"room": "private-ops", "user": "lead"})
        assert self_invite["error"]["code"] == "forbidden"
        assert lapsing.call("invite", {"room": "private-ops", "user": "temp"})["error"]["code"] == "forbidden"
        assert lead.call("invite", {"room": "private-ops", "user": "guest"})["added"] is True
        assert guest.call("join", {"room": "private-ops"})["ok"] is True
        assert lapsing.call("join", {"room": "private-ops"})["ok"] is True
        # Refresh with a token that no longer grants the room: the connection leaves it.
        ack = lapsing.call("refresh", {"token": pair.token("temp")})
        assert ack["ok"] is True and ack["left"] == ["private-ops"]
        assert lapsing.wait_for("room_left") == {"room": "private-ops", "reason": "access_lost"}
        assert lapsing.call("send", {"room": "private-ops", "body": "x"})["error"]["code"] == "forbidden"
        # The invitation taken back on replica 0: the guest on replica 1 leaves the room.
        assert lead.call("uninvite", {"room": "private-ops", "user": "guest"}) == {
            "ok": True, "room": "private-ops", "user": "guest", "removed": True}
        assert guest.wait_for("room_left", timeout=5) == {"room": "private-ops", "reason": "uninvited"}
        lead.call("join", {"room": "private-ops"})
        lead.call("send", {"room": "private-ops", "body": "after"})
        assert guest.call("join", {"room": "private-ops"})["error"]["code"] == "forbidden"
        time.sleep(0.3)
        assert "after" not in guest.bodies("private-ops")
        assert guest.call("uninvite", {"room": "private-ops", "user": "lead"})["error"]["code"] == "forbidden"
    finally:
        for client in (lead, guest, lapsing):
            client.close()
