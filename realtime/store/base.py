"""The state boundary: one interface that every backend implements."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Retention:
    """How much history a room keeps and how long idempotency keys live."""

    max_messages: int = 10_000
    max_age: float = 7 * 24 * 3600
    idempotency_ttl: float = 24 * 3600


@dataclass(frozen=True)
class Appended:
    """The outcome of an append: the stored message and whether it was already there."""

    message: dict[str, Any]
    duplicate: bool


class StoreUnavailable(Exception):
    """The backend could not be reached; the operation did not happen."""


class Store(ABC):
    """Messages per room, the instance registry and connection tracking."""

    name: str = "base"

    # messages
    @abstractmethod
    def append_message(self, room: str, message: dict[str, Any], idempotency_key: str | None,
                       retention: Retention) -> Appended:
        """Persist `message` with the room's next id, unless the key was already used."""

    @abstractmethod
    def messages_after(self, room: str, after_id: int, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` messages with id > after_id, oldest first."""

    @abstractmethod
    def messages_before(self, room: str, before_id: int | None, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` messages with id < before_id (None: the newest), oldest first."""

    @abstractmethod
    def room_bounds(self, room: str) -> tuple[int, int]:
        """(oldest retained id, newest id) of a room; (0, 0) when it has none."""

    # instances and connections
    @abstractmethod
    def register_instance(self, info: dict[str, Any], ttl: float) -> bool:
        """Announce a replica (or refresh its heartbeat) for `ttl` seconds; False if it was unknown."""

    @abstractmethod
    def replace_connections(self, instance_id: str, connections: dict[str, dict[str, Any]]) -> None:
        """Set a replica's tracked connections to exactly `connections` (after a lost registration)."""

    @abstractmethod
    def remove_instance(self, instance_id: str) -> None:
        """Forget a replica and its connections at once."""

    @abstractmethod
    def list_instances(self) -> list[dict[str, Any]]:
        """Live replicas with their connection counts, sorted by id."""

    @abstractmethod
    def add_connection(self, instance_id: str, sid: str, user: dict[str, Any]) -> None:
        """Track one connection on a replica."""

    @abstractmethod
    def remove_connection(self, instance_id: str, sid: str) -> None:
        """Stop tracking one connection."""

    @abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailable when the backend cannot be reached."""
