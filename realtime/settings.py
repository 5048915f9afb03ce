"""Settings: defaults, then a `.env` file, then `REALTIME_*` environment, then explicit overrides."""
from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any, Mapping

PROJECT_ROOT = Path(__file__).resolve().parent.parent
PREFIX = "REALTIME_"

DEFAULTS: dict[str, Any] = {
    # None means the embedded single replica on in-memory backends.
    "REDIS_URL": None,
    "INSTANCE_ID": None,
    "HOST": "127.0.0.1",
    "PORT": 8000,
    # None means "on only in the embedded mode" (no Redis configured).
    "DEMO_LOGIN": None,
    # Demo login names that get the admin role (dashboard, /admin); demo mode only. None means
    # "admin" in the embedded mode and nobody with Redis (see DEMO_ADMINS_UNSAFE).
    "DEMO_ADMINS": None,
    # With Redis, demo admins hand the admin role to anyone who can reach the replicas: a replica
    # refuses to start with them unless this is exactly "acknowledged" (local dev clusters only).
    "DEMO_ADMINS_UNSAFE": "",
    "DASHBOARD_INTERVAL": 2.0,
    "JWT_SECRET_KEY": None,
    "JWT_ACCESS_TOKEN_EXPIRES": 3600,
    # Accepted algorithms; HS* verify with JWT_SECRET_KEY, RS*/ES* with JWT_PUBLIC_KEY.
    "JWT_ALGORITHMS": "HS256",
    "JWT_PUBLIC_KEY": None,
    "JWT_PRIVATE_KEY": None,
    "JWT_LEEWAY": 10,
    "JWT_AUDIENCE": None,
    "JWT_ISSUER": None,
    "JWT_MAX_LIFETIME": 86400,  # seconds a token may live (exp - iat, and exp - now); 0: unbounded
    "QUERY_TOKEN": False,       # accept ?token= on Socket.IO connect (it ends up in access logs)
    "TOKEN_EXPIRING_NOTICE": 60,
    # In-process caches of verified tokens, the revocation denylist and invitations (0: off).
    "AUTH_CACHE_SIZE": 10_000,
    "PRIVATE_ROOM_PREFIX": "private-",
    "API_KEYS": "",
    "RATE_LIMITS": ("connect=120/minute; join=60/minute; leave=60/minute; send=30/10 seconds; "
                    "typing=30/10 seconds; read=120/minute; history=60/minute; "
                    "conversations=30/minute; invite=30/minute; refresh=10/minute; "
                    "abuse=20/minute"),
    "HTTP_RATE_LIMIT": "300/minute",
    "LOGIN_RATE_LIMIT": "20/minute",
    "PROXY_COUNT": 0,
    "HSTS": False,
    "CORS_ORIGINS": None,
    "ROOMS": "",
    "MESSAGE_MAX_CHARS": 4000,
    "HISTORY_MAX_MESSAGES": 10000,
    "HISTORY_MAX_AGE": 7 * 24 * 3600,
    "HISTORY_PAGE_MAX": 100,
    "RECOVERY_MAX_MESSAGES": 500,
    "IDEMPOTENCY_TTL": 24 * 3600,
    "TYPING_THROTTLE": 2.0,
    "TYPING_EXPIRES": 6.0,
    "UPLOAD_DIR": str(PROJECT_ROOT / "var" / "uploads"),
    "UPLOAD_MAX_BYTES": 10 * 1024 * 1024,
    # Per user, across replicas: uploads per window and bytes per window (the request's
    # Content-Length); empty: off. Bytes must allow UPLOAD_MAX_BYTES plus multipart framing.
    "UPLOAD_QUOTA": "50/hour",
    "UPLOAD_QUOTA_BYTES": "209715200/hour",
    # Seconds an upload is kept (0: forever); more than HISTORY_MAX_AGE, so a message in history
    # never outlives its file: an upload may be attached for RETENTION - HISTORY_MAX_AGE seconds.
    "UPLOAD_RETENTION": 30 * 24 * 3600,
    # Outbound webhooks: comma-separated endpoint URLs (none: off) and the HMAC signing secret.
    "WEBHOOK_URLS": "",
    "WEBHOOK_EVENTS": "message.created,client.connected,client.disconnected,room.joined,room.left",
    "WEBHOOK_SECRET": None,
    "WEBHOOK_CONNECT_TIMEOUT": 2.0,
    "WEBHOOK_READ_TIMEOUT": 5.0,
    "WEBHOOK_MAX_ATTEMPTS": 6,
    "WEBHOOK_BACKOFF_INITIAL": 0.5,
    "WEBHOOK_BACKOFF_MAX": 30.0,
    "WEBHOOK_BREAKER_FAILURES": 5,
    "WEBHOOK_BREAKER_RESET": 30.0,
    "WEBHOOK_CONCURRENCY": 8,
    "WEBHOOK_RECLAIM_IDLE": 300.0,
    "INSTANCE_TTL": 15,
    "HEARTBEAT_INTERVAL": 5,
    "STATS_INTERVAL": 1.0,
    "MQ_CHANNEL": "realtime",
    "MQ_RETRY_MAX": 2.0,
    # Room emits on per-room channels a replica subscribes only while it has members there:
    # on | subscribe (rolling upgrade step: subscribe, still publish on the main channel) | off.
    "MQ_ROOM_CHANNELS": "on",
    "REDIS_SOCKET_TIMEOUT": 5.0,
    # Longest a client event or an HTTP request waits for Redis before it is answered
    # `unavailable` (a Redis that hangs: stopped, partitioned); gevent replicas.
    "EVENT_TIMEOUT": 3.0,
    # Longest GET /readyz waits for Redis's PING before it answers 503.
    "READY_TIMEOUT": 0.5,
    # A message is accepted once this many Redis replicas have it (WAIT), so a failover cannot
    # lose it; 0: once the master has it (asynchronous replication, see docs/deployment.md).
    "REDIS_WAIT_REPLICAS": 0,
    "REDIS_WAIT_TIMEOUT": 1.0,
    # The appends of concurrent sends go to Redis as one pipeline (group commit; gevent replicas,
    # not with REDIS_WAIT_REPLICAS); each send is still acked only after its own append's reply.
    "GROUP_COMMIT": True,
    # The largest event is a 4000-character text (about 25 kB of JSON at worst); a bigger cap
    # only lets one client make the worker unmask and validate megabytes per frame.
    "MAX_HTTP_BUFFER_SIZE": 100_000,
    # Hostile or broken connections (realtime/guard.py, realtime/sendbound.py): seconds a
    # connection may go without connecting a namespace (Socket.IO's connectTimeout; 0: off),
    # connections one address may hold at once (0: off; behind a proxy, only with PROXY_COUNT
    # set, or every client is the proxy), bytes a client that stops reading may fall behind.
    "CONNECT_TIMEOUT": 45.0,
    "MAX_CONNECTIONS_PER_ADDRESS": 0,
    "MAX_SEND_BUFFER": 4 * 1024 * 1024,
    # The transport layer (realtime/transport/: adapters over private library internals): auto
    # applies it on the versions in realtime.transport.VERIFIED only, else the stock path with a
    # warning; on refuses to start on other versions; off is the stock path (true/false: on/off).
    "FAST_PATHS": "auto",
    "STATIC_DIR": str(PROJECT_ROOT / "static"),
    "BACKGROUND_TASKS": True,
    # None lets Flask-SocketIO pick (gevent under gunicorn); tests use "threading".
    "ASYNC_MODE": None,
    "LOG_LEVEL": "INFO",
    "LOG_FORMAT": "json",          # or "text" for a terminal
    "LOG_FILE": "",                # empty: stdout (containers); else a file, rotated
    "LOG_ROTATE": "size",          # "size" or "time"
    "LOG_MAX_BYTES": 10 * 1024 * 1024,
    "LOG_WHEN": "midnight",        # with LOG_ROTATE=time
    "LOG_BACKUPS": 7,
    "ACCESS_LOG": True,
    # The official Socket.IO Admin UI (admin.socket.io), for admin-role tokens; off: it patches engine.io.
    "ADMIN_UI": False,
    "ADMIN_UI_NAMESPACE": "/socketio-admin",   # our own /admin namespace is the dashboard's
    "ADMIN_UI_MODE": "production",            # "development" reports every event (costly)
    "ADMIN_UI_READ_ONLY": True,               # False lets the UI emit, join, leave and disconnect            # one JSON line per HTTP request / websocket session (gunicorn)
}

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def read_dotenv(path: Path) -> dict[str, str]:
    """Parse a minimal KEY=VALUE `.env` file; missing file means no values."""
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def coerce(key: str, raw: Any) -> Any:
    """Convert a raw string to the type of the key's default."""
    if not isinstance(raw, str):
        return raw
    default = DEFAULTS.get(key)
    if isinstance(default, bool) or key == "DEMO_LOGIN":
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"{PREFIX}{key} must be a boolean, got {raw!r}")
    if isinstance(default, int):
        return int(raw)
    if isinstance(default, float):
        return float(raw)
    return raw or None if default is None else raw


def load_settings(overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Build the effective settings; later sources win."""
    environ = os.environ if environ is None else environ
    settings = dict(DEFAULTS)
    dotenv = read_dotenv(Path(environ.get(PREFIX + "ENV_FILE", ".env")))
    for source in (dotenv, environ):
        for name, raw in source.items():
            key = name.removeprefix(PREFIX)
            if name.startswith(PREFIX) and key in DEFAULTS:
                settings[key] = coerce(key, raw)
    for key, value in (overrides or {}).items():
        settings[key] = coerce(key, value) if key in DEFAULTS else value
    return finalize(settings)


def transport_mode(value: Any) -> str:
    """REALTIME_FAST_PATHS as auto, on or off (ValueError otherwise)."""
    from .transport import mode
    return mode(value)


def finalize(settings: dict[str, Any]) -> dict[str, Any]:
    """Derive the values that depend on others."""
    embedded = not settings["REDIS_URL"]
    settings["EMBEDDED"] = embedded
    if settings["DEMO_LOGIN"] is None:
        settings["DEMO_LOGIN"] = embedded
    if settings["DEMO_ADMINS"] is None:
        settings["DEMO_ADMINS"] = "admin" if embedded else ""
    if not settings["INSTANCE_ID"]:
        settings["INSTANCE_ID"] = f"{socket.gethostname()}-{settings['PORT']}-{os.getpid()}"
    if settings["CORS_ORIGINS"] is None:
        settings["CORS_ORIGINS"] = "*" if embedded else ""
    if settings["REDIS_WAIT_REPLICAS"] < 0 or not 0 < settings["REDIS_WAIT_TIMEOUT"] < settings["REDIS_SOCKET_TIMEOUT"]:
        raise ValueError("REALTIME_REDIS_WAIT_REPLICAS must be >= 0 and REALTIME_REDIS_WAIT_TIMEOUT "
                         "between 0 and REALTIME_REDIS_SOCKET_TIMEOUT")
    if settings["CONNECT_TIMEOUT"] < 0 or settings["MAX_CONNECTIONS_PER_ADDRESS"] < 0 or settings["MAX_SEND_BUFFER"] <= 0:
        raise ValueError("REALTIME_CONNECT_TIMEOUT and REALTIME_MAX_CONNECTIONS_PER_ADDRESS must be >= 0, "
                         "REALTIME_MAX_SEND_BUFFER > 0")
    settings["FAST_PATHS"] = transport_mode(settings["FAST_PATHS"])
    if not (settings["EVENT_TIMEOUT"] > 0 and settings["READY_TIMEOUT"] > 0):
        raise ValueError("REALTIME_EVENT_TIMEOUT and REALTIME_READY_TIMEOUT must be > 0")
    return settings
