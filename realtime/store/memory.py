"""In-memory backend for the embedded single replica and for tests."""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any, Callable

from .base import Appended, Retention, Store


class MemoryStore(Store):
    """Everything in process memory; one replica only."""

    name = "memory"

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._lock = threading.Lock()
        self._rooms: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._last_id: dict[str, int] = defaultdict(int)
        self._keys: dict[tuple[str, str], tuple[int, float]] = {}
        self._instances: dict[str, tuple[dict[str, Any], float]] = {}
        self._connections: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)

    def append_message(self, room, message, idempotency_key, retention: Retention) -> Appended:
        """Persist `message` with the room's next id, unless the key was already used."""
        now = self._clock()
        with self._lock:
            known = self._keys.get((room, idempotency_key)) if idempotency_key else None
            if known and known[1] > now:
                original = self._find(room, known[0])
                if original is not None:
                    return Appended(original, duplicate=True)
            self._last_id[room] += 1
            stored = {**message, "id": self._last_id[room], "room": room}
            self._rooms[room].append(stored)
            if idempotency_key:
                self._keys[(room, idempotency_key)] = (stored["id"], now + retention.idempotency_ttl)
            self._trim(room, retention, now)
            return Appended(dict(stored), duplicate=False)

    def _find(self, room: str, message_id: int) -> dict[str, Any] | None:
        """The retained message with this id, if any."""
        for message in self._rooms.get(room, ()):
            if message["id"] == message_id:
                return dict(message)
        return None

    def _trim(self, room: str, retention: Retention, now: float) -> None:
        """Drop messages beyond the count and age limits."""
        messages = self._rooms[room]
        cutoff_ms = (now - retention.max_age) * 1000
        drop = max(0, len(messages) - retention.max_messages)
        while drop < len(messages) and messages[drop]["ts"] < cutoff_ms:
            drop += 1
        del messages[:drop]

    def messages_after(self, room, after_id, limit):
        """Up to `limit` messages with id > after_id, oldest first."""
        with self._lock:
            return [dict(m) for m in self._rooms.get(room, ()) if m["id"] > after_id][:limit]

    def messages_before(self, room, before_id, limit):
        """Up to `limit` messages with id < before_id (None: the newest), oldest first."""
        with self._lock:
            older = [m for m in self._rooms.get(room, ()) if before_id is None or m["id"] < before_id]
            return [dict(m) for m in older[-limit:]] if limit > 0 else []

    def room_bounds(self, room):
        """(oldest retained id, newest id) of a room; (0, 0) when it has none."""
        with self._lock:
            messages = self._rooms.get(room)
            if not messages:
                return (0, self._last_id.get(room, 0))
            return (messages[0]["id"], self._last_id[room])

    def register_instance(self, info, ttl):
        """Announce a replica (or refresh its heartbeat) for `ttl` seconds; False if it was unknown."""
        now = self._clock()
        with self._lock:
            known = self._instances.get(info["id"])
            self._instances[info["id"]] = (dict(info), now + ttl)
            return known is not None and known[1] > now

    def replace_connections(self, instance_id, connections):
        """Set a replica's tracked connections to exactly `connections`."""
        with self._lock:
            self._connections[instance_id] = {sid: dict(user) for sid, user in connections.items()}

    def remove_instance(self, instance_id):
        """Forget a replica and its connections at once."""
        with self._lock:
            self._forget(instance_id)

    def _forget(self, instance_id: str) -> None:
        """Drop a replica's record; the caller holds the lock."""
        self._instances.pop(instance_id, None)
        self._connections.pop(instance_id, None)

    def list_instances(self):
        """Live replicas with their connection counts, sorted by id."""
        now = self._clock()
        with self._lock:
            for instance_id, (_, expires) in list(self._instances.items()):
                if expires <= now:
                    self._forget(instance_id)
            return [
                {**info, "clients": len(self._connections.get(instance_id, {}))}
                for instance_id, (info, _) in sorted(self._instances.items())
            ]

    def add_connection(self, instance_id, sid, user):
        """Track one connection on a replica."""
        with self._lock:
            self._connections[instance_id][sid] = dict(user)

    def remove_connection(self, instance_id, sid):
        """Stop tracking one connection."""
        with self._lock:
            self._connections.get(instance_id, {}).pop(sid, None)

    def ping(self):
        """Memory is always reachable."""
