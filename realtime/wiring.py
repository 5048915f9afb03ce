"""The container of one replica's services, wired once by the app factory and handed to handlers.

It sits beside the factory, not in services/: it joins the domain services with auth, the message
queue's sequencer and the operations side (metrics, dashboard), so services/ itself depends only
on store/, errors, settings and the standard-library-only signing (tests/unit/test_layout.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import auth
from .mq.sequencer import Sequencer
from .ops.dashboard import DashboardFeed
from .services import (AccessPolicy, ClusterService, JoinService, MessageService, PresenceService, RateLimiter,
                       ReceiptService, Relay, Revocations, TokenWatch, TypingService, WebhookPublisher, message_policy,
                       parse_rules, webhook_policy)
from .store import Store, Uninvited


@dataclass
class Services:
    """Everything a handler needs, built by the app factory."""

    settings: dict[str, Any]
    store: Store
    messages: MessageService
    cluster: ClusterService
    presence: PresenceService
    joins: JoinService
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
    metrics: Any = None         # realtime.ops.metrics.Metrics (none in tools that only send)
    uploads: Any = None         # realtime.services.uploads.UploadService
    dashboard: DashboardFeed = field(init=False)  # reads the other services, so built from them
    webhook_worker: Any = None  # started with the background loops when endpoints are configured
    draining: bool = False      # set on SIGTERM (realtime.ops.drain): /readyz answers 503

    def __post_init__(self) -> None:
        """The dashboard feed, on these services."""
        self.dashboard = DashboardFeed(self)


def sequencer_for(store: Store) -> Sequencer:
    """The in-order delivery of /chat messages, reading what it missed from `store`."""
    return Sequencer(store.messages_after, lambda room: store.room_state(room)[1:])


def build_services(settings: dict[str, Any], store: Store, broadcast: Any,
                   schemas: dict[str, Any] | None = None, relay: Relay | None = None, *,
                   sequencer: Sequencer | None = None, metrics: Any = None, uploads: Any = None) -> Services:
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
    messages = MessageService(store, broadcast, message_policy(settings), schemas, webhooks.message_endpoints(), relay)
    presence = PresenceService(store, broadcast, instance)
    receipts = ReceiptService(store, broadcast)
    return Services(
        settings=settings, store=store, webhooks=webhooks, metrics=metrics, uploads=uploads,
        messages=messages, presence=presence, receipts=receipts,
        joins=JoinService(store, presence, messages, receipts),
        cluster=ClusterService(store, instance, settings["INSTANCE_TTL"]),
        typing=TypingService(store, broadcast, settings["TYPING_THROTTLE"], settings["TYPING_EXPIRES"]),
        access=access, revocations=revocations, verifier=verifier,
        limits=RateLimiter(store, parse_rules(settings["RATE_LIMITS"])),
        tokens=TokenWatch(settings["TOKEN_EXPIRING_NOTICE"], settings["JWT_LEEWAY"]),
        admin_tokens=TokenWatch(settings["TOKEN_EXPIRING_NOTICE"], settings["JWT_LEEWAY"]),
        adminui_tokens=TokenWatch(settings["TOKEN_EXPIRING_NOTICE"], settings["JWT_LEEWAY"]),
        sequencer=sequencer or sequencer_for(store))
