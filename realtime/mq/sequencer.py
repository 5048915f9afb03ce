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

from ..store.deadline import Expired

log = logging.getLogger(__name__)

FetchAfter = Callable[[str, int, int], list[dict[str, Any]]]
Head = Callable[[str], tuple[int, "str | None"]]  # room -> (newest id, epoch)


class Sequencer:
    """Remembers the last message id delivered by this replica in each room."""

    def __init__(self, fetch_after: FetchAfter, head: Head | None = None, max_gap: int = 500):
        self.fetch_after = fetch_after
        self.head = head
        self.max_gap = max_gap
        self.last: dict[str, int] = {}
        self.epochs: dict[str, str | None] = {}  # the epoch of each room's last id (None: unknown)
        self._lock = threading.Lock()
        self._rooms: dict[str, threading.Lock] = {}
        self.unsettled: set[str] = set()  # rooms the last `pending` could not read (their store failed)

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

    def note(self, room: str, newest: int, epoch: str | None = None) -> None:
        """A local client joined `room` when its newest id was `newest`: gaps after it count."""
        with self._lock:
            if room not in self.last:
                self.last[room] = newest
                self.epochs[room] = epoch

    def forget(self, room: str) -> None:
        """This replica stopped delivering `room`: its last id would go stale, so drop it."""
        with self._lock:
            self.last.pop(room, None)
            self.epochs.pop(room, None)

    def admit(self, message: dict[str, Any]) -> list[dict[str, Any]]:
        """What to deliver for `message`, in order: a fetched gap, then it; [] if already delivered."""
        room, message_id, epoch = message["room"], message["id"], message.get("epoch")
        with self._lock:
            last = self.last.get(room)
            if last is not None and self.restarted(room, last, message_id, epoch):
                log.warning("room %s: history recreated (epoch %s, id %d after %d); delivering it from id 1",
                            room, epoch, message_id, last)
                last = 0
            elif last is not None and message_id <= last:
                return []
            if last is None or message_id == last + 1:
                self.advance(room, message_id, epoch)
                return [message]
        # Admitted once the gap is known (the caller holds the room's lock meanwhile): a fetch cut
        # short by the caller's deadline (Expired) admits nothing, and a retry finds the gap again.
        missing = self.gap(room, last, message_id, epoch)
        with self._lock:
            self.advance(room, message_id, epoch)
        return missing + [message]

    def advance(self, room: str, message_id: int, epoch: str | None) -> None:
        """Note `message_id` (of `epoch`) as the room's last delivered id (lock held)."""
        self.last[room] = message_id
        if epoch is not None:
            self.epochs[room] = epoch

    def restarted(self, room: str, last: int, message_id: int, epoch: str | None) -> bool:
        """Whether `message_id` of `epoch` belongs to a newer history than `last` (lock held).

        An epoch other than the known one means a new history; with no known epoch yet (a room
        written before epochs existed), a new epoch is taken over as long as ids go forward.
        """
        if epoch is None:
            return False
        known = self.epochs.get(room)
        return epoch != known and (known is not None or message_id <= last)

    def gap(self, room: str, last: int, upto: int, epoch: str | None = None) -> list[dict[str, Any]]:
        """The stored messages of `epoch` between `last` and `upto` (exclusive); none if the store is down."""
        try:
            missing = self.fetch_after(room, last, min(upto - last - 1, self.max_gap))
        except Expired:  # the caller's deadline, not the store's failure: it retries without one
            raise
        except Exception as exc:  # the live message must still go out
            log.warning("could not fill gap %s..%s in %s: %s", last, upto, room, exc)
            return []
        log.info("filled a gap of %d message(s) in %s", len(missing), room)
        # A fetch that raced another loss of the history reads another epoch: not this gap.
        return [m for m in missing if m["id"] < upto and m.get("epoch", epoch) == epoch]

    def pending(self) -> list[dict[str, Any]]:
        """Messages stored after the last one delivered in each known room (after a resubscribe)."""
        with self._lock:
            known = {room: (last, self.epochs.get(room)) for room, last in self.last.items()}
        found, unsettled = [], set()
        for room, (last, epoch) in known.items():
            try:
                newest, current = self.head(room) if self.head else (last, epoch)
                # Another epoch (or, for a room that had none, a first one while ids went back):
                # the store lost the room's history (Redis restarted without persistence).
                if current != epoch and (epoch is not None or newest < last):
                    log.warning("room %s: history recreated (epoch %s -> %s, id %d -> %d); "
                                "delivering it from id 1", room, epoch, current, last, newest)
                    self.restart(room, last, epoch, 0, current)
                    last = 0
                elif newest < last:
                    # Same history, last writes lost (a failover to a replica that lagged): its
                    # ids up to `newest` are the ones delivered; the next ones reuse lost ids.
                    log.warning("room %s went back from id %d to %d; delivering from there", room, last, newest)
                    self.restart(room, last, epoch, newest, current)
                    continue
                found.extend(self.fetch_after(room, last, self.max_gap))
            except Exception as exc:
                log.warning("could not catch up %s: %s", room, exc)
                unsettled.add(room)
        self.unsettled = unsettled
        return found

    def restart(self, room: str, last: int, epoch: str | None, new_last: int, new_epoch: str | None) -> None:
        """Move a room to (new_last, new_epoch), unless a message moved it since it was read."""
        with self._lock:
            if self.last.get(room) == last and self.epochs.get(room) == epoch:
                self.last[room], self.epochs[room] = new_last, new_epoch
