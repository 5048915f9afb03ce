"""Who is in which room, cluster-wide: `presence` on a user's first join and last leave."""
from __future__ import annotations

import logging
from typing import Any, Callable

from ..store import Store, StoreUnavailable

log = logging.getLogger(__name__)


class PresenceService:
    """Tracks this replica's connections in rooms and announces users coming and going."""

    def __init__(self, store: Store, broadcast: Callable[..., None], instance_id: str):
        self.store = store
        self.broadcast = broadcast
        self.instance_id = instance_id
        # sid -> ((user id, name), rooms): what this replica must restore if its registration is
        # lost. Tuples, as one is kept per connection: a user dict took 184 bytes, and an empty
        # set() of rooms alone 216; a connection is in a few rooms.
        self.local: dict[str, tuple[tuple[str, str], tuple[str, ...]]] = {}

    def announce(self, room: str, user: dict[str, Any], online: bool) -> None:
        """Tell the room that a user came or went."""
        self.broadcast("presence", {"room": room, "user": user, "online": online}, room)

    def joined(self, sid: str, user: dict[str, Any], room: str) -> None:
        """A connection entered a room."""
        self.track(sid, user, room)
        if self.store.presence_join(room, self.instance_id, sid, user):
            self.announce(room, user, True)

    def track(self, sid: str, user: dict[str, Any], room: str) -> None:
        """Note on this replica that a connection is in a room (restored and cleared from here)."""
        known, rooms = self.local.get(sid, ((user["id"], user["name"]), ()))
        if room not in rooms:
            self.local[sid] = (known, (*rooms, room))

    def left(self, sid: str, room: str) -> None:
        """A connection left a room."""
        if sid in self.local:
            user, rooms = self.local[sid]
            self.local[sid] = (user, tuple(r for r in rooms if r != room))
        gone = self.store.presence_leave(room, self.instance_id, sid)
        if gone is not None:
            self.announce(room, gone, False)

    def disconnected(self, sid: str) -> None:
        """A connection closed: it leaves every room it was in."""
        _, rooms = self.local.pop(sid, (None, ()))
        for room in sorted(rooms):
            try:
                gone = self.store.presence_leave(room, self.instance_id, sid)
            except StoreUnavailable as exc:
                log.warning("presence of %s in %s not cleared: %s", sid, room, exc)
                continue
            if gone is not None:
                self.announce(room, gone, False)

    def online(self, room: str) -> list[dict[str, Any]]:
        """Users online in a room."""
        return self.store.online(room)

    def restore(self) -> None:
        """Write this replica's presence again after its registration was lost (and reaped)."""
        for sid, ((user_id, name), rooms) in list(self.local.items()):
            user = {"id": user_id, "name": name}
            for room in rooms:
                if self.store.presence_join(room, self.instance_id, sid, user):
                    self.announce(room, user, True)

    def reap(self, instance_id: str) -> int:
        """Clear the presence of a replica that died; returns how many users went offline."""
        went = 0
        for room, sid in self.store.instance_presence(instance_id):
            gone = self.store.presence_leave(room, instance_id, sid)
            if gone is not None:
                self.announce(room, gone, False)
                # Whoever was typing there is not any more (the dead replica can not say so).
                self.broadcast("typing", {"room": room, "user": gone, "typing": False,
                                          "expires_in": 0}, room)
                went += 1
        self.store.remove_instance(instance_id)
        return went
