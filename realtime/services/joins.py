"""A connection entering a room: presence, the room's state, what was missed, reads and who is online."""
from __future__ import annotations

from typing import Any

from ..store import Quota, RoomState, Store, StoreUnavailable
from .messages import MessageService
from .presence import PresenceService
from .receipts import ReceiptService


class JoinService:
    """Everything a join ack needs, from one store call (one round trip on one Redis)."""

    def __init__(self, store: Store, presence: PresenceService, messages: MessageService,
                 receipts: ReceiptService):
        self.store = store
        self.presence = presence
        self.messages = messages
        self.receipts = receipts

    def join(self, sid: str, user: dict[str, Any], room: str, since: int | None, epoch: str | None,
             quota: Quota | None = None) -> tuple[dict[str, Any], RoomState]:
        """Record the connection in `room` and answer the join ack's fields (and the room's state).

        `quota` (the join limit) is taken in the same store step: OverLimit, and nothing recorded.
        """
        try:
            joined = self.store.join_room(room, self.presence.instance_id, sid, user, since,
                                          self.messages.policy.recovery_max, quota)
        except StoreUnavailable:
            self.presence.track(sid, user, room)  # it may have been written: the disconnect clears it
            raise
        self.presence.track(sid, user, room)
        if joined.first:
            self.presence.announce(room, user, True)
        state = joined.state
        missed, truncated, reset = self.messages.recover(room, since, epoch, state, joined.after)
        unread = self.receipts.unread(room, joined.reads.get(user["id"], 0), (state.oldest, state.newest))
        return {"room": room, "epoch": state.epoch, "reset": reset, "missed": missed, "truncated": truncated,
                "unread": unread, "online": joined.online, "reads": joined.reads}, state
