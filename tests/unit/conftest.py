"""Fixtures for unit tests: an app on the in-memory store, its Socket.IO test clients, each store."""
from __future__ import annotations

import os

import pytest
from flask_jwt_extended import create_access_token

from realtime import create_app
from realtime.extensions import socketio
from realtime.store import create_redis
from realtime.store.memory import MemoryStore
from realtime.store.redis import RedisStore
from realtime.store.rediscluster import RedisClusterStore

SECRET = "unit-test-secret-that-is-long-enough-0123456789"


@pytest.fixture
def app_config():
    """Overrides for the app under test; tests may update it before `app` is built."""
    # No rate limits unless a test sets its own: tests connect far faster than people do.
    return {"ASYNC_MODE": "threading", "BACKGROUND_TASKS": False, "JWT_SECRET_KEY": SECRET,
            "INSTANCE_ID": "unit-1", "RATE_LIMITS": "", "HTTP_RATE_LIMIT": "100000/minute",
            "LOGIN_RATE_LIMIT": "100000/minute"}


@pytest.fixture
def app_factory_with(app_config, monkeypatch, tmp_path):
    """Build apps isolated from the environment and any .env file, with extra overrides."""
    for name in list(os.environ):
        if name.startswith("REALTIME_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("REALTIME_ENV_FILE", str(tmp_path / "none.env"))
    uploads = str(tmp_path / "uploads")
    return lambda **overrides: create_app({"UPLOAD_DIR": uploads, **app_config, **overrides})


@pytest.fixture
def app(app_factory_with):
    """A replica on the memory store."""
    return app_factory_with()


@pytest.fixture
def client(app):
    """An HTTP test client."""
    return app.test_client()


@pytest.fixture
def token(app):
    """Make access tokens for a user name."""
    def make(name: str = "Ana", **claims) -> str:
        with app.app_context():
            return create_access_token(identity=name.lower(), additional_claims={"name": name, **claims})
    return make


@pytest.fixture
def chat(app, token):
    """Connect Socket.IO test clients to /chat as a named user."""
    clients = []

    def connect(name: str = "Ana", **kwargs):
        auth = kwargs.pop("auth", {"token": token(name)})
        sio = socketio.test_client(app, namespace="/chat", auth=auth, **kwargs)
        clients.append(sio)
        return sio
    yield connect
    for sio in clients:
        if sio.is_connected("/chat"):
            sio.disconnect(namespace="/chat")


@pytest.fixture(params=["memory", "redis", "redis-cluster"])
def store(request):
    """Each store backend in turn (Redis: a real redis-server, or a real Redis Cluster, emptied for the test)."""
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "redis-cluster":
        client = create_redis(request.getfixturevalue("redis_cluster_url"))
        yield RedisClusterStore(client)
        client.close()
        return
    client = create_redis(request.getfixturevalue("redis_url"))
    yield RedisStore(client)
    client.close()
