"""The state boundary: one interface that every backend implements."""
from __future__ import annotations

import math
import secrets
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple


class UserCutoff(NamedTuple):
    """A revocation feed event: every token of `user` issued before `before` is denied for `ttl` s."""

    user: str
    before: float
    ttl: float


class Uninvited(NamedTuple):
    """A revocation feed event: `user`'s invitation into `room` was taken back."""

    room: str
    user: str


# A feed event: (jti, ttl) for one revoked token, or one of the two above.
FeedEvent = Any


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
    broadcast_repeat: bool = False  # a repeat whose first try may not have been broadcast
    published: bool = False  # the store made the Announcement's PUBLISH with the append


@dataclass(frozen=True)
class Announcement:
    """A PUBLISH to make with a new message, in the same step: `prefix + message JSON + suffix` on `channel`."""

    channel: str
    prefix: str
    suffix: str


@dataclass(frozen=True)
class Quota:
    """One hit to count against a rate limit: at most `limit` hits per `window` seconds per `key`.

    A hit weighs `weight` (bytes against a byte quota, say); a weight above the limit never fits.
    """

    rule: str
    key: str
    limit: int
    window: float
    weight: int = 1


class OverLimit(Exception):
    """A quota was used up: nothing was counted or written; a hit is allowed in `retry_after` s."""

    def __init__(self, quota: Quota, retry_after: float):
        super().__init__(f"{quota.rule} limit of {quota.limit} per {quota.window:g} s reached")
        self.quota = quota
        self.retry_after = retry_after


Counts = tuple[int, int, int]  # (window index, hits in that window, hits in the one before)


def take_hit(counts: Counts | None, now: float, quota: Quota) -> tuple[Counts, float]:
    """The counts after one more hit at `now` and 0.0, or without it and the seconds until a hit
    fits: a sliding-window counter (as `limits` counts HTTP, on aligned windows; RedisStore runs
    the same in Lua).

    The previous window counts in proportion to how much of it still overlaps the last `window`
    seconds, so a burst at a window's edge cannot pass twice the limit.
    """
    index = math.floor(now / quota.window)  # as Lua computes it
    last, current, previous = counts or (index, 0, 0)
    if last != index:
        current, previous = 0, (current if last == index - 1 else 0)
    elapsed = now / quota.window - index
    weight, room = quota.weight, quota.limit - quota.weight + 1  # room: what the others may weigh, + 1
    if math.floor(previous * (1 - elapsed)) + current + weight <= quota.limit:
        return (index, current + weight, previous), 0.0
    if room <= 0:  # heavier than the limit: it never fits; come back no sooner than two windows
        wait = 2.0
    elif current + weight <= quota.limit:  # the previous window's share must shrink first
        wait = 1 - (room - current) / previous - elapsed
    else:  # this window is full: into the next one, until this one's share is small enough
        wait = 1 - elapsed + max(0.0, 1 - room / current)
    return (index, current, previous), max(0.001, wait * quota.window)  # refused at the edge too


def message_hook(room: str, message_id: int, number: int, endpoint: str, ts: int) -> dict[str, Any]:
    """The queued `message.created` delivery of a message to one endpoint (the body is read later)."""
    return {"id": f"msg-{room}-{message_id}-{number}", "endpoint": endpoint,
            "event": "message.created", "created_at": ts, "ref": {"room": room, "id": message_id}}


class RoomState(NamedTuple):
    """A room's history: oldest retained id, newest id, and the epoch naming this history (None: none yet)."""

    oldest: int
    newest: int
    epoch: str | None


class Joined(NamedTuple):
    """What a connection entering a room needs, read in the step that recorded its presence."""

    state: RoomState
    first: bool                   # the user's first connection in the room (announce it)
    reads: dict[str, int]         # every user's last-read id
    online: list[dict[str, Any]]  # users with a connection in the room, sorted by id
    after: list[dict[str, Any]]   # up to `limit` messages after `since` ([] when no `since`)


def new_epoch() -> str:
    """A fresh epoch: short, random, safe in JSON and URLs without escaping."""
    return secrets.token_urlsafe(8)


class StoreUnavailable(Exception):
    """The backend could not be reached; the operation did not happen (unless `outcome_unknown`)."""

    # True when a write timed out after it may have reached the backend: it may have happened.
    outcome_unknown = False


class NotReplicated(StoreUnavailable):
    """The write is on the master, but not on enough replicas to survive a failover; retry it."""


class Store(ABC):
    """Messages per room, the instance registry and connection tracking."""

    name: str = "base"

    # messages
    @abstractmethod
    def append_message(self, room: str, message: dict[str, Any], idempotency_key: str | None,
                       retention: Retention, webhooks: tuple[str, ...] = (),
                       announce: Announcement | None = None, quota: Quota | None = None) -> Appended:
        """Persist `message` with the room's next id, unless the key was already used.

        A new message also queues one `message.created` delivery per webhook endpoint, in the
        same atomic step (an outbox), so an accepted message never misses its webhook. A backend
        that can also make `announce`'s PUBLISH in that step does, and says so (`published`);
        the others ignore it and the caller broadcasts. `quota` is taken first, in the same
        step (repeats count too): OverLimit, and nothing is written, when it is used up.
        """

    @abstractmethod
    def messages_after(self, room: str, after_id: int, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` messages with id > after_id, oldest first."""

    @abstractmethod
    def messages_before(self, room: str, before_id: int | None, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` messages with id < before_id (None: the newest), oldest first."""

    @abstractmethod
    def room_state(self, room: str) -> RoomState:
        """(oldest retained id, newest id, epoch) of a room, read at once; (0, 0, None) when it has none.

        The epoch is made with the room's first id, in the same atomic step, and made anew
        whenever the id counter starts over (the store lost the room's history), so a client
        holding (epoch, id) can tell a restarted history from the one it knew. Every message the
        store returns carries its room's epoch.
        """

    def room_bounds(self, room: str) -> tuple[int, int]:
        """(oldest retained id, newest id) of a room; (0, 0) when it has none."""
        state = self.room_state(room)
        return (state.oldest, state.newest)

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
    def add_connection(self, instance_id: str, sid: str, user: dict[str, Any], quota: Quota | None = None) -> None:
        """Track one connection on a replica; `quota` (the connect limit) is taken first, in the same
        step: OverLimit, and nothing tracked, when it is used up."""

    @abstractmethod
    def remove_connection(self, instance_id: str, sid: str) -> None:
        """Stop tracking one connection."""

    # read receipts
    @abstractmethod
    def advance_read(self, room: str, user_id: str, message_id: int) -> tuple[bool, int]:
        """Move a user's last-read id forward only; (moved, effective id)."""

    @abstractmethod
    def read_positions(self, room: str) -> dict[str, int]:
        """Every user's last-read id in a room."""

    # presence: who is in a room, cluster-wide, by connection
    @abstractmethod
    def presence_join(self, room: str, instance_id: str, sid: str, user: dict[str, Any]) -> bool:
        """Record a connection in a room; True if it is the user's first there."""

    @abstractmethod
    def presence_leave(self, room: str, instance_id: str, sid: str) -> dict[str, Any] | None:
        """Forget a connection in a room; the user if it was their last there."""

    @abstractmethod
    def online(self, room: str) -> list[dict[str, Any]]:
        """Users with at least one connection in the room, sorted by id."""

    @abstractmethod
    def join_room(self, room: str, instance_id: str, sid: str, user: dict[str, Any], since: int | None,
                  limit: int, quota: Quota | None = None) -> Joined:
        """A connection enters a room: `presence_join`, then the room's state, read positions, who is
        online and (with `since`) up to `limit` messages after it, read at once.

        `quota` (the join limit) is taken first, in the same step: OverLimit, and nothing written,
        when it is used up. One round trip where the backend can (a cluster: the quota and the
        replica's room set are other slots).
        """

    @abstractmethod
    def instance_presence(self, instance_id: str) -> list[tuple[str, str]]:
        """(room, sid) of every presence entry a replica holds."""

    @abstractmethod
    def claim_expired_instances(self) -> list[str]:
        """Remove expired replicas from the registry; each id is returned to one caller only."""

    # conversations (direct messages)
    @abstractmethod
    def touch_conversation(self, user_ids: list[str], room: str, ts: int) -> None:
        """Record that users have a conversation in `room`, most recent at `ts`."""

    @abstractmethod
    def conversations(self, user_id: str, limit: int) -> list[str]:
        """A user's conversation rooms, most recent first."""

    # access control
    @abstractmethod
    def revoke_token(self, jti: str, ttl: float) -> None:
        """Deny a token id for `ttl` seconds (until the token would expire anyway)."""

    @abstractmethod
    def is_revoked(self, jti: str) -> bool:
        """Whether a token id is on the denylist."""

    @abstractmethod
    def revoked_tokens(self) -> dict[str, float]:
        """Every denied token id, with the seconds its entry has left."""

    @abstractmethod
    def revoke_user(self, user_id: str, before: float, ttl: float) -> float:
        """Deny every token of a user issued before `before` for `ttl` seconds; the time now in force."""

    @abstractmethod
    def revoked_before(self, user_id: str) -> float | None:
        """The time before which every token of the user is denied, if any."""

    @abstractmethod
    def revoked_users(self) -> dict[str, tuple[float, float]]:
        """Every user with a revocation time: (that time, the seconds its entry has left)."""

    def revocation_feed(self) -> Iterator[FeedEvent | None] | None:
        """None once subscribed, then one FeedEvent per change; or None: no feed, ask each time."""
        return None

    @abstractmethod
    def invite(self, room: str, user_id: str) -> bool:
        """Let a user into a private room; False if they already were."""

    @abstractmethod
    def uninvite(self, room: str, user_id: str) -> bool:
        """Take a user's invitation back (and tell every replica); False if there was none."""

    @abstractmethod
    def is_invited(self, room: str, user_id: str) -> bool:
        """Whether a user was invited into a private room."""

    # outbound webhooks: a durable queue with claims, and a dead-letter list
    @abstractmethod
    def enqueue_webhook(self, record: dict[str, Any]) -> str:
        """Queue one delivery; returns its queue id."""

    @abstractmethod
    def claim_webhooks(self, consumer: str, count: int, block: float) -> list[tuple[str, dict[str, Any]]]:
        """Take up to `count` new deliveries for `consumer`, waiting up to `block` seconds."""

    @abstractmethod
    def reclaim_webhooks(self, consumer: str, min_idle: float, count: int) -> list[tuple[str, dict[str, Any]]]:
        """Take over deliveries claimed by someone else more than `min_idle` seconds ago."""

    @abstractmethod
    def finish_webhook(self, queue_id: str) -> None:
        """Remove a delivery that was delivered or dead-lettered."""

    @abstractmethod
    def dead_letter(self, record: dict[str, Any]) -> None:
        """Keep a delivery that failed for good, for inspection and replay."""

    @abstractmethod
    def dead_letters(self, limit: int) -> list[dict[str, Any]]:
        """The newest dead-lettered deliveries."""

    @abstractmethod
    def replay_dead_letters(self, limit: int) -> int:
        """Queue dead-lettered deliveries again (same delivery ids); how many were moved."""

    @abstractmethod
    def webhook_backlog(self) -> dict[str, int]:
        """Queue depth: waiting, in flight (claimed), dead."""

    # operators' figures
    @abstractmethod
    def publish_figures(self, instance_id: str, figures: dict[str, Any], ttl: float) -> None:
        """Share one replica's dashboard figures for `ttl` seconds."""

    @abstractmethod
    def all_figures(self) -> dict[str, dict[str, Any]]:
        """Every replica's current figures, by replica id."""

    @abstractmethod
    def used_memory(self) -> int | None:
        """Memory the backend itself uses, in bytes (None when it cannot say)."""

    # rate limits
    @abstractmethod
    def take(self, quota: Quota, *more: Quota) -> None:
        """Count a hit of each quota (its weight), for every replica, all or none: OverLimit when one is used up."""

    # short-lived flags (throttles)
    @abstractmethod
    def claim(self, key: str, ttl: float) -> bool:
        """Set `key` for `ttl` seconds unless it is set; True if this call set it."""

    @abstractmethod
    def release(self, key: str) -> None:
        """Unset a claimed key."""

    @abstractmethod
    def ping(self) -> None:
        """Raise StoreUnavailable when the backend cannot be reached."""
