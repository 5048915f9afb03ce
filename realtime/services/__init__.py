"""Domain services, wired once per app and injected where they are used."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..store import Store
from .cluster import ClusterService
from .messages import MessageService
from .presence import PresenceService
from .receipts import ReceiptService
from .typing import TypingService

__all__ = ["Services", "ClusterService", "MessageService", "PresenceService", "ReceiptService",
           "TypingService"]


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
