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


def signed(secret: str, **claims) -> str:
    now = datetime.datetime.now(datetime.timezone.utc)
    payload = {"sub": "ana", "type": "access", "iat": now, "nbf": now, "jti": "t1",
               "exp": now + datetime.timedelta(minutes=5), **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def test_refusal_codes(cluster):
    url = cluster.replicas[0].url
    past = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(minutes=10)
    cases = {
        "auth_required": None,
        "token_invalid": {"token": "garbage"},
        "token_expired": {"token": signed(cluster.secret, exp=past, iat=past, nbf=past)},
    }
    for code, auth in cases.items():
        error = refused(url, auth)
        assert error["data"] == {"code": code}, (code, error)
        assert error["message"]
    wrong_key = refused(url, {"token": signed("another-secret-of-sufficient-length-0123456789")})
    assert wrong_key["data"]["code"] == "token_invalid"


def test_valid_token_is_accepted(cluster):
    client = ChatClient(cluster.replicas[0].url, signed(cluster.secret, name="Ana")).connect()
    try:
        assert client.events["welcome"][0]["user"] == {"id": "ana", "name": "Ana"}
    finally:
        client.close()
