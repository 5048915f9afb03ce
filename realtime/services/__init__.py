"""Domain services, wired once per app and injected where they are used."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..store import Retention, Store
from .access import AccessPolicy
from .cluster import ClusterService
from .messages import MessagePolicy, MessageService
from .presence import PresenceService
from .ratelimit import RateLimiter, parse_rules
from .receipts import ReceiptService
from ..sequencer import Sequencer
from .tokens import TokenWatch
from .typing import TypingService

__all__ = ["Services", "ClusterService", "MessageService", "PresenceService", "ReceiptService",
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
    sequencer: Sequencer


def message_policy(settings: dict[str, Any]) -> MessagePolicy:
    """Message limits and retention from the settings."""
    rooms = frozenset(r.strip() for r in settings["ROOMS"].split(",") if r.strip())
    return MessagePolicy(
        max_chars=settings["MESSAGE_MAX_CHARS"], page_max=settings["HISTORY_PAGE_MAX"],
        recovery_max=settings["RECOVERY_MAX_MESSAGES"], rooms=rooms,
        retention=Retention(settings["HISTORY_MAX_MESSAGES"], settings["HISTORY_MAX_AGE"],
                            settings["IDEMPOTENCY_TTL"]))


def build_services(settings: dict[str, Any], store: Store, broadcast: Any, rate_storage: Any,
                   schemas: dict[str, Any] | None = None) -> Services:
    """Wire every service once, on one store and one broadcast function."""
    instance = settings["INSTANCE_ID"]
    return Services(
        settings=settings, store=store,
        messages=MessageService(store, broadcast, message_policy(settings), schemas),
        cluster=ClusterService(store, instance, settings["INSTANCE_TTL"]),
        presence=PresenceService(store, broadcast, instance),
        receipts=ReceiptService(store, broadcast),
        typing=TypingService(store, broadcast, settings["TYPING_THROTTLE"], settings["TYPING_EXPIRES"]),
        access=AccessPolicy(store, settings["PRIVATE_ROOM_PREFIX"]),
        limits=RateLimiter(rate_storage, parse_rules(settings["RATE_LIMITS"])),
        tokens=TokenWatch(settings["TOKEN_EXPIRING_NOTICE"], settings["JWT_LEEWAY"]),
        sequencer=Sequencer(store.messages_after))
