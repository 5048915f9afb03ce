"""Domain services: rules without Flask, on the store (wired by realtime/wiring.py)."""
from __future__ import annotations

from typing import Any

from ..store import Retention
from .access import AccessPolicy
from .cluster import ClusterService
from .joins import JoinService
from .messages import MessagePolicy, MessageService, Relay
from .presence import PresenceService
from .ratelimit import RateLimiter, parse_rules
from .receipts import ReceiptService
from .revocations import Revocations
from .tokens import TokenWatch
from .typing import TypingService
from .webhooks import EVENTS, WebhookPolicy, WebhookPublisher

__all__ = ["AccessPolicy", "ClusterService", "JoinService", "MessagePolicy", "MessageService", "PresenceService",
           "RateLimiter", "ReceiptService", "Relay", "Revocations", "TokenWatch", "TypingService", "WebhookPublisher",
           "message_policy", "parse_rules", "webhook_policy"]


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
