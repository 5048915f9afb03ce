"""realtime: a horizontally scalable realtime messaging server."""
from __future__ import annotations

import logging
import secrets
from typing import Any, Mapping

from flask import Flask

from .settings import load_settings

log = logging.getLogger(__name__)
WEAK_SECRET_CHARS = 32


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build a replica: settings, state store, extensions, blueprints, namespaces, loops."""
    from . import background
    from .blueprints import auth, demo, errors, health, rooms, stats
    from .events.chat import ChatNamespace
    from .extensions import jwt, socketio
    from .services import (ClusterService, MessageService, PresenceService, ReceiptService,
                           Services, TypingService)
    from .queue import RedisQueue
    from .store import create_store

    settings = load_settings(config)
    logging.basicConfig(level=settings["LOG_LEVEL"])
    app = Flask(__name__, static_folder=settings["STATIC_DIR"], static_url_path="/static")
    app.config.update(REALTIME=settings, JWT_SECRET_KEY=jwt_secret(settings),
                      JWT_ACCESS_TOKEN_EXPIRES=settings["JWT_ACCESS_TOKEN_EXPIRES"],
                      MAX_CONTENT_LENGTH=settings["MAX_HTTP_BUFFER_SIZE"])

    url = settings["REDIS_URL"]
    store = create_store(url, settings["REDIS_SOCKET_TIMEOUT"])
    jwt.init_app(app)
    queue = RedisQueue(url, settings["MQ_CHANNEL"], settings["MQ_RETRY_MAX"]) if url else None
    socketio.init_app(app, client_manager=queue, async_mode=settings["ASYNC_MODE"],
                      cors_allowed_origins=cors_origins(settings["CORS_ORIGINS"]),
                      max_http_buffer_size=settings["MAX_HTTP_BUFFER_SIZE"])

    broadcast = broadcaster(socketio)
    services = Services(
        settings=settings, store=store,
        messages=MessageService(store, broadcast, message_policy(settings)),
        cluster=ClusterService(store, settings["INSTANCE_ID"], settings["INSTANCE_TTL"]),
        presence=PresenceService(store, broadcast, settings["INSTANCE_ID"]),
        receipts=ReceiptService(store, broadcast),
        typing=TypingService(store, broadcast, settings["TYPING_THROTTLE"], settings["TYPING_EXPIRES"]))
    app.extensions["realtime"] = services
    app.extensions["realtime.redis"] = getattr(store, "client", None)

    errors.register(app)
    for module in (health, auth, stats, rooms, demo):
        app.register_blueprint(module.bp)
    socketio.on_namespace(ChatNamespace("/chat", services))
    if settings["BACKGROUND_TASKS"]:
        background.start(socketio, services)
    log.info("replica %s ready (store: %s)", settings["INSTANCE_ID"], store.name)
    return app


def jwt_secret(settings: Mapping[str, Any]) -> str:
    """The signing secret; a random one is allowed only for the embedded single replica."""
    secret = settings["JWT_SECRET_KEY"]
    if not secret:
        if settings["EMBEDDED"]:
            return secrets.token_urlsafe(32)
        raise RuntimeError("REALTIME_JWT_SECRET_KEY is required when REALTIME_REDIS_URL is set")
    if len(secret) < WEAK_SECRET_CHARS and not settings["DEMO_LOGIN"]:
        raise RuntimeError(f"REALTIME_JWT_SECRET_KEY must be at least {WEAK_SECRET_CHARS} characters")
    return secret


def cors_origins(value: str) -> Any:
    """`*`, a comma-separated list, or empty for same-origin only."""
    if value.strip() == "*":
        return "*"
    origins = [origin.strip() for origin in value.split(",") if origin.strip()]
    return origins or None


def message_policy(settings: Mapping[str, Any]) -> Any:
    """Message limits and retention from the settings."""
    from .services.messages import MessagePolicy
    from .store import Retention
    rooms = frozenset(r.strip() for r in settings["ROOMS"].split(",") if r.strip())
    return MessagePolicy(
        max_chars=settings["MESSAGE_MAX_CHARS"], page_max=settings["HISTORY_PAGE_MAX"],
        recovery_max=settings["RECOVERY_MAX_MESSAGES"], rooms=rooms,
        retention=Retention(settings["HISTORY_MAX_MESSAGES"], settings["HISTORY_MAX_AGE"],
                            settings["IDEMPOTENCY_TTL"]))


def broadcaster(socketio: Any) -> Any:
    """Deliver an event to a /chat room on every replica (through the message queue)."""
    def broadcast(event: str, data: dict[str, Any], to: Any, skip_sid: str | None = None) -> None:
        socketio.emit(event, data, to=to, skip_sid=skip_sid, namespace="/chat")
    return broadcast
