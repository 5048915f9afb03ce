"""Connections without a valid token are refused with the contract's codes, over a real socket."""
from __future__ import annotations

import datetime

import jwt
import pytest
import socketio

from chatclient import ChatClient

pytestmark = pytest.mark.integration


def refused(url: str, auth) -> dict:
    client = ChatClient(url, None, auth=auth)
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect()
    client.close()
    return client.connect_error


def signed(secret: str, algorithm: str = "HS256", **claims) -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    payload = {"sub": "ana", "type": "access", "iat": now, "nbf": now, "jti": "t1",
               "exp": now + datetime.timedelta(minutes=5), **claims}
    return jwt.encode({k: v for k, v in payload.items() if v is not None}, secret, algorithm=algorithm)


def unsigned() -> str:
    """A token with `alg: none`."""
    now = datetime.datetime.now(datetime.timezone.utc)
    return jwt.encode({"sub": "ana", "exp": now + datetime.timedelta(minutes=5)}, None, algorithm="none")


def test_refusal_codes(cluster):
    url = cluster.replicas[0].url
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=10)
    future = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(minutes=10)
    cases = [
        (None, "auth_required", None),
        ({"token": ""}, "auth_required", None),
        ({"token": "garbage"}, "token_invalid", "malformed"),
        ({"token": 42}, "token_invalid", "malformed"),
        ({"token": signed(cluster.secret, exp=past, iat=past, nbf=past)}, "token_expired", "expired"),
        ({"token": signed("another-secret-of-sufficient-length-0123456789")}, "token_invalid", "bad_signature"),
        ({"token": unsigned()}, "token_invalid", "alg_not_allowed"),
        ({"token": signed(cluster.secret, exp=None)}, "token_invalid", "bad_claims"),
        ({"token": signed(cluster.secret, sub=None)}, "token_invalid", "malformed"),
        ({"token": signed(cluster.secret, type="refresh")}, "token_invalid", "wrong_type"),
        ({"token": signed(cluster.secret, nbf=future)}, "token_invalid", "not_yet_valid"),
        ({"token": signed(cluster.secret, roles="admin")}, "token_invalid", "bad_claims"),
    ]
    for auth, code, reason in cases:
        error = refused(url, auth)
        assert error["data"]["code"] == code, (auth, error)
        assert error["data"].get("reason") == reason, (auth, error)
        assert error["message"]


def test_valid_token_is_accepted(cluster):
    client = ChatClient(cluster.replicas[0].url, signed(cluster.secret, name="Ana")).connect()
    try:
        assert client.events["welcome"][0]["user"] == {"id": "ana", "name": "Ana"}
    finally:
        client.close()


def test_clock_skew_within_leeway_is_accepted(cluster):
    just_expired = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=3)
    client = ChatClient(cluster.replicas[1].url, signed(cluster.secret, exp=just_expired)).connect()
    client.close()
