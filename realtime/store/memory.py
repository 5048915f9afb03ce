"""In-memory backend for the embedded single replica and for tests."""
from __future__ import annotations

import threading
import time
from collections import defaultdict
from typing import Any, Callable

from .base import (Appended, Counts, Joined, OverLimit, Quota, Retention, RoomState, Store, message_hook,
                   new_epoch, take_hit)


class MemoryStore(Store):
    """Everything in process memory; one replica only."""

    name = "memory"

    def __init__(self, clock: Callable[[], float] = time.time):
        self._clock = clock
        self._lock = threading.Lock()
        self._rooms: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self._last_id: dict[str, int] = defaultdict(int)
        self._epochs: dict[str, str] = {}  # made with a room's first id; a new process, a new epoch
        self._keys: dict[tuple[str, str], tuple[int, float]] = {}
        self._instances: dict[str, tuple[dict[str, Any], float]] = {}
        self._connections: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
        self._reads: dict[str, dict[str, int]] = defaultdict(dict)
        self._presence: dict[str, dict[tuple[str, str], dict[str, Any]]] = defaultdict(dict)
        # room -> user id -> [connections there, user]: `online` costs the room's users, not its connections
        self._online: dict[str, dict[str, list[Any]]] = defaultdict(dict)
        self._conversations: dict[str, dict[str, int]] = defaultdict(dict)
        self._claims: dict[str, float] = {}
        self._limits: dict[tuple[str, str], tuple[Counts, float]] = {}  # (rule, key) -> (counts, expires at)
        self._limits_cap = 10_000
        self._invited: dict[str, set[str]] = defaultdict(set)
        self._cutoffs: dict[str, tuple[float, float]] = {}  # user -> (revoked before, entry expires at)
        self._hooks: dict[str, dict[str, Any]] = {}          # queue id -> record
        self._hook_claims: dict[str, tuple[str, float]] = {}  # queue id -> (consumer, claimed at)
        self._hook_seq = 0
        self._dead: list[dict[str, Any]] = []
        self._figures: dict[str, tuple[dict[str, Any], float]] = {}

    def append_message(self, room, message, idempotency_key, retention: Retention,
                       webhooks=(), announce=None, quota=None) -> Appended:
        """Persist `message` with the room's next id, unless the key was already used."""
        now = self._clock()
        with self._lock:
            if quota is not None:
                self._take(quota, now)
            known = self._keys.get((room, idempotency_key)) if idempotency_key else None
            if known and known[1] > now:
                original = self._find(room, known[0])
                if original is not None:
                    return Appended(original, duplicate=True)
            self._last_id[room] += 1
            if self._last_id[room] == 1:
                self._epochs[room] = new_epoch()
            stored = {**message, "id": self._last_id[room], "room": room, "epoch": self._epochs[room]}
            self._rooms[room].append(stored)
            if idempotency_key:
                self._keys[(room, idempotency_key)] = (stored["id"], now + retention.idempotency_ttl)
            self._trim(room, retention, now)
        for number, endpoint in enumerate(webhooks):
            self.enqueue_webhook(message_hook(room, stored["id"], number, endpoint, stored["ts"]))
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

    def room_state(self, room):
        """(oldest retained id, newest id, epoch) of a room; (0, 0, None) when it has none."""
        with self._lock:
            return self._room_state(room)

    def _room_state(self, room: str) -> RoomState:
        """`room_state` under the lock."""
        messages = self._rooms.get(room)
        oldest = messages[0]["id"] if messages else 0
        return RoomState(oldest, self._last_id.get(room, 0), self._epochs.get(room))

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
            return [
                {**info, "clients": len(self._connections.get(instance_id, {}))}
                for instance_id, (info, expires) in sorted(self._instances.items()) if expires > now
            ]

    def claim_expired_instances(self):
        """Remove expired replicas from the registry; each id is returned to one caller only."""
        now = self._clock()
        with self._lock:
            expired = [i for i, (_, expires) in self._instances.items() if expires <= now]
            for instance_id in expired:
                self._forget(instance_id)
            return sorted(expired)

    def add_connection(self, instance_id, sid, user, quota=None):
        """Track one connection on a replica (`quota` taken first: OverLimit, nothing tracked)."""
        with self._lock:
            if quota is not None:
                self._take(quota, self._clock())
            self._connections[instance_id][sid] = dict(user)

    def remove_connection(self, instance_id, sid):
        """Stop tracking one connection."""
        with self._lock:
            self._connections.get(instance_id, {}).pop(sid, None)

    def advance_read(self, room, user_id, message_id):
        """Move a user's last-read id forward only; (moved, effective id)."""
        with self._lock:
            if message_id > self._last_id.get(room, 0):
                raise ValueError(f"message {message_id} does not exist in {room}")
            current = self._reads[room].get(user_id, 0)
            if message_id <= current:
                return False, current
            self._reads[room][user_id] = message_id
            return True, message_id

    def read_positions(self, room):
        """Every user's last-read id in a room."""
        with self._lock:
            return dict(self._reads.get(room, {}))

    def presence_join(self, room, instance_id, sid, user):
        """Record a connection in a room; True if it is the user's first there."""
        with self._lock:
            return self._presence_join(room, instance_id, sid, user)

    def _presence_join(self, room: str, instance_id: str, sid: str, user: dict[str, Any]) -> bool:
        """`presence_join` under the lock."""
        members = self._presence[room]
        if (instance_id, sid) in members:
            return False
        members[(instance_id, sid)] = dict(user)
        entry = self._online[room].setdefault(user["id"], [0, None])
        entry[0] += 1
        entry[1] = dict(user)  # the latest connection's name, as the Redis stores keep it
        return entry[0] == 1

    def presence_leave(self, room, instance_id, sid):
        """Forget a connection in a room; the user if it was their last there."""
        with self._lock:
            user = self._presence.get(room, {}).pop((instance_id, sid), None)
            if user is None:
                return None
            users = self._online[room]
            entry = users.get(user["id"])
            if entry is not None and entry[0] > 1:
                entry[0] -= 1
                return None
            users.pop(user["id"], None)
            if not users:
                del self._online[room]
            return user

    def online(self, room):
        """Users with at least one connection in the room, sorted by id."""
        with self._lock:
            return self._online_users(room)

    def _online_users(self, room: str) -> list[dict[str, Any]]:
        """`online` under the lock."""
        users = self._online.get(room, {})
        return [dict(users[k][1]) for k in sorted(users)]

    def join_room(self, room, instance_id, sid, user, since, limit, quota=None):
        """A connection enters a room: presence, state, reads, who is online, what came after `since`."""
        with self._lock:
            if quota is not None:
                self._take(quota, self._clock())
            first = self._presence_join(room, instance_id, sid, user)
            after = ([dict(m) for m in self._rooms.get(room, ()) if m["id"] > since][:limit]
                     if since is not None and limit > 0 else [])
            return Joined(self._room_state(room), first, dict(self._reads.get(room, {})),
                          self._online_users(room), after)

    def instance_presence(self, instance_id):
        """(room, sid) of every presence entry a replica holds."""
        with self._lock:
            return sorted((room, sid) for room, members in self._presence.items()
                          for (owner, sid) in members if owner == instance_id)

    def touch_conversation(self, user_ids, room, ts):
        """Record that users have a conversation in `room`, most recent at `ts`."""
        with self._lock:
            for user_id in user_ids:
                self._conversations[user_id][room] = ts

    def conversations(self, user_id, limit):
        """A user's conversation rooms, most recent first."""
        with self._lock:
            rooms = self._conversations.get(user_id, {})
            return sorted(rooms, key=lambda r: (-rooms[r], r))[:limit]

    def revoke_token(self, jti, ttl):
        """Deny a token id for `ttl` seconds."""
        with self._lock:
            self._claims[f"revoked:{jti}"] = self._clock() + ttl

    def is_revoked(self, jti):
        """Whether a token id is on the denylist."""
        with self._lock:
            return self._claims.get(f"revoked:{jti}", 0) > self._clock()

    def revoked_tokens(self):
        """Every denied token id, with the seconds its entry has left."""
        with self._lock:
            now = self._clock()
            return {key[len("revoked:"):]: until - now for key, until in self._claims.items()
                    if key.startswith("revoked:") and until > now}

    def revoke_user(self, user_id, before, ttl):
        """Deny every token of a user issued before `before` for `ttl` seconds; the time now in force."""
        with self._lock:
            now = self._clock()
            old_before, old_until = self._cutoffs.get(user_id, (0.0, 0.0))
            if old_until <= now:
                old_before = 0.0
            # A later time and a longer life win: a second revocation never lifts the first.
            entry = (max(before, old_before), max(now + ttl, old_until))
            self._cutoffs[user_id] = entry
            return entry[0]

    def revoked_before(self, user_id):
        """The time before which every token of the user is denied, if any."""
        with self._lock:
            before, until = self._cutoffs.get(user_id, (0.0, 0.0))
            return before if until > self._clock() else None

    def revoked_users(self):
        """Every user with a revocation time: (that time, the seconds its entry has left)."""
        with self._lock:
            now = self._clock()
            return {user: (before, until - now) for user, (before, until) in self._cutoffs.items()
                    if until > now}

    def invite(self, room, user_id):
        """Let a user into a private room; False if they already were."""
        with self._lock:
            known = user_id in self._invited[room]
            self._invited[room].add(user_id)
            return not known

    def is_invited(self, room, user_id):
        """Whether a user was invited into a private room."""
        with self._lock:
            return user_id in self._invited.get(room, ())

    def uninvite(self, room, user_id):
        """Take a user's invitation back; False if there was none (one replica: nobody to tell)."""
        with self._lock:
            invited = self._invited.get(room)
            if not invited or user_id not in invited:
                return False
            invited.discard(user_id)
            return True

    def enqueue_webhook(self, record):
        """Queue one delivery; returns its queue id."""
        with self._lock:
            self._hook_seq += 1
            queue_id = f"{self._hook_seq}-0"
            self._hooks[queue_id] = dict(record)
            return queue_id

    def claim_webhooks(self, consumer, count, block):
        """Take up to `count` new deliveries for `consumer`, waiting up to `block` seconds."""
        deadline = time.monotonic() + block
        while True:
            now = self._clock()
            with self._lock:
                free = [q for q in self._hooks if q not in self._hook_claims][:count]
                for queue_id in free:
                    self._hook_claims[queue_id] = (consumer, now)
                if free or time.monotonic() >= deadline:
                    return [(q, dict(self._hooks[q])) for q in free]
            time.sleep(min(0.05, block))  # cooperative under gevent

    def reclaim_webhooks(self, consumer, min_idle, count):
        """Take over deliveries claimed by someone else more than `min_idle` seconds ago."""
        now = self._clock()
        with self._lock:
            stale = [q for q, (_, at) in self._hook_claims.items() if now - at >= min_idle][:count]
            for queue_id in stale:
                self._hook_claims[queue_id] = (consumer, now)
            return [(q, dict(self._hooks[q])) for q in stale]

    def finish_webhook(self, queue_id):
        """Remove a delivery that was delivered or dead-lettered."""
        with self._lock:
            self._hooks.pop(queue_id, None)
            self._hook_claims.pop(queue_id, None)

    def dead_letter(self, record):
        """Keep a delivery that failed for good."""
        with self._lock:
            self._dead.insert(0, dict(record))
            del self._dead[10_000:]

    def dead_letters(self, limit):
        """The newest dead-lettered deliveries."""
        with self._lock:
            return [dict(r) for r in self._dead[:limit]]

    def replay_dead_letters(self, limit):
        """Queue dead-lettered deliveries again, oldest first."""
        with self._lock:
            moving = self._dead[-limit:][::-1] if limit > 0 else []
            del self._dead[len(self._dead) - len(moving):]
        for record in moving:
            self.enqueue_webhook(record)
        return len(moving)

    def webhook_backlog(self):
        """Queue depth: waiting, in flight (claimed), dead."""
        with self._lock:
            claimed = len(self._hook_claims)
            return {"waiting": len(self._hooks) - claimed, "in_flight": claimed, "dead": len(self._dead)}

    def publish_figures(self, instance_id, figures, ttl):
        """Share one replica's dashboard figures for `ttl` seconds."""
        with self._lock:
            self._figures[instance_id] = (dict(figures), self._clock() + ttl)

    def all_figures(self):
        """Every replica's current figures, by replica id."""
        now = self._clock()
        with self._lock:
            return {i: dict(f) for i, (f, expires) in self._figures.items() if expires > now}

    def used_memory(self):
        """Memory is the process's own: see the replica's RSS."""
        return None

    def take(self, quota, *more):
        """Count a hit of each quota, all or none; OverLimit (nothing counted) when one is used up."""
        with self._lock:
            self._take(quota, self._clock(), *more)

    def _take(self, quota: Quota, now: float, *more: Quota) -> None:
        """`take` under the lock: weigh every quota first, then count them all."""
        weighed, refusals = [], []
        for each in (quota, *more):
            entry = self._limits.get((each.rule, each.key))
            counts, wait = take_hit(entry[0] if entry and entry[1] > now else None, now, each)
            weighed.append((each, counts))
            if wait:
                refusals.append((wait, each))
        if refusals:
            wait, refused = max(refusals, key=lambda pair: pair[0])  # when every one of them fits
            raise OverLimit(refused, wait)
        if len(self._limits) > self._limits_cap:  # keep the table bounded: drop what has expired
            self._limits = {k: v for k, v in self._limits.items() if v[1] > now}
            self._limits_cap = max(10_000, 2 * len(self._limits))  # amortized: not on every hit
        for each, counts in weighed:
            self._limits[(each.rule, each.key)] = (counts, now + 2 * each.window)

    def claim(self, key, ttl):
        """Set `key` for `ttl` seconds unless it is set; True if this call set it."""
        now = self._clock()
        with self._lock:
            if self._claims.get(key, 0) > now:
                return False
            if len(self._claims) > 10_000:  # keep the table bounded: drop what has expired
                self._claims = {k: v for k, v in self._claims.items() if v > now}
            self._claims[key] = now + ttl
            return True

    def release(self, key):
        """Unset a claimed key."""
        with self._lock:
            self._claims.pop(key, None)

    def ping(self):
        """Memory is always reachable."""
