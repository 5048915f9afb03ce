"""Per-replica, per-room ordering of `message` deliveries: no gaps, no repeats.

Ids are contiguous per room and assigned atomically with the write, so a replica that receives
message N after N-2 knows N-1 exists and fetches it from the store first. A message it already
delivered (because it filled a gap with it) is not delivered again. This covers pub/sub's blind
spots: a listener that was re-subscribing, and publishes that race between replicas.
"""
from __future__ import annotations

import logging
import threading
from typing import Any, Callable

from .store.deadline import Expired

log = logging.getLogger(__name__)

FetchAfter = Callable[[str, int, int], list[dict[str, Any]]]


class Sequencer:
    """Remembers the last message id delivered by this replica in each room."""

    def __init__(self, fetch_after: FetchAfter, newest: Callable[[str], int] | None = None,
                 max_gap: int = 500):
        self.fetch_after = fetch_after
        self.newest = newest
        self.max_gap = max_gap
        self.last: dict[str, int] = {}
        self._lock = threading.Lock()
        self._rooms: dict[str, threading.Lock] = {}

    def ordered(self, room: str) -> threading.Lock:
        """The lock a caller holds from `admit` until it has handed the batch out.

        Filling a gap waits on the store; without this, a later message of the room could be
        admitted and delivered by another greenlet in the meantime, ahead of the gap.
        """
        lock = self._rooms.get(room)  # the common case, per message: no new lock, no contention
        if lock is None:
            with self._lock:
                lock = self._rooms.setdefault(room, threading.Lock())
        return lock

    def note(self, room: str, newest: int) -> None:
        """A local client joined `room` when its newest id was `newest`: gaps after it count."""
        with self._lock:
            self.last.setdefault(room, newest)

    def forget(self, room: str) -> None:
        """This replica stopped delivering `room`: its last id would go stale, so drop it."""
        with self._lock:
            self.last.pop(room, None)

    def admit(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """What to deliver for `message`, in order: a fetched gap, then it; [] if already delivered."""
        room, message_id = message["room"], message["id"]
        with self._lock:
            last = self.last.get(room)
            if last is not None and message_id <= last:
                return []
            if last is None or message_id == last + 1:
                self.last[room] = message_id
                return [message]
        # Admitted once the gap is known (the caller holds the room's lock meanwhile): a fetch cut
        # short by the caller's deadline (Expired) admits nothing, and a retry finds the gap again.
        missing = self.gap(room, last, message_id)
        with self._lock:
            self.last[room] = message_id
        return missing + [message]

    def gap(self, room: str, last: int, upto: int) -> list[dict[str, Any]]:
        """The stored messages between `last` and `upto` (exclusive); none if the store is down."""
        try:
            missing = self.fetch_after(room, last, min(upto - last - 1, self.max_gap))
        except Expired:  # the caller's deadline, not the store's failure: it retries without one
            raise
        except Exception as exc:  # the live message must still go out
            log.warning("could not fill gap %s..%s in %s: %s", last, upto, room, exc)
            return []
        log.info("filled a gap of %d message(s) in %s", len(missing), room)
        return [m for m in missing if m["id"] < upto]

    def pending(self) -> list[dict[str, Any]]:
        """Messages stored after the last one delivered in each known room (after a resubscribe)."""
        with self._lock:
            known = dict(self.last)
        found = []
        for room, last in known.items():
            try:
                newest = self.newest(room) if self.newest else last
                if newest < last:
                    # The store lost data (Redis restarted without persistence): ids start over.
                    log.warning("room %s went back from id %d to %d; delivering from there", room, last, newest)
                    with self._lock:
                        self.last[room] = newest
                    continue
                found.extend(self.fetch_after(room, last, self.max_gap))
            except Exception as exc:
                log.warning("could not catch up %s: %s", room, exc)
        return found
