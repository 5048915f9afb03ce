"""Domain services, wired once per app and injected where they are used."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import auth  # the module, not its names: auth imports services.validation
from ..store import Retention, Store, Uninvited
from .access import AccessPolicy
from .cluster import ClusterService
from .messages import MessagePolicy, MessageService, Relay
from .presence import PresenceService
from .ratelimit import RateLimiter, parse_rules
from .receipts import ReceiptService
from .revocations import Revocations
from ..mq.sequencer import Sequencer
from .tokens import TokenWatch
from .typing import TypingService
from .webhooks import EVENTS, WebhookPolicy, WebhookPublisher

__all__ = ["webhook_policy", "Services", "ClusterService", "MessageService", "PresenceService", "ReceiptService",
           "TypingService", "build_services", "message_policy"]


@dataclass
class Services:
    """Everything a handler needs, built by the app factory."""

    settings: dict[str, Any]
    store: Store
    messages: MessageService
    cluster: ClusterService
    presence: PresenceService
    receipts: ReceiptService
    typing: TypingService
    access: AccessPolicy
    limits: RateLimiter
    tokens: TokenWatch
    admin_tokens: TokenWatch
    adminui_tokens: TokenWatch  # the Socket.IO Admin UI's connections (realtime/ops/adminui.py)
    revocations: Revocations
    verifier: auth.Verifier
    sequencer: Sequencer
    webhooks: WebhookPublisher
    metrics: Any = None         # realtime.ops.metrics.Metrics, set by the app factory
    dashboard: Any = None       # realtime.ops.dashboard.DashboardFeed, set by the app factory
    webhook_worker: Any = None  # started with the background loops when endpoints are configured
    uploads: Any = None         # realtime.services.uploads.UploadService, set by the app factory
    draining: bool = False      # set on SIGTERM (realtime.ops.drain): /readyz answers 503


def message_policy(settings: dict[str, Any]) -> MessagePolicy:
    """Message limits and retention from the settings."""
    rooms = frozenset(r.strip() for r in settings["ROOMS"].split(",") if r.strip())
    return MessagePolicy(
        max_chars=settings["MESSAGE_MAX_CHARS"], page_max=settings["HISTORY_PAGE_MAX"],
        recovery_max=settings["RECOVERY_MAX_MESSAGES"], rooms=rooms,
        retention=Retention(settings["HISTORY_MAX_MESSAGES"], settings["HISTORY_MAX_AGE"],
                            settings["IDEMPOTENCY_TTL"]))


def webhook_policy(settings: dict[str, Any]) -> WebhookPolicy:
    """Webhook endpoints and delivery limits; endpoints without a secret refuse to start."""
    endpoints = tuple(u.strip() for u in settings["WEBHOOK_URLS"].split(",") if u.strip())
    events = frozenset(e.strip() for e in settings["WEBHOOK_EVENTS"].split(",") if e.strip())
    if endpoints and not settings["WEBHOOK_SECRET"]:
        raise RuntimeError("REALTIME_WEBHOOK_SECRET is required when REALTIME_WEBHOOK_URLS is set")
    if unknown := events - set(EVENTS):
        raise RuntimeError(f"REALTIME_WEBHOOK_EVENTS has unknown events: {sorted(unknown)}")
    return WebhookPolicy(
        endpoints=endpoints, events=events, secret=settings["WEBHOOK_SECRET"] or "",
        connect_timeout=settings["WEBHOOK_CONNECT_TIMEOUT"], read_timeout=settings["WEBHOOK_READ_TIMEOUT"],
        max_attempts=settings["WEBHOOK_MAX_ATTEMPTS"], backoff_initial=settings["WEBHOOK_BACKOFF_INITIAL"],
        backoff_max=settings["WEBHOOK_BACKOFF_MAX"], breaker_failures=settings["WEBHOOK_BREAKER_FAILURES"],
        breaker_reset=settings["WEBHOOK_BREAKER_RESET"], concurrency=settings["WEBHOOK_CONCURRENCY"],
        reclaim_idle=settings["WEBHOOK_RECLAIM_IDLE"])


def build_services(settings: dict[str, Any], store: Store, broadcast: Any,
                   schemas: dict[str, Any] | None = None, relay: Relay | None = None) -> Services:
    """Wire every service once, on one store and one broadcast function (and the store's relay)."""
    instance = settings["INSTANCE_ID"]
    webhooks = WebhookPublisher(store, webhook_policy(settings))
    cache_size = settings["AUTH_CACHE_SIZE"]
    revocations = Revocations(store, mirror=cache_size > 0)
    access = AccessPolicy(store, settings["PRIVATE_ROOM_PREFIX"], cache_size)
    revocations.resynced.append(access.forget_invitations)  # the store may have restarted empty
    # Invitations taken back reach every replica's cache through the revocation feed; without a
    # live feed (Redis), the cache is not trusted. One replica on memory hears of them directly.
    if store.name != "memory":
        access.trusted = lambda: revocations.synced
    access.uninvited.append(lambda room, user: revocations.uninvited(Uninvited(room, user)))
    revocations.uninvite_listeners.append(access.forget)
    verifier = auth.Verifier(revocations, cache_size, max_lifetime=settings["JWT_MAX_LIFETIME"],
                             audience=settings["JWT_AUDIENCE"])
    return Services(
        settings=settings, store=store, webhooks=webhooks,
        messages=MessageService(store, broadcast, message_policy(settings), schemas,
                                webhooks.message_endpoints(), relay),
        cluster=ClusterService(store, instance, settings["INSTANCE_TTL"]),
        presence=PresenceService(store, broadcast, instance),
        receipts=ReceiptService(store, broadcast),
        typing=TypingService(store, broadcast, settings["TYPING_THROTTLE"], settings["TYPING_EXPIRES"]),
        access=access, revocations=revocations, verifier=verifier,
        limits=RateLimiter(store, parse_rules(settings["RATE_LIMITS"])),
        tokens=TokenWatch(settings["TOKEN_EXPIRING_NOTICE"], settings["JWT_LEEWAY"]),
        admin_tokens=TokenWatch(settings["TOKEN_EXPIRING_NOTICE"], settings["JWT_LEEWAY"]),
        adminui_tokens=TokenWatch(settings["TOKEN_EXPIRING_NOTICE"], settings["JWT_LEEWAY"]),
        sequencer=Sequencer(store.messages_after, lambda room: store.room_state(room)[1:]))
