"""realtime: a horizontally scalable realtime messaging server."""
from __future__ import annotations

import json
import logging
from typing import Any, Mapping

from flask import Flask

from .settings import load_settings

log = logging.getLogger(__name__)


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build a replica: settings, state store, extensions, services, blueprints, namespaces, loops."""
    from . import demomode, guard, jwt_keys, sendbound, transport, web
    from .blueprints import admin, auth, demo, errors, health, metrics as metrics_bp, rooms, stats, uploads
    from .blueprints import apidocs
    from .events.admin import AdminNamespace
    from .events.chat import ChatNamespace
    from .extensions import jwt, limiter, socketio
    from .mq import queue_for
    from .mq.queue import StoreAnnounced
    from .ops import adminui, background, logs
    from .ops.metrics import Metrics, replica_gauges
    from .transport import wirejson, wirepacket
    from .transport.roomindex import LocalManager
    from .services.bodies import schemas
    from .services.uploads import upload_service
    from .store import create_store
    from .wiring import build_services, sequencer_for

    import socketio as socketio_module

    settings = load_settings(config)
    logs.configure(settings)
    log.info(transport.summary())  # which path this replica runs, with the library versions
    demomode.check(settings)
    app = web.RealtimeFlask(__name__, static_folder=settings["STATIC_DIR"], static_url_path="/static")
    app.config.update(REALTIME=settings, MAX_CONTENT_LENGTH=settings["MAX_HTTP_BUFFER_SIZE"],
                      **jwt_keys.config(settings), **limiter_config(settings))

    url = settings["REDIS_URL"]
    metrics = Metrics()
    store = create_store(url, settings["REDIS_SOCKET_TIMEOUT"], settings["REDIS_WAIT_REPLICAS"],
                         settings["REDIS_WAIT_TIMEOUT"], observe=metrics.observe_store,
                         group_commit=settings["GROUP_COMMIT"])
    sequencer = sequencer_for(store)
    app.config["RATELIMIT_STORAGE_OPTIONS"] = limiter_storage_options(settings, store)
    jwt.init_app(app)
    jwt_keys.init_app(jwt)
    limiter.init_app(app)
    web.limiter_release_where_kept(app, limiter)
    origins = cors_origins(settings["CORS_ORIGINS"])
    queue = queue_for(url, settings["MQ_CHANNEL"], settings["MQ_RETRY_MAX"],
                      sequencer=sequencer, metrics=metrics, room_channels=settings["MQ_ROOM_CHANNELS"],
                      subscribe_timeout=settings["REDIS_SOCKET_TIMEOUT"],
                      socket_timeout=settings["REDIS_SOCKET_TIMEOUT"]) if url else None
    # async_handlers=False: a client's events run one after another, in the order sent, in the
    # greenlet that read them (a greenlet per event less; a client's sends keep their order).
    # The transport layer is applied (or not) at worker start; here its state picks the two
    # adapters an app is built with: the manager's room index, the packet class and its JSON module.
    fast = transport.active()
    manager = queue or (LocalManager() if fast else socketio_module.Manager())
    socketio.init_app(app, client_manager=manager, async_mode=settings["ASYNC_MODE"], json=wirejson if fast else json,
                      serializer=wirepacket.WirePacket if fast else "default",
                      cors_allowed_origins=web.socketio_origins(origins),
                      cors_credentials=web.socketio_credentials(origins),
                      max_http_buffer_size=settings["MAX_HTTP_BUFFER_SIZE"], async_handlers=False)
    web.init_app(app, settings, origins)
    logs.init_app(app)

    upload_store = upload_service(settings, store)
    # Messages the store publishes skip the manager's emit, which the Admin UI's development mode
    # wraps to report emits: there they take the stock path.
    relay = StoreAnnounced(queue, "/chat") if queue and not adminui.reports_emits(settings) else None
    services = build_services(settings, store, broadcaster(socketio, None if queue else metrics),
                              schemas(settings["MESSAGE_MAX_CHARS"], upload_store), relay,
                              sequencer=sequencer, metrics=metrics, uploads=upload_store)
    metrics.watch(replica_gauges(services, socketio.server, queue))
    app.extensions["realtime"] = services
    services.revocations.listeners.append(background.RevokedConnections(socketio, services))
    app.extensions["realtime.uploads"] = upload_store
    app.extensions["realtime.redis"] = getattr(store, "client", None)

    errors.register(app)
    for module in (health, metrics_bp, auth, stats, rooms, admin, uploads, demo):
        app.register_blueprint(module.bp)
    app.register_blueprint(apidocs.bp)  # GET /api/openapi.json
    for module in (health, metrics_bp, demo):
        limiter.exempt(module.bp)
    socketio.on_namespace(ChatNamespace("/chat", services))
    socketio.on_namespace(AdminNamespace("/admin", services))
    adminui.install(app, socketio.server, services, settings)
    # After the Admin UI, which registers its own Engine.IO handlers: the guards wrap what is there.
    guard.install(socketio.server, settings, metrics.connection_refused)
    sendbound.install(socketio.server.eio, settings["MAX_SEND_BUFFER"], metrics.connection_refused)
    if settings["BACKGROUND_TASKS"]:
        background.start(socketio, services)
    log.info("replica %s ready (store: %s)", settings["INSTANCE_ID"], store.name)
    return app


def limiter_storage_uri(url: str | None) -> str:
    """The `limits` storage URI for our Redis URL."""
    from .store.rediscluster import is_cluster_url, limiter_storage
    if not url:
        return "memory://"
    if is_cluster_url(url):
        # limits' RedisClusterStorage builds its own RedisCluster from the seed nodes.
        return limiter_storage(url)[0]
    # Elsewhere the store's pool (RATELIMIT_STORAGE_OPTIONS) is the connection; the URI only picks
    # limits' RedisStorage (its own redis+sentinel:// parser reads our URLs differently).
    return "redis://"


def limiter_storage_options(settings: Mapping[str, Any], store: Any) -> dict[str, Any]:
    """RATELIMIT_STORAGE_OPTIONS: the store's pool on one Redis; TLS and timeouts on a cluster."""
    from .store.rediscluster import is_cluster_url, limiter_storage
    url = settings["REDIS_URL"]
    if not url:
        return {}
    if is_cluster_url(url):
        timeout = settings["REDIS_SOCKET_TIMEOUT"]
        return {**limiter_storage(url)[1], "socket_timeout": timeout, "socket_connect_timeout": timeout}
    return {"connection_pool": store.client.connection_pool}


def limiter_config(settings: Mapping[str, Any]) -> dict[str, Any]:
    """flask-limiter settings: HTTP limits per client address on the shared storage."""
    return {"RATELIMIT_STORAGE_URI": limiter_storage_uri(settings["REDIS_URL"]),
            "RATELIMIT_DEFAULT": settings["HTTP_RATE_LIMIT"],
            "RATELIMIT_STRATEGY": "sliding-window-counter",
            "RATELIMIT_HEADERS_ENABLED": True,
            "RATELIMIT_KEY_PREFIX": "rt-http"}


def cors_origins(value: str) -> Any:
    """`*`, a comma-separated list, or empty for same-origin only."""
    if value.strip() == "*":
        return "*"
    origins = [origin.strip() for origin in value.split(",") if origin.strip()]
    return origins or None


def broadcaster(socketio: Any, metrics: Any = None) -> Any:
    """Deliver an event to /chat rooms on every replica (through the message queue).

    With the Redis queue, deliveries are counted where they happen (realtime/mq/queue.py); the
    embedded replica counts them here (`metrics` given).
    """
    def broadcast(event: str, data: dict[str, Any], to: Any, skip_sid: str | None = None) -> None:
        socketio.emit(event, data, to=to, skip_sid=skip_sid, namespace="/chat")
        if metrics is not None and event == "message":
            metrics.message_delivered(data)
    return broadcast
