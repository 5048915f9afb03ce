"""What the receiver has seen, bounded in memory, and the answer mode; both safe across threads.

The receiver runs as one process (threads or gevent greenlets), so memory is the whole store.
Every read and write goes through one lock; records are never changed after they are added.
"""
from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Any

MODES = ("ok", "fail", "hang")
DEFAULT_HANG_SECONDS = 30.0
MAX_HANG_SECONDS = 120.0


class EventStore:
    """The newest received requests, bounded by count and by bytes, with per-delivery counts."""

    def __init__(self, max_events: int = 1000, max_bytes: int = 64 * 1024 * 1024):
        self.max_events, self.max_bytes = max_events, max_bytes
        self._lock = threading.Lock()
        self._events: deque[tuple[int, dict[str, Any]]] = deque()  # (size, record), oldest first
        self._bytes = 0
        self._next_id = 1
        self._generation = 1  # changes on clear, so a polling page knows to start over
        # Times each delivery id was seen; kept longer than the events so counts survive eviction.
        self._seen: OrderedDict[str, int] = OrderedDict()
        self._max_seen = max(10 * max_events, 1000)

    def add(self, record: dict[str, Any], size: int) -> dict[str, Any]:
        """Store `record` (its `size` in bytes, roughly); returns it with `id` and `attempt` set."""
        with self._lock:
            stored = {"id": self._next_id, **record, "attempt": self._count(record.get("delivery"))}
            self._next_id += 1
            self._events.append((size, stored))
            self._bytes += size
            # Always keep the newest, even if it alone is over the byte budget.
            while len(self._events) > 1 and (len(self._events) > self.max_events
                                             or self._bytes > self.max_bytes):
                self._bytes -= self._events.popleft()[0]
            return stored

    def _count(self, delivery: str | None) -> int:
        """Count one more sighting of `delivery` (lock held); 0 for a request without one."""
        if not delivery:
            return 0
        seen = self._seen.pop(delivery, 0) + 1
        self._seen[delivery] = seen  # most recently seen last
        if len(self._seen) > self._max_seen:
            self._seen.popitem(last=False)
        return seen

    def after(self, after_id: int, limit: int) -> dict[str, Any]:
        """Up to `limit` records with id > `after_id`, oldest first, with their current `seen`."""
        with self._lock:
            newer = [record for _, record in self._events if record["id"] > after_id]
            page = [{**record, "seen": self._seen.get(record.get("delivery"), record["attempt"])}
                    for record in newer[:limit]]
            return {"events": page, "more": len(newer) > limit, "last_id": self._next_id - 1,
                    "generation": self._generation}

    def clear(self) -> int:
        """Forget every record and count; ids keep increasing. Returns how many were dropped."""
        with self._lock:
            dropped = len(self._events)
            self._events.clear()
            self._seen.clear()
            self._bytes = 0
            self._generation += 1
            return dropped


class Mode:
    """How the receiver answers deliveries: ok (200), fail (500) or hang (sleep, then 200)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._mode, self._hang_seconds = "ok", DEFAULT_HANG_SECONDS

    def get(self) -> dict[str, Any]:
        """The current mode and hang duration."""
        with self._lock:
            return {"mode": self._mode, "hang_seconds": self._hang_seconds}

    def set(self, mode: str, hang_seconds: float | None = None) -> dict[str, Any]:
        """Switch mode (validated by the caller); `hang_seconds` None keeps the current one."""
        with self._lock:
            self._mode = mode
            if hang_seconds is not None:
                self._hang_seconds = hang_seconds
            return {"mode": self._mode, "hang_seconds": self._hang_seconds}
