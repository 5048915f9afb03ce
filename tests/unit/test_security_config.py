"""Key configuration, API keys, rate-limit rules and headers."""
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from realtime.extensions import socketio
from realtime.services import apikeys
from realtime.services.ratelimit import parse_rules


def es256_pair():
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return key, public


def connects(app, token) -> bool:
    sio = socketio.test_client(app, namespace="/chat", auth={"token": token})
    return sio.is_connected("/chat")


def test_es256_only_accepts_es256(app_factory_with):
    key, public = es256_pair()
    app = app_factory_with(JWT_ALGORITHMS="ES256", JWT_PUBLIC_KEY=public, JWT_SECRET_KEY=None)
    claims = {"sub": "ana", "exp": int(time.time()) + 60}
    assert connects(app, jwt.encode(claims, key, algorithm="ES256"))
    assert not connects(app, jwt.encode(claims, "x" * 40, algorithm="HS256"))


def test_public_key_file_path_is_read(app_factory_with, tmp_path):
    key, public = es256_pair()
    path = tmp_path / "public.pem"
    path.write_text(public)
    app = app_factory_with(JWT_ALGORITHMS="ES256", JWT_PUBLIC_KEY=str(path))
    assert connects(app, jwt.encode({"sub": "bo", "exp": int(time.time()) + 60}, key, algorithm="ES256"))


@pytest.mark.parametrize("overrides, message", [
    ({"JWT_ALGORITHMS": "none"}, "unsupported"),
    ({"JWT_ALGORITHMS": "HS256,XX999"}, "unsupported"),
    ({"JWT_ALGORITHMS": "RS256"}, "JWT_PUBLIC_KEY is required"),
])
def test_bad_key_configuration_refuses_to_start(app_factory_with, overrides, message):
    with pytest.raises(RuntimeError, match=message):
        app_factory_with(**overrides)


def test_hsts_only_over_https(client):
    assert "Strict-Transport-Security" not in client.get("/healthz").headers
    secure = client.get("/healthz", environ_overrides={"wsgi.url_scheme": "https"})
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=")


def test_api_keys_are_matched_by_hash():
    key = apikeys.new_key()
    keys = apikeys.ApiKeys(apikeys.parse(f"ci:{apikeys.hash_key(key)}, broken:nothex, other:{'0' * 64}"))
    assert set(keys.hashes) == {"ci", "other"}
    assert keys.identify(key) == "ci"
    assert keys.identify(key + "x") is None and keys.identify("") is None and keys.identify(None) is None


def test_rate_limit_rules_parse():
    rules = parse_rules("send=20/10 seconds; join = 30/minute ;; typing=")
    assert set(rules) == {"send", "join"}
    assert rules["send"].amount == 20 and rules["join"].amount == 30


def test_event_limit_answers_rate_limited_and_changes_nothing(app_factory_with, token):
    app = app_factory_with(RATE_LIMITS="send=2/minute")
    sio = socketio.test_client(app, namespace="/chat", auth={"token": token("Ana")})
    sio.emit("join", {"room": "r"}, namespace="/chat", callback=True)
    acks = [sio.emit("send", {"room": "r", "body": f"m{n}"}, namespace="/chat", callback=True)
            for n in range(3)]
    assert [a["ok"] for a in acks] == [True, True, False]
    assert acks[2]["error"]["code"] == "rate_limited" and acks[2]["error"]["retry_after"] > 0
    assert app.extensions["realtime"].store.room_bounds("r") == (1, 2)


def test_a_socketio_event_context_builds_no_rate_limit_state(app):
    """flask-limiter's teardown runs only where its before_request hook kept state (HTTP)."""
    ctx = app.request_context({**app.test_request_context("/socket.io/").request.environ})
    ctx.push()
    ctx.pop()
    assert "_limiter_request_context" not in vars(ctx)


def test_a_request_with_rate_limit_state_still_has_it_reset(app):
    from realtime.extensions import limiter
    with app.test_request_context("/health") as ctx:
        limiter.context.view_rate_limits.append("kept by before_request")
        state = limiter.context
    assert "_limiter_request_context" in vars(ctx) and state.view_rate_limits == []


def test_redis_without_audience_and_issuer_warns_at_start(caplog):
    from realtime.jwt_keys import warn_unscoped
    base = {"EMBEDDED": False, "JWT_AUDIENCE": None, "JWT_ISSUER": None}
    with caplog.at_level("WARNING", logger="realtime.jwt_keys"):
        warn_unscoped(base)
        warn_unscoped({**base, "EMBEDDED": True})
        warn_unscoped({**base, "JWT_AUDIENCE": "chat", "JWT_ISSUER": "https://id.example"})
    assert [r.levelname for r in caplog.records] == ["WARNING"]
    assert "REALTIME_JWT_AUDIENCE and REALTIME_JWT_ISSUER" in caplog.records[0].getMessage()


def test_demo_tokens_must_fit_the_maximum_lifetime(app_factory_with):
    with pytest.raises(RuntimeError, match="JWT_MAX_LIFETIME"):
        app_factory_with(JWT_ACCESS_TOKEN_EXPIRES=7200, JWT_MAX_LIFETIME=3600)
    app_factory_with(JWT_ACCESS_TOKEN_EXPIRES=7200, JWT_MAX_LIFETIME=0)


# ---------------------------------------------------------------------------------------------
# CORS: embedded mode's `*` allows any origin, never with credentials (issue 19, item 9)

HANDSHAKE = "/socket.io/?EIO=4&transport=polling"
EVIL = "https://evil.example"


def cors(answer) -> dict:
    """The Access-Control-* headers of an answer."""
    return {name: value for name, value in answer.headers.items() if name.startswith("Access-Control-")}


def test_embedded_handshake_from_a_foreign_origin_gets_no_credentials(client):
    answer = client.get(HANDSHAKE, headers={"Origin": EVIL})
    assert answer.status_code == 200  # `*`: any page may connect, as before
    assert "Access-Control-Allow-Credentials" not in answer.headers, cors(answer)


@pytest.mark.parametrize("path, method", [("/api/stats", "GET"), ("/api/rooms/lobby/messages", "POST")])
def test_embedded_rest_answers_foreign_origins_with_a_literal_star(client, path, method):
    preflight = client.options(path, headers={"Origin": EVIL, "Access-Control-Request-Method": method})
    simple = client.get(path, headers={"Origin": EVIL})
    for answer in (preflight, simple):
        assert answer.headers.get("Access-Control-Allow-Origin") == "*", cors(answer)
        assert "Access-Control-Allow-Credentials" not in answer.headers


@pytest.mark.parametrize("origin", ["http://127.0.0.1:8000", "http://localhost:8000"])
def test_embedded_demo_origin_still_connects(client, origin):
    host = origin.split("//")[1]
    answer = client.get(HANDSHAKE, headers={"Origin": origin, "Host": host})
    assert answer.status_code == 200 and answer.get_data(as_text=True).startswith("0{")
    assert answer.headers["Access-Control-Allow-Origin"] == origin


def test_listed_origins_keep_credentials_and_others_are_refused(app_factory_with):
    client = app_factory_with(CORS_ORIGINS="https://chat.example").test_client()
    listed = client.get(HANDSHAKE, headers={"Origin": "https://chat.example"})
    assert listed.status_code == 200
    assert listed.headers["Access-Control-Allow-Origin"] == "https://chat.example"
    assert listed.headers["Access-Control-Allow-Credentials"] == "true"  # the sticky cookie
    assert client.get(HANDSHAKE, headers={"Origin": EVIL}).status_code == 400
