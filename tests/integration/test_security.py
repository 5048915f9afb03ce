"""Security through real connections on two replicas sharing one Redis (issue: security)."""
from __future__ import annotations

import secrets
import time

import jwt
import pytest
import requests
import socketio
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from chatclient import ChatClient, wait_until
from realtime.devcluster import RedisServer, Replica, clean_environ, free_ports, stop_all
from realtime.services.apikeys import hash_key

pytestmark = pytest.mark.integration

API_KEY = "rtk_test_" + secrets.token_urlsafe(16)
ALLOWED_ORIGIN = "https://allowed.example"


def rsa_pair():
    """A private key object and its public PEM."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return key, public.decode()


class Secured:
    """Two replicas configured like a production deployment, and ways to make tokens."""

    def __init__(self, redis, replicas, secret, rsa_key):
        self.redis, self.replicas, self.secret, self.rsa_key = redis, replicas, secret, rsa_key

    def token(self, sub="ana", algorithm="HS256", key=None, ttl=300, **claims):
        now = int(time.time())
        payload = {"sub": sub, "name": sub.title(), "type": "access", "iat": now, "nbf": now,
                   "exp": now + ttl, "jti": secrets.token_hex(8), **claims}
        signing = key or (self.secret if algorithm.startswith("HS") else self.rsa_key)
        return jwt.encode(payload, signing, algorithm=algorithm)

    def client(self, replica=0, **kwargs) -> ChatClient:
        token = kwargs.pop("token", None) or self.token(kwargs.pop("sub", "ana"))
        return ChatClient(self.replicas[replica].url, token, **kwargs)


@pytest.fixture(scope="module")
def secured(tmp_path_factory, system_executable, start_processes):
    system_executable("redis-server")
    workdir = tmp_path_factory.mktemp("secured")
    redis_port, *ports = free_ports(3)
    rsa_key, public_pem = rsa_pair()
    secret = secrets.token_urlsafe(48)
    redis = RedisServer(redis_port, workdir / "redis", log_dir=workdir)
    env = {**clean_environ(), "REALTIME_ENV_FILE": str(workdir / "no.env"),
           "REALTIME_REDIS_URL": redis.url, "REALTIME_JWT_SECRET_KEY": secret,
           "REALTIME_JWT_ALGORITHMS": "HS256,RS256", "REALTIME_JWT_PUBLIC_KEY": public_pem,
           "REALTIME_JWT_LEEWAY": "1", "REALTIME_TOKEN_EXPIRING_NOTICE": "60",
           "REALTIME_API_KEYS": f"ci:{hash_key(API_KEY)}",
           "REALTIME_CORS_ORIGINS": ALLOWED_ORIGIN, "REALTIME_DEMO_LOGIN": "1",
           "REALTIME_RATE_LIMITS": "connect=1000/minute; send=5/minute; abuse=3/minute",
           "REALTIME_LOGIN_RATE_LIMIT": "3/minute", "REALTIME_HTTP_RATE_LIMIT": "1000/minute",
           "REALTIME_INSTANCE_TTL": "4", "REALTIME_HEARTBEAT_INTERVAL": "1"}
    replicas = [Replica(port, env, workdir, instance_id=f"secure-{n}") for n, port in enumerate(ports)]
    try:
        start_processes(redis)
        start_processes(*replicas)
        yield Secured(redis, replicas, secret, rsa_key)
    finally:
        stop_all(replicas)
        redis.stop()


def refusal(client: ChatClient) -> dict:
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect()
    client.close()
    return client.connect_error["data"]


def test_rs256_tokens_from_the_users_backend(secured):
    client = secured.client(token=secured.token("rsa-user", algorithm="RS256")).connect()
    assert client.events["welcome"][0]["user"]["id"] == "rsa-user"
    client.close()
    other_key, _ = rsa_pair()
    forged = secured.token("rsa-user", algorithm="RS256", key=other_key)
    assert refusal(secured.client(token=forged)) == {"code": "token_invalid", "reason": "bad_signature"}


def test_revoked_token_is_refused_on_connect_and_refresh(secured):
    victim = secured.token("victim")
    jti = jwt.decode(victim, options={"verify_signature": False})["jti"]
    answer = requests.post(secured.replicas[1].url + "/api/admin/revocations",
                           json={"jti": jti}, headers={"X-API-Key": API_KEY}, timeout=5)
    assert answer.status_code == 201
    assert refusal(secured.client(token=victim)) == {"code": "token_invalid", "reason": "revoked"}
    holder = secured.client(sub="victim").connect()
    try:
        ack = holder.call("refresh", {"token": victim})
        assert ack["error"]["code"] == "token_invalid" and ack["error"]["reason"] == "revoked"
    finally:
        holder.close()


def test_revoking_a_token_closes_its_connections_on_every_replica(secured):
    victim = secured.token("victim2")
    jti = jwt.decode(victim, options={"verify_signature": False})["jti"]
    # Both replicas have verified (and cached) the token before it is revoked.
    holders = [secured.client(replica, token=victim).connect() for replica in (0, 1)]
    bystander = secured.client(0, sub="victim2").connect()  # same user, another token
    try:
        answer = requests.post(secured.replicas[1].url + "/api/admin/revocations",
                               json={"jti": jti}, headers={"X-API-Key": API_KEY}, timeout=5)
        assert answer.status_code == 201
        for holder in holders:
            assert holder.wait_for("token_revoked", timeout=5) == {"code": "token_invalid",
                                                                    "reason": "revoked"}
            wait_until(lambda: not holder.sio.connected, timeout=5)
        assert bystander.sio.connected
        # The replica that did not take the revocation refuses the cached token from now on.
        assert refusal(secured.client(0, token=victim)) == {"code": "token_invalid", "reason": "revoked"}
        status = requests.get(secured.replicas[0].url + "/api/rooms/lobby/messages",
                              headers={"Authorization": "Bearer " + victim}, timeout=5)
        assert status.status_code == 401 and status.json()["error"]["code"] == "token_invalid"
    finally:
        for client in (*holders, bystander):
            client.close()


def test_users_cannot_revoke(secured):
    answer = requests.post(secured.replicas[0].url + "/api/admin/revocations", json={"jti": "x"},
                           headers={"Authorization": "Bearer " + secured.token("mallory")}, timeout=5)
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "forbidden"


def test_expiring_token_is_warned_then_disconnected_unless_refreshed(secured):
    lapsing = secured.client(token=secured.token("lapse", ttl=3)).connect()
    renewed = secured.client(token=secured.token("renew", ttl=3)).connect()
    try:
        assert lapsing.wait_for("token_expiring", timeout=5)["expires_in"] <= 3
        renewed.wait_for("token_expiring", timeout=5)
        ack = renewed.call("refresh", {"token": secured.token("renew", ttl=600)})
        assert ack["ok"] is True and ack["exp"] > time.time() + 500
        wait_until(lambda: not lapsing.sio.connected, timeout=10)
        time.sleep(1.5)
        assert renewed.sio.connected
        assert renewed.call("refresh", {"token": secured.token("someone-else")})["error"]["code"] == "forbidden"
    finally:
        lapsing.close()
        renewed.close()


def test_private_rooms_need_a_claim_or_an_invitation(secured):
    member = secured.client(token=secured.token("lead", rooms=["private-team"])).connect()
    outsider = secured.client(1, sub="outsider").connect()
    guest = secured.client(1, sub="guest").connect()
    try:
        assert member.call("join", {"room": "private-team"})["ok"] is True
        sent = member.call("send", {"room": "private-team", "body": "plans"})["message"]
        for event, payload in [("join", {"room": "private-team"}), ("history", {"room": "private-team"}),
                               ("read", {"room": "private-team", "message_id": sent["id"]}),
                               ("send", {"room": "private-team", "body": "x"}),
                               ("invite", {"room": "private-team", "user": "outsider"})]:
            assert outsider.call(event, payload)["error"]["code"] == "forbidden", event
        page = requests.get(secured.replicas[0].url + "/api/rooms/private-team/messages", timeout=5,
                            headers={"Authorization": "Bearer " + secured.token("outsider")})
        assert page.status_code == 403
        assert member.call("invite", {"room": "private-team", "user": "guest"})["added"] is True
        ack = guest.call("join", {"room": "private-team", "since": 0})
        assert ack["ok"] is True and ack["missed"] == [sent]
        time.sleep(0.3)
        assert outsider.events["message"] == []
    finally:
        for client in (member, outsider, guest):
            client.close()


def test_admin_namespace_is_for_admins_only(secured):
    url = secured.replicas[0].url
    for token, expected in [(secured.token("user"), "forbidden"), (None, "auth_required")]:
        sio = socketio.Client(reconnection=False)
        errors = []
        sio.on("connect_error", errors.append, namespace="/admin")
        with pytest.raises(socketio.exceptions.ConnectionError):
            sio.connect(url, namespaces=["/admin"], auth={"token": token} if token else None, wait_timeout=5)
        assert errors[0]["data"]["code"] == expected
    admin = socketio.Client(reconnection=False)
    admin.connect(url, namespaces=["/admin"], auth={"token": secured.token("root", roles=["admin"])},
                  wait_timeout=5)
    try:
        ack = admin.call("stats", {}, namespace="/admin", timeout=5)
        assert ack["ok"] is True and {i["id"] for i in ack["stats"]["instances"]} >= {"secure-0", "secure-1"}
    finally:
        admin.disconnect()


def test_server_api_key_and_service_tokens_post_messages(secured):
    member = secured.client(1, sub="listener").connect()
    url = secured.replicas[0].url + "/api/rooms/announcements/messages"
    try:
        member.call("join", {"room": "announcements"})
        body = {"type": "text", "body": "release 1.2 is out", "client_id": "rel-1.2", "from": "Releases"}
        first = requests.post(url, json=body, headers={"X-API-Key": API_KEY}, timeout=5)
        assert first.status_code == 201
        message = first.json()["message"]
        assert message["from"] == {"id": "releases", "name": "Releases"}
        assert member.wait_for("message", lambda m: m["id"] == message["id"]) == message
        again = requests.post(url, json=body, headers={"X-API-Key": API_KEY}, timeout=5)
        assert again.json()["message"] == message
        service = {"Authorization": "Bearer " + secured.token("deployer", roles=["service"])}
        assert requests.post(url, json={"body": "via service token"}, headers=service, timeout=5).status_code == 201
        for headers, status, code in [({"X-API-Key": "wrong"}, 401, "invalid_api_key"),
                                      ({"Authorization": "Bearer " + secured.token("user")}, 403, "forbidden"),
                                      ({}, 401, "auth_required")]:
            answer = requests.post(url, json={"body": "x"}, headers=headers, timeout=5)
            assert (answer.status_code, answer.json()["error"]["code"]) == (status, code)
        bad = requests.post(url, json={"type": "text", "body": ""}, headers={"X-API-Key": API_KEY}, timeout=5)
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_body"
    finally:
        member.close()


def test_send_limit_is_shared_across_replicas_and_abusers_are_cut_off(secured):
    one, two = secured.client(0, sub="chatty").connect(), secured.client(1, sub="chatty").connect()
    try:
        for client in (one, two):
            client.call("join", {"room": "limits"})
        acks = [client.call("send", {"room": "limits", "body": f"m{n}"})
                for n, client in enumerate([one, two, one, two, one, two])]
        assert [a["ok"] for a in acks] == [True] * 5 + [False]
        assert acks[-1]["error"]["code"] == "rate_limited" and acks[-1]["error"]["retry_after"] > 0
        for _ in range(4):  # keeps pushing: the abuse limit (3/minute) cuts the connection
            if not two.sio.connected:
                break
            try:
                two.call("send", {"room": "limits", "body": "spam"}, timeout=3)
            except socketio.exceptions.TimeoutError:
                break
        wait_until(lambda: not two.sio.connected, timeout=5)
        assert one.sio.connected
    finally:
        one.close()
        two.close()


def test_demo_login_limit_is_shared_across_replicas(secured):
    codes = [requests.post(secured.replicas[n % 2].url + "/api/auth/token", json={"username": f"u{n}"},
                           timeout=5) for n in range(4)]
    assert [c.status_code for c in codes] == [200, 200, 200, 429]
    assert codes[-1].json()["error"]["code"] == "rate_limited"
    assert int(codes[-1].headers["Retry-After"]) >= 1


def test_websocket_from_an_unlisted_origin_is_refused(secured):
    url = secured.replicas[0].url
    token = secured.token("origin")
    for origin, accepted in [("https://evil.example", False), (ALLOWED_ORIGIN, True)]:
        # websocket-client sends its own Origin unless told which one (a header would add a second).
        sio = socketio.Client(reconnection=False, websocket_extra_options={"origin": origin})
        try:
            sio.connect(url, namespaces=["/chat"], auth={"token": token}, transports=["websocket"],
                        wait_timeout=5)
            assert accepted, origin
        except (socketio.exceptions.ConnectionError, ValueError):
            # engine.io answers 400; python-engineio's client reports that as an empty packet.
            assert not accepted, origin
        finally:
            sio.disconnect()
    handshake = requests.get(url + "/socket.io/?EIO=4&transport=polling", timeout=5,
                             headers={"Origin": "https://evil.example"})
    assert handshake.status_code == 400
    preflight = requests.options(url + "/api/stats", timeout=5, headers={
        "Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "GET"})
    assert preflight.headers.get("Access-Control-Allow-Origin") == ALLOWED_ORIGIN
    evil = requests.get(url + "/api/stats", headers={"Origin": "https://evil.example"}, timeout=5)
    assert "Access-Control-Allow-Origin" not in evil.headers


def test_security_headers_on_every_response(secured):
    for path in ("/", "/healthz", "/api/stats", "/nope", "/static/app.js"):
        headers = requests.get(secured.replicas[0].url + path, timeout=5).headers
        assert "script-src 'self'" in headers["Content-Security-Policy"], path
        assert headers["X-Content-Type-Options"] == "nosniff", path
        assert headers["Referrer-Policy"] == "no-referrer", path
        assert headers["X-Frame-Options"] == "DENY", path
        assert "Strict-Transport-Security" not in headers, path  # plain HTTP here
