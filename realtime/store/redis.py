"""Redis backend: room streams, idempotency keys, the instance registry."""
from __future__ import annotations

import functools
import json
import time
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

import redis
from redis import exceptions
from redis.backoff import ExponentialBackoff
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool

from . import deadline
from .groupcommit import GroupCommit
from .base import (Announcement, Appended, Joined, NotReplicated, OverLimit, Quota, Retention, RoomState, Store,
                   StoreUnavailable, Uninvited, UserCutoff, new_epoch)

# store.base.take_hit in Lua, on a hash {i = window index, c = hits in it, p = hits in the one
# before}: `weigh` says nil (and the new counts) when a hit of `weight` fits, else the
# milliseconds until one does; `take` weighs and counts. Redis's clock, so replicas' clocks do
# not matter.
TAKE_FUNCTION = """
local function redis_now()
  local clock = redis.call('TIME')
  return tonumber(clock[1]) + tonumber(clock[2]) / 1000000
end
local function weigh(key, limit, window, now, weight)
  local index = math.floor(now / window)
  local state = redis.call('HMGET', key, 'i', 'c', 'p')
  local last, current, previous = tonumber(state[1]) or index, tonumber(state[2]) or 0, tonumber(state[3]) or 0
  if last ~= index then
    if last == index - 1 then previous = current else previous = 0 end
    current = 0
  end
  local elapsed = now / window - index
  local room = limit - weight + 1
  if math.floor(previous * (1 - elapsed)) + current + weight <= limit then
    return nil, {index, current + weight, previous}
  end
  local wait
  if room <= 0 then wait = 2
  elseif current + weight <= limit then wait = 1 - (room - current) / previous - elapsed
  else wait = 1 - elapsed + math.max(0, 1 - room / current) end
  return math.max(1, math.ceil(wait * window * 1000))
end
local function count(key, window, counts)
  redis.call('HSET', key, 'i', counts[1], 'c', counts[2], 'p', counts[3])
  redis.call('PEXPIRE', key, math.ceil(window * 2000))
end
local function take(key, limit, window, now, weight)
  local wait, counts = weigh(key, limit, window, now, weight or 1)
  if wait then return wait end
  count(key, window, counts)
  return nil
end
"""

# Every quota (KEYS[n], ARGV limit, window, weight per key) or none: {0} when counted, else
# {ms until all fit, index of the quota that waits longest}.
TAKE_SCRIPT = TAKE_FUNCTION + """
local now, weighed, longest, refused = redis_now(), {}, 0, 0
for n, key in ipairs(KEYS) do
  local window = tonumber(ARGV[3 * n - 1])
  local wait, counts = weigh(key, tonumber(ARGV[3 * n - 2]), window, now, tonumber(ARGV[3 * n]))
  if wait then
    if wait > longest then longest, refused = wait, n end
  else
    weighed[n] = {key, window, counts}
  end
end
if refused > 0 then return {longest, refused} end
for _, each in ipairs(weighed) do count(each[1], each[2], each[3]) end
return {0}
"""

# Atomic append: reuse an idempotency key's message, else take the next id, XADD, trim by count
# and by age, and (when asked) PUBLISH the message to the other replicas: stored and announced
# in one round trip, and never one without the other. The published message is the stored body
# with "id" and "room" spliced in as strings (no cjson: it would re-encode the body differently).
# A quota (KEYS[6], ARGV[14..15]) is taken first: a send over its rate limit costs no extra
# round trip and writes nothing ({-1, ms to wait}). The room's keys share its hash tag; the
# webhook outbox and the quota are the keys outside it.
# The epoch (KEYS[5]) names the history the ids count in: it is set (to ARGV[13], a fresh random
# value) whenever INCR starts the counter again at 1, or the epoch is missing, so a history
# Redis lost (restart without persistence, lagging replica promoted, FLUSHDB, keys expired or
# evicted) never comes back under the epoch clients knew. Returns {status, id, body, epoch}.
APPEND_SCRIPT = TAKE_FUNCTION + """
local stream, seq, idem, epoch_key = KEYS[1], KEYS[2], KEYS[3], KEYS[5]
local body, now, max_len, min_ts, idem_ttl, has_key = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
if KEYS[6] then
  local wait = take(KEYS[6], tonumber(ARGV[14]), tonumber(ARGV[15]), redis_now())
  if wait then return {-1, wait, '', ''} end
end
if has_key == '1' then
  local known = redis.call('GET', idem)
  if known then
    local found = redis.call('XRANGE', stream, known, known)
    if #found > 0 then
      -- A write, so that a WAIT after this repeat covers the original append (the replication
      -- stream is in order): the retry of a send whose replication was not confirmed.
      redis.call('PEXPIRE', idem, idem_ttl)
      return {1, tonumber(known), found[1][2][4], redis.call('GET', epoch_key) or ''}
    end
  end
end
local id = redis.call('INCR', seq)
local epoch = redis.call('GET', epoch_key)
if id == 1 or not epoch then
  epoch = ARGV[13]
  redis.call('SET', epoch_key, epoch)
end
redis.call('XADD', stream, 'MAXLEN', '=', max_len, id .. '-0', 'ts', now, 'm', body)
if has_key == '1' then redis.call('SET', idem, id, 'PX', idem_ttl) end
for number, endpoint in ipairs(cjson.decode(ARGV[7])) do
  local hook = {id = 'msg-' .. ARGV[8] .. '-' .. id .. '-' .. (number - 1), endpoint = endpoint,
                event = 'message.created', created_at = tonumber(now), ref = {room = ARGV[8], id = id}}
  redis.call('XADD', KEYS[4], '*', 'd', cjson.encode(hook))
end
-- Age trimming: look at the oldest entry first; scan further only when it has expired.
local keep_from = nil
local first = redis.call('XRANGE', stream, '-', '+', 'COUNT', 1)
if #first > 0 and tonumber(first[1][2][2]) < min_ts then
  for _, entry in ipairs(redis.call('XRANGE', stream, '-', '+', 'COUNT', 100)) do
    if tonumber(entry[2][2]) < min_ts then keep_from = entry[1] else break end
  end
end
if keep_from then
  local last = tonumber(string.match(keep_from, '^(%d+)'))
  redis.call('XTRIM', stream, 'MINID', '=', (last + 1) .. '-0')
end
if ARGV[9] ~= '' then
  local message = string.sub(body, 1, -2) .. ',"id":' .. id .. ',"room":' .. ARGV[12] .. ',"epoch":"' .. epoch .. '"}'
  redis.call('PUBLISH', ARGV[9], ARGV[10] .. message .. ARGV[11])
end
return {0, id, body, epoch}
"""


SENTINEL_SCHEME = "redis+sentinel"


class SentinelBlockingPool(SentinelConnectionPool, redis.BlockingConnectionPool):
    """A pool that asks Sentinel for the master and, like the plain one, waits when it is full."""


def sentinel_address(url: str) -> tuple[list[tuple[str, int]], str, dict[str, Any]]:
    """Sentinels, service name and master options of `redis+sentinel://[[user]:pass@]h:p,h:p/db/service`.

    Read as python-socketio's RedisManager reads it, so the queue and the store agree: the
    credentials are the Redis servers' (sentinels are connected to without them).
    """
    parts = urlsplit(url)
    sentinels = []
    for address in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"sentinel address {address!r} must be host:port in {url!r}")
        sentinels.append((host, int(port)))
    _, db, service = (parts.path.split("/") + ["", "", ""])[:3]
    if not service:
        raise ValueError(f"{url!r} needs the service name: redis+sentinel://host:port,.../db/service")
    options: dict[str, Any] = {"db": int(db or 0)}
    if parts.username:
        options["username"] = unquote(parts.username)
    if parts.password:
        options["password"] = unquote(parts.password)
    return sentinels, service, options


def create_redis(url: str, socket_timeout: float = 5.0, max_connections: int = 200) -> redis.Redis:
    """The process's one Redis connection pool: timeouts on every call, a few quick retries with
    backoff (a dropped connection costs a reconnect, not an error), and a blocking pool, so a
    burst of events waits for a connection instead of failing when the pool is full. A
    redis+sentinel:// URL gives a pool that follows the master Sentinel names (after a failover,
    the next connection goes to the promoted replica)."""
    # Connection errors only: a timeout is not retried. Redis that does not answer (stopped,
    # partitioned) would otherwise cost the timeout once per try, and a command that timed out
    # may have run: sending it again is not the retry's call to make.
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3, supported_errors=(redis.ConnectionError,))
    options: dict[str, Any] = dict(
        max_connections=max_connections, timeout=socket_timeout, socket_timeout=socket_timeout,
        socket_connect_timeout=socket_timeout, health_check_interval=30, retry=retry,
        retry_on_error=[redis.ConnectionError])
    if urlsplit(url).scheme == SENTINEL_SCHEME:
        sentinels, service, server = sentinel_address(url)
        sentinel = Sentinel(sentinels, sentinel_kwargs={"socket_timeout": socket_timeout,
                                                        "socket_connect_timeout": socket_timeout})
        return sentinel.master_for(service, connection_pool_class=SentinelBlockingPool,
                                   **server, **options)
    return redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(url, **options))


# Read position only moves forward, and never past the room's newest id.
ADVANCE_READ_SCRIPT = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local wanted = tonumber(ARGV[2])
if wanted > tonumber(redis.call('GET', KEYS[2]) or '0') then return {-1, current} end
if wanted <= current then return {0, current} end
redis.call('HSET', KEYS[1], ARGV[1], wanted)
return {1, wanted}
"""

# members: "<instance>|<sid>" -> user JSON (what a dead replica's cleanup reads); online: user
# id -> number of connections; users: user id -> user JSON, one per user online (what `online`
# reads: a room's users, not its connections). `enter` records one connection, 1 if it is the
# user's first in the room.
PRESENCE_FUNCTION = """
local function enter(members, online, users, field, user, id)
  if redis.call('HSETNX', members, field, user) == 0 then return 0 end
  redis.call('HSET', users, id, user)
  return redis.call('HINCRBY', online, id, 1)
end
"""

# The users online in a room as one JSON array, from the users hash. A user counted in `online`
# but missing from `users` was recorded by a replica that predates the users hash (a rolling
# upgrade): then every connection's entry is read, as those replicas did (distinct JSONs).
ONLINE_FUNCTION = """
local function online_users(online, users, members)
  local known, out = {}, {}
  local flat = redis.call('HGETALL', users)
  for i = 1, #flat, 2 do known[flat[i]] = flat[i + 1] end
  for _, id in ipairs(redis.call('HKEYS', online)) do
    if not known[id] then
      local seen = {}
      out = {}
      for _, user in ipairs(redis.call('HVALS', members)) do
        if not seen[user] then
          seen[user] = true
          out[#out + 1] = user
        end
      end
      break
    end
    out[#out + 1] = known[id]
  end
  return '[' .. table.concat(out, ',') .. ']'
end
"""

# KEYS: members, online, users, the replica's room set (what to clear if it dies; a cluster
# passes none and adds to it first: another slot).
PRESENCE_JOIN_SCRIPT = PRESENCE_FUNCTION + """
if KEYS[4] then redis.call('SADD', KEYS[4], ARGV[4]) end
return enter(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2], ARGV[3])
"""

# KEYS: members, online, users. The user JSON if this was the user's last connection in the room.
PRESENCE_LEAVE_SCRIPT = """
local user = redis.call('HGET', KEYS[1], ARGV[1])
if not user then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
local id = cjson.decode(user)['id']
if redis.call('HINCRBY', KEYS[2], id, -1) <= 0 then
  redis.call('HDEL', KEYS[2], id)
  redis.call('HDEL', KEYS[3], id)
  return user
end
return false
"""

ONLINE_SCRIPT = ONLINE_FUNCTION + """
return online_users(KEYS[1], KEYS[2], KEYS[3])
"""

# A connection enters a room, and everything its join ack needs, in one round trip.
# KEYS: messages, seq, epoch, members, online, users, reads, then (one Redis) the replica's room
# set and the join quota. ARGV: member field, user JSON, user id, room, since ('' for none),
# how many messages after it, quota limit, quota window. Returns {-1, ms to wait} when the
# quota is used up (nothing written), else {0, oldest entry id, newest id, epoch, first,
# reads (flat), online (JSON array), entries after `since`}.
JOIN_SCRIPT = TAKE_FUNCTION + PRESENCE_FUNCTION + ONLINE_FUNCTION + """
if KEYS[9] then
  local wait = take(KEYS[9], tonumber(ARGV[7]), tonumber(ARGV[8]), redis_now())
  if wait then return {-1, wait} end
end
if KEYS[8] then redis.call('SADD', KEYS[8], ARGV[4]) end
local first = enter(KEYS[4], KEYS[5], KEYS[6], ARGV[1], ARGV[2], ARGV[3])
local oldest = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local after = {}
if ARGV[5] ~= '' and tonumber(ARGV[6]) > 0 then
  after = redis.call('XRANGE', KEYS[1], (tonumber(ARGV[5]) + 1) .. '-0', '+', 'COUNT', ARGV[6])
end
return {0, oldest[1] and oldest[1][1] or '', redis.call('GET', KEYS[2]) or '', redis.call('GET', KEYS[3]) or '',
        first, redis.call('HGETALL', KEYS[7]), online_users(KEYS[5], KEYS[6], KEYS[4]), after}
"""

# Track a connection (KEYS[1]: the replica's connections), the connect quota (KEYS[2]) first:
# ms to wait when it is used up (nothing tracked), else 0.
CONNECT_SCRIPT = TAKE_FUNCTION + """
if KEYS[2] then
  local wait = take(KEYS[2], tonumber(ARGV[4]), tonumber(ARGV[5]), redis_now())
  if wait then return wait end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 0
"""

CLAIM_EXPIRED_SCRIPT = """
local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
for _, id in ipairs(expired) do redis.call('ZREM', KEYS[1], id) end
return expired
"""


# Move the oldest dead letter back onto the queue in one step: never lost, never doubled.
REPLAY_SCRIPT = """
local raw = redis.call('RPOP', KEYS[1])
if not raw then return false end
redis.call('XADD', KEYS[2], '*', 'd', raw)
return raw
"""


REFUSALS_FOR_NOW = {"READONLY", "NOREPLICAS", "MASTERDOWN", "LOADING", "TRYAGAIN"}
CLUSTER_REFUSALS = (exceptions.ClusterError, exceptions.AskError, exceptions.TryAgainError,
                    exceptions.RedisClusterException)


# Writes a client asked for: one that times out may still have happened (its outcome is unknown).
CLIENT_WRITES = {"append_message", "add_connection", "advance_read", "presence_join", "presence_leave", "join_room",
                 "invite", "touch_conversation", "revoke_token"}


def unavailable_on_error(method: Callable) -> Callable:
    """Turn Redis connection failures into StoreUnavailable; report each call's latency."""
    write = method.__name__ in CLIENT_WRITES

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        started = time.perf_counter()
        failed = True
        try:
            # Within the deadline of the event or request making the call (store/deadline.py).
            result = deadline.call(method, self, *args, write=write, **kwargs)
            failed = False
            return result
        except redis.TimeoutError as exc:
            self.lost_connection()
            error = StoreUnavailable(str(exc))
            error.outcome_unknown = write
            raise error from exc
        except redis.ConnectionError as exc:
            self.lost_connection()
            raise StoreUnavailable(str(exc)) from exc
        except CLUSTER_REFUSALS as exc:
            # Redis Cluster: a shard without a master (failing over), a slot moving, no node reachable.
            self.lost_connection()
            raise StoreUnavailable(str(exc)) from exc
        except redis.ResponseError as exc:
            # A replica being promoted or a master without enough replicas refuses writes for now.
            if str(exc).split(" ", 1)[0] in REFUSALS_FOR_NOW:
                raise StoreUnavailable(str(exc)) from exc
            raise
        finally:
            if self.observe is not None:
                self.observe(method.__name__, time.perf_counter() - started, failed)
    return wrapper


# A per-user revocation time only moves forward, its entry only lives longer; every replica hears of it.
# KEYS: the user's entry. ARGV: before (Unix s), ttl ms, user id, channel. Returns the time in force.
REVOKE_USER_SCRIPT = """
local old = tonumber(redis.call('GET', KEYS[1]) or '0')
local before = math.max(tonumber(ARGV[1]), old)
local ttl = math.max(tonumber(ARGV[2]), redis.call('PTTL', KEYS[1]))
local text = string.format('%.3f', before)
redis.call('SET', KEYS[1], text, 'PX', ttl)
redis.call('PUBLISH', ARGV[4], cjson.encode({user = ARGV[3], before = text, ttl_ms = ttl}))
return text
"""


def access_change(data: bytes) -> Any:
    """One message of the access-changes channel as a feed event."""
    change = json.loads(data)
    if "uninvited" in change:
        return Uninvited(change["room"], change["uninvited"])
    return UserCutoff(change["user"], float(change["before"]), change["ttl_ms"] / 1000)


def room_key(room: str, part: str) -> str:
    """A key of the room, hash-tagged by room name."""
    return f"rt:room:{{{room}}}:{part}"


def limit_key(quota: Quota) -> str:
    """The hash that counts a quota's hits."""
    return f"rt:limit:{quota.rule}:{quota.key}"


def decode_entry(room: str, entry_id: bytes, fields: dict[bytes, bytes], epoch: str | None) -> dict[str, Any]:
    """A stream entry as a message dict."""
    return decode_message(room, int(entry_id.split(b"-")[0]), fields[b"m"], epoch)


def decode_message(room: str, message_id: int, body: bytes, epoch: str | None) -> dict[str, Any]:
    """The stored JSON plus the id, room and epoch that the stream entry and its room carry."""
    return {**json.loads(body), "id": message_id, "room": room, "epoch": epoch}


def presence_keys(room: str) -> list[str]:
    """The room's presence hashes: members (per connection), online (counts per user), users."""
    return [room_key(room, "members"), room_key(room, "online"), room_key(room, "users")]


def join_keys(room: str) -> list[str]:
    """The room's keys JOIN_SCRIPT reads and writes, all on the room's slot."""
    members, online, users = presence_keys(room)
    return [room_key(room, "messages"), room_key(room, "seq"), room_key(room, "epoch"), members, online, users,
            room_key(room, "reads")]


def join_args(room: str, instance_id: str, sid: str, user: dict[str, Any], since: int | None,
              limit: int) -> list[Any]:
    """JOIN_SCRIPT's arguments before the quota's."""
    return [f"{instance_id}|{sid}", json.dumps(user), user["id"], room, "" if since is None else since,
            limit if since is not None else 0]


def sorted_users(raw: bytes) -> list[dict[str, Any]]:
    """ONLINE_SCRIPT's JSON array as users sorted by id, one per id."""
    users = {user["id"]: user for user in json.loads(raw)}
    return [users[k] for k in sorted(users)]


def joined(room: str, answer: list[Any], quota: Quota | None) -> Joined:
    """JOIN_SCRIPT's answer as a Joined (OverLimit when the quota was used up)."""
    if answer[0] == -1:
        raise OverLimit(quota, answer[1] / 1000)
    _, oldest, newest, epoch, first, reads, online, after = answer
    state = RoomState(int(oldest.split(b"-")[0]) if oldest else 0, int(newest or 0), decode_epoch(epoch))
    return Joined(state, first == 1, {k.decode(): int(v) for k, v in zip(reads[::2], reads[1::2])},
                  sorted_users(online),
                  [decode_entry(room, entry_id, dict(zip(fields[::2], fields[1::2])), state.epoch)
                   for entry_id, fields in after])


def decode_epoch(raw: bytes | None) -> str | None:
    """An epoch as Redis returns it (None or b'': the room has none yet)."""
    return raw.decode() if raw else None


class RedisStore(Store):
    """State shared by every replica through one Redis server."""

    name = "redis"
    INSTANCES = "rt:instances"
    WEBHOOKS = "rt:webhooks"
    WEBHOOK_GROUP = "deliverers"
    DEAD = "rt:webhooks:dead"
    REVOCATIONS = "rt:revocations"  # pub/sub channel: "<ttl ms> <jti>" per revoked token
    # A second channel for the other feed events (JSON), so a replica of an earlier version,
    # subscribed to the first only, is not handed a message it cannot parse.
    ACCESS_CHANGES = "rt:revocations:access"
    FEED_PING = 1.0  # seconds of silence before the revocation feed checks that Redis is there

    def __init__(self, client: redis.Redis, observe: Callable[[str, float, bool], None] | None = None,
                 wait_replicas: int = 0, wait_timeout: float = 1.0, group_commit: bool = False):
        self.client = client
        self.observe = observe
        # With wait_replicas, an append counts only once that many replicas have it (WAIT): a
        # failover then cannot lose a message its sender was told was accepted.
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = max(1, int(wait_timeout * 1000))
        self._redis = client
        self._append = client.register_script(APPEND_SCRIPT)
        self._advance_read = client.register_script(ADVANCE_READ_SCRIPT)
        self._presence_join = client.register_script(PRESENCE_JOIN_SCRIPT)
        self._presence_leave = client.register_script(PRESENCE_LEAVE_SCRIPT)
        self._online = client.register_script(ONLINE_SCRIPT)
        self._join = client.register_script(JOIN_SCRIPT)
        self._connect = client.register_script(CONNECT_SCRIPT)
        self._claim_expired = client.register_script(CLAIM_EXPIRED_SCRIPT)
        self._replay_one = client.register_script(REPLAY_SCRIPT)
        self._take = client.register_script(TAKE_SCRIPT)
        self._revoke_user = client.register_script(REVOKE_USER_SCRIPT)
        self._connection_ttl_ms = 15_000
        # Appends of many greenlets in one pipeline (gevent replicas; not with WAIT, whose count
        # is per connection and per call).
        self._group_commit = GroupCommit(self._append_one, self._append_batch) if group_commit and not wait_replicas else None

    @property
    def group_commit(self) -> GroupCommit | None:
        """The appends' group commit (its counts), or None when appends go out one by one."""
        return self._group_commit

    def lost_connection(self) -> None:
        """A call failed on its connection: nothing to do here (the pool reconnects)."""

    @unavailable_on_error
    def append_message(self, room, message, idempotency_key, retention: Retention,
                       webhooks=(), announce: Announcement | None = None,
                       quota: Quota | None = None) -> Appended:
        """Persist `message` with the room's next id, unless the key was already used.

        `announce` is published by the script, except when appends wait for replicas: a message
        must not reach clients before WAIT confirms it (the caller then broadcasts). `quota` is
        taken by the script first (OverLimit: nothing written).
        """
        now = time.time()
        body = json.dumps({k: v for k, v in message.items() if k not in ("id", "room")},
                          separators=(",", ":"))
        keys = [room_key(room, "messages"), room_key(room, "seq"),
                room_key(room, f"idem:{idempotency_key or ''}"), self.WEBHOOKS, room_key(room, "epoch")]
        args = [body, int(message.get("ts", now * 1000)), retention.max_messages,
                int((now - retention.max_age) * 1000), int(retention.idempotency_ttl * 1000),
                "1" if idempotency_key else "0", json.dumps(list(webhooks)), room]
        announce = None if self.wait_replicas else announce
        args += ([announce.channel, announce.prefix, announce.suffix, json.dumps(room)] if announce
                 else ["", "", "", ""])
        args.append(new_epoch())  # used only if this append starts the room's history
        if quota is not None:
            keys.append(limit_key(quota))
            args += [quota.limit, quota.window]
        if not self.wait_replicas:
            duplicate, message_id, stored, epoch = self._run_append(keys, args)
            if duplicate == -1:
                raise OverLimit(quota, message_id / 1000)
            return Appended(decode_message(room, int(message_id), stored, decode_epoch(epoch)),
                            duplicate=bool(duplicate),
                            published=announce is not None and not duplicate)
        # WAIT counts the writes of its own connection: one pipeline keeps both on one.
        with self._redis.pipeline(transaction=False) as pipe:
            self._append(keys=keys, args=args, client=pipe)
            pipe.wait(self.wait_replicas, self.wait_timeout_ms)
            (duplicate, message_id, stored, epoch), replicas = pipe.execute()
        if duplicate == -1:
            raise OverLimit(quota, message_id / 1000)
        if replicas < self.wait_replicas:
            raise NotReplicated(f"{replicas} of {self.wait_replicas} replica(s) confirmed the message "
                                f"within {self.wait_timeout_ms} ms")
        # The first try of a repeat may have stopped here unbroadcast: broadcast it again (each
        # replica's sequencer drops what it already delivered).
        return Appended(decode_message(room, int(message_id), stored, decode_epoch(epoch)),
                        duplicate=bool(duplicate), broadcast_repeat=bool(duplicate))

    def _run_append(self, keys: list[str], args: list[Any]) -> Any:
        """The append script's reply: through group commit in a gevent replica, else on its own."""
        if self._group_commit is not None and deadline.bounded():
            return self._group_commit.call(keys, args)
        return self._append(keys=keys, args=args)

    def _append_one(self, keys: list[str], args: list[Any]) -> Any:
        """The append script on its own (nothing else in flight)."""
        return self._append(keys=keys, args=args)

    def _append_batch(self, calls: Any) -> list[Any]:
        """The append script for each (keys, args) in one pipeline: each reply or error in place."""
        replies = self._evalsha_all(calls)
        missing = [n for n, reply in enumerate(replies) if isinstance(reply, exceptions.NoScriptError)]
        if missing:
            # Redis restarted or flushed its scripts: none of these ran, so run them again in order.
            self._redis.script_load(self._append.script)
            for n, reply in zip(missing, self._evalsha_all([calls[n] for n in missing])):
                replies[n] = reply
        return replies

    def _evalsha_all(self, calls: Any) -> list[Any]:
        """One EVALSHA of the append script per call, pipelined (a Script object in a pipeline
        would cost a SCRIPT EXISTS round trip per pipeline)."""
        sha = self._append.sha
        with self._redis.pipeline(transaction=False) as pipe:
            for keys, args in calls:
                pipe.execute_command("EVALSHA", sha, len(keys), *keys, *args)
            return pipe.execute(raise_on_error=False)

    def _entries_with_epoch(self, room: str, read: Callable[[Any], Any]) -> tuple[list, str | None]:
        """Stream entries (`read` queues the XRANGE/XREVRANGE) and the room's epoch, read atomically."""
        with self._redis.pipeline(transaction=True) as pipe:
            read(pipe)
            pipe.get(room_key(room, "epoch"))
            entries, epoch = pipe.execute()
        return entries, decode_epoch(epoch)

    @unavailable_on_error
    def messages_after(self, room, after_id, limit):
        """Up to `limit` messages with id > after_id, oldest first."""
        if limit <= 0:
            return []
        entries, epoch = self._entries_with_epoch(room, lambda pipe: pipe.xrange(
            room_key(room, "messages"), f"{after_id + 1}-0", "+", count=limit))
        return [decode_entry(room, entry_id, fields, epoch) for entry_id, fields in entries]

    @unavailable_on_error
    def messages_before(self, room, before_id, limit):
        """Up to `limit` messages with id < before_id (None: the newest), oldest first."""
        if limit <= 0 or (before_id is not None and before_id <= 1):
            return []
        top = "+" if before_id is None else f"{before_id - 1}-0"
        entries, epoch = self._entries_with_epoch(room, lambda pipe: pipe.xrevrange(
            room_key(room, "messages"), top, "-", count=limit))
        return [decode_entry(room, entry_id, fields, epoch) for entry_id, fields in reversed(entries)]

    @unavailable_on_error
    def room_state(self, room):
        """(oldest retained id, newest id, epoch) of a room, read atomically; (0, 0, None) when it has none."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.xrange(room_key(room, "messages"), "-", "+", count=1)
            pipe.get(room_key(room, "seq"))
            pipe.get(room_key(room, "epoch"))
            oldest, newest, epoch = pipe.execute()
        return RoomState(int(oldest[0][0].split(b"-")[0]) if oldest else 0, int(newest or 0),
                         decode_epoch(epoch))

    @unavailable_on_error
    def register_instance(self, info, ttl):
        """Announce a replica (or refresh its heartbeat) for `ttl` seconds; False if it was unknown."""
        ttl_ms = int(ttl * 1000)
        self._connection_ttl_ms = ttl_ms
        instance_id = info["id"]
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(f"rt:instance:{instance_id}", json.dumps(info), px=ttl_ms, get=True)
            pipe.pexpire(f"rt:instance:{instance_id}:connections", ttl_ms)
            pipe.zadd(self.INSTANCES, {instance_id: time.time() + ttl})
            previous, *_ = pipe.execute()
        return previous is not None

    @unavailable_on_error
    def replace_connections(self, instance_id, connections):
        """Set a replica's tracked connections to exactly `connections`."""
        key = f"rt:instance:{instance_id}:connections"
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if connections:
                pipe.hset(key, mapping={sid: json.dumps(user) for sid, user in connections.items()})
                pipe.pexpire(key, self._connection_ttl_ms)
            pipe.execute()

    @unavailable_on_error
    def remove_instance(self, instance_id):
        """Forget a replica and its connections at once."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.delete(f"rt:instance:{instance_id}", f"rt:instance:{instance_id}:connections",
                        f"rt:instance:{instance_id}:rooms")
            pipe.zrem(self.INSTANCES, instance_id)
            pipe.execute()

    @unavailable_on_error
    def list_instances(self):
        """Live replicas with their connection counts, sorted by id."""
        ids = sorted(i.decode() for i in self._redis.zrangebyscore(self.INSTANCES, time.time(), "+inf"))
        with self._redis.pipeline(transaction=False) as pipe:
            for instance_id in ids:
                pipe.get(f"rt:instance:{instance_id}")
                pipe.hlen(f"rt:instance:{instance_id}:connections")
            replies = pipe.execute()
        instances = []
        for info, clients in zip(replies[::2], replies[1::2]):
            if info is not None:  # expired between the two reads
                instances.append({**json.loads(info), "clients": clients})
        return instances

    @unavailable_on_error
    def add_connection(self, instance_id, sid, user, quota=None):
        """Track one connection on a replica, `quota` taken first in the same script (OverLimit)."""
        keys = [f"rt:instance:{instance_id}:connections"]
        args = [sid, json.dumps(user), self._connection_ttl_ms]
        if quota is not None:
            keys.append(limit_key(quota))
            args += [quota.limit, quota.window]
        wait = self._connect(keys=keys, args=args)
        if wait:
            raise OverLimit(quota, wait / 1000)

    @unavailable_on_error
    def remove_connection(self, instance_id, sid):
        """Stop tracking one connection."""
        self._redis.hdel(f"rt:instance:{instance_id}:connections", sid)

    @unavailable_on_error
    def claim_expired_instances(self):
        """Remove expired replicas from the registry; each id is returned to one caller only."""
        # One script, so two replicas reaping at once cannot both get the same id.
        expired = self._claim_expired(keys=[self.INSTANCES], args=[time.time()])
        return sorted(i.decode() for i in expired)

    @unavailable_on_error
    def advance_read(self, room, user_id, message_id):
        """Move a user's last-read id forward only; (moved, effective id)."""
        moved, effective = self._advance_read(
            keys=[room_key(room, "reads"), room_key(room, "seq")], args=[user_id, message_id])
        if moved < 0:
            raise ValueError(f"message {message_id} does not exist in {room}")
        return bool(moved), int(effective)

    @unavailable_on_error
    def read_positions(self, room):
        """Every user's last-read id in a room."""
        return {k.decode(): int(v) for k, v in self._redis.hgetall(room_key(room, "reads")).items()}

    @unavailable_on_error
    def presence_join(self, room, instance_id, sid, user):
        """Record a connection in a room; True if it is the user's first there."""
        count = self._presence_join(keys=[*presence_keys(room), f"rt:instance:{instance_id}:rooms"],
                                    args=[f"{instance_id}|{sid}", json.dumps(user), user["id"], room])
        return count == 1

    @unavailable_on_error
    def presence_leave(self, room, instance_id, sid):
        """Forget a connection in a room; the user if it was their last there."""
        user = self._presence_leave(keys=presence_keys(room), args=[f"{instance_id}|{sid}"])
        return json.loads(user) if user else None

    @unavailable_on_error
    def online(self, room):
        """Users with at least one connection in the room, sorted by id."""
        members, online, users = presence_keys(room)
        return sorted_users(self._online(keys=[online, users, members]))

    @unavailable_on_error
    def join_room(self, room, instance_id, sid, user, since, limit, quota=None):
        """A connection enters a room; the join quota, presence and every read in one script."""
        keys = [*join_keys(room), f"rt:instance:{instance_id}:rooms"]
        args = join_args(room, instance_id, sid, user, since, limit)
        if quota is not None:
            keys.append(limit_key(quota))
            args += [quota.limit, quota.window]
        return joined(room, self._join(keys=keys, args=args), quota)

    @unavailable_on_error
    def instance_presence(self, instance_id):
        """(room, sid) of every presence entry a replica holds."""
        entries = []
        rooms_key = f"rt:instance:{instance_id}:rooms"
        prefix = f"{instance_id}|".encode()
        for room in sorted(r.decode() for r in self._redis.smembers(rooms_key)):
            for field in self._redis.hkeys(room_key(room, "members")):
                if field.startswith(prefix):
                    entries.append((room, field[len(prefix):].decode()))
        return entries

    @unavailable_on_error
    def touch_conversation(self, user_ids, room, ts):
        """Record that users have a conversation in `room`, most recent at `ts`."""
        with self._redis.pipeline(transaction=False) as pipe:
            for user_id in user_ids:
                pipe.zadd(f"rt:user:{user_id}:conversations", {room: ts})
            pipe.execute()

    @unavailable_on_error
    def conversations(self, user_id, limit):
        """A user's conversation rooms, most recent first."""
        rooms = self._redis.zrevrange(f"rt:user:{user_id}:conversations", 0, limit - 1)
        return [r.decode() for r in rooms]

    @unavailable_on_error
    def revoke_token(self, jti, ttl):
        """Deny a token id for `ttl` seconds, and tell every replica's mirror in the same step."""
        ttl_ms = max(1, int(ttl * 1000))
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.set(f"rt:revoked:{jti}", 1, px=ttl_ms)
            pipe.publish(self.REVOCATIONS, f"{ttl_ms} {jti}")
            pipe.execute()

    @unavailable_on_error
    def revoked_tokens(self):
        """Every denied token id, with the seconds its entry has left."""
        keys = list(self._redis.scan_iter(match="rt:revoked:*", count=1000))
        with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.pttl(key)
            ttls = pipe.execute() if keys else []
        return {key.decode()[len("rt:revoked:"):]: ms / 1000 for key, ms in zip(keys, ttls) if ms > 0}

    @unavailable_on_error
    def revoke_user(self, user_id, before, ttl):
        """Deny every token of a user issued before `before` for `ttl` s, and tell every replica."""
        return float(self._revoke_user(keys=[f"rt:revoked-user:{user_id}"],
                                       args=[repr(float(before)), max(1, int(ttl * 1000)), user_id,
                                             self.ACCESS_CHANGES]))

    @unavailable_on_error
    def revoked_before(self, user_id):
        """The time before which every token of the user is denied, if any."""
        value = self._redis.get(f"rt:revoked-user:{user_id}")
        return float(value) if value is not None else None

    @unavailable_on_error
    def revoked_users(self):
        """Every user with a revocation time: (that time, the seconds its entry has left)."""
        keys = list(self._redis.scan_iter(match="rt:revoked-user:*", count=1000))
        with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.get(key)
                pipe.pttl(key)
            answers = pipe.execute() if keys else []
        return {key.decode()[len("rt:revoked-user:"):]: (float(value), ms / 1000)
                for key, value, ms in zip(keys, answers[::2], answers[1::2]) if value is not None and ms > 0}

    def revocation_feed(self):
        """None once subscribed, then (jti, ttl), UserCutoff or Uninvited; a silent or lost link raises."""
        pubsub = self._redis.pubsub()
        try:
            pubsub.subscribe(self.REVOCATIONS, self.ACCESS_CHANGES)
            heard = pinged = time.monotonic()
            while True:
                event = pubsub.get_message(timeout=self.FEED_PING)
                now = time.monotonic()
                if event is not None:
                    heard = now
                    if event["type"] == "subscribe" and event["data"] == 2:  # both channels
                        yield None
                    elif event["type"] == "message" and event["channel"] == self.ACCESS_CHANGES.encode():
                        yield access_change(event["data"])
                    elif event["type"] == "message":
                        ttl_ms, _, jti = event["data"].decode().partition(" ")
                        yield jti, int(ttl_ms) / 1000
                elif now - heard > 3 * self.FEED_PING:
                    raise StoreUnavailable("revocation feed: no answer from Redis")
                if now - pinged >= self.FEED_PING:
                    pubsub.ping()  # a link that died quietly shows up as silence
                    pinged = now
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(f"revocation feed: {exc}") from exc
        finally:
            try:
                pubsub.close()
            except Exception:  # closing a broken link; nothing to do about it
                pass

    @unavailable_on_error
    def is_revoked(self, jti):
        """Whether a token id is on the denylist."""
        return bool(self._redis.exists(f"rt:revoked:{jti}"))

    @unavailable_on_error
    def invite(self, room, user_id):
        """Let a user into a private room; False if they already were."""
        return bool(self._redis.sadd(room_key(room, "invited"), user_id))

    @unavailable_on_error
    def is_invited(self, room, user_id):
        """Whether a user was invited into a private room."""
        return bool(self._redis.sismember(room_key(room, "invited"), user_id))

    @unavailable_on_error
    def uninvite(self, room, user_id):
        """Take a user's invitation back and tell every replica in the same step."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.srem(room_key(room, "invited"), user_id)
            pipe.publish(self.ACCESS_CHANGES, json.dumps({"uninvited": user_id, "room": room}))
            removed, _ = pipe.execute()
        return bool(removed)

    def _ensure_webhook_group(self) -> None:
        """Create the consumer group once (and again if Redis lost it)."""
        try:
            self._redis.xgroup_create(self.WEBHOOKS, self.WEBHOOK_GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    @unavailable_on_error
    def enqueue_webhook(self, record):
        """Queue one delivery; returns its queue id."""
        return self._redis.xadd(self.WEBHOOKS, {"d": json.dumps(record)}).decode()

    @staticmethod
    def _records(entries) -> list[tuple[str, dict[str, Any]]]:
        """Stream entries as (queue id, record); entries deleted meanwhile come back empty."""
        return [(entry_id.decode(), json.loads(fields[b"d"])) for entry_id, fields in entries
                if fields and b"d" in fields]

    @unavailable_on_error
    def claim_webhooks(self, consumer, count, block):
        """Take up to `count` new deliveries for `consumer`, waiting up to `block` seconds."""
        def read():
            return self._redis.xreadgroup(self.WEBHOOK_GROUP, consumer, {self.WEBHOOKS: ">"},
                                          count=count, block=int(block * 1000) or None)
        try:
            reply = read()
        except redis.ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            self._ensure_webhook_group()  # first use, or Redis lost it: from id 0, nothing skipped
            reply = read()
        return self._records(reply[0][1]) if reply else []

    @unavailable_on_error
    def reclaim_webhooks(self, consumer, min_idle, count):
        """Take over deliveries claimed by someone else more than `min_idle` seconds ago."""
        self._ensure_webhook_group()
        reply = self._redis.xautoclaim(self.WEBHOOKS, self.WEBHOOK_GROUP, consumer,
                                       int(min_idle * 1000), start_id="0-0", count=count)
        return self._records(reply[1])

    @unavailable_on_error
    def finish_webhook(self, queue_id):
        """Remove a delivery that was delivered or dead-lettered."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.xack(self.WEBHOOKS, self.WEBHOOK_GROUP, queue_id)
            pipe.xdel(self.WEBHOOKS, queue_id)
            pipe.execute()

    @unavailable_on_error
    def dead_letter(self, record):
        """Keep a delivery that failed for good."""
        with self._redis.pipeline(transaction=True) as pipe:
            pipe.lpush(self.DEAD, json.dumps(record))
            pipe.ltrim(self.DEAD, 0, 9_999)
            pipe.execute()

    @unavailable_on_error
    def dead_letters(self, limit):
        """The newest dead-lettered deliveries."""
        return [json.loads(r) for r in self._redis.lrange(self.DEAD, 0, limit - 1)]

    @unavailable_on_error
    def replay_dead_letters(self, limit):
        """Queue dead-lettered deliveries again, oldest first (each moved atomically)."""
        moved = 0
        for _ in range(limit):
            raw = self._replay_one(keys=[self.DEAD, self.WEBHOOKS])
            if raw is None:
                break
            moved += 1
        return moved

    @unavailable_on_error
    def webhook_backlog(self):
        """Queue depth: waiting, in flight (claimed), dead."""
        self._ensure_webhook_group()
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.xlen(self.WEBHOOKS)
            pipe.xpending(self.WEBHOOKS, self.WEBHOOK_GROUP)
            pipe.llen(self.DEAD)
            length, pending, dead = pipe.execute()
        in_flight = pending["pending"] if isinstance(pending, dict) else pending[0]
        return {"waiting": max(0, length - in_flight), "in_flight": in_flight, "dead": dead}

    @unavailable_on_error
    def publish_figures(self, instance_id, figures, ttl):
        """Share one replica's dashboard figures for `ttl` seconds."""
        self._redis.set(f"rt:figures:{instance_id}", json.dumps(figures), px=int(ttl * 1000))

    @unavailable_on_error
    def all_figures(self):
        """Every replica's current figures, by replica id (registered replicas only)."""
        ids = [i.decode() for i in self._redis.zrange(self.INSTANCES, 0, -1)]
        values = self._redis.mget([f"rt:figures:{i}" for i in ids]) if ids else []
        return {i: json.loads(v) for i, v in zip(ids, values) if v is not None}

    @unavailable_on_error
    def used_memory(self):
        """Redis's used_memory, in bytes."""
        return int(self._redis.info("memory").get("used_memory", 0))

    @unavailable_on_error
    def take(self, quota, *more):
        """Count a hit of each quota, all or none; OverLimit (nothing counted) when one is used up."""
        quotas = (quota, *more)
        answer = self._take(keys=[limit_key(q) for q in quotas],
                            args=[value for q in quotas for value in (q.limit, q.window, q.weight)])
        if answer[0]:
            raise OverLimit(quotas[int(answer[1]) - 1], answer[0] / 1000)

    @unavailable_on_error
    def claim(self, key, ttl):
        """Set `key` for `ttl` seconds unless it is set; True if this call set it."""
        return bool(self._redis.set(f"rt:claim:{key}", 1, px=max(1, int(ttl * 1000)), nx=True))

    @unavailable_on_error
    def release(self, key):
        """Unset a claimed key."""
        self._redis.delete(f"rt:claim:{key}")

    @unavailable_on_error
    def ping(self):
        """Raise StoreUnavailable when Redis cannot be reached."""
        self._redis.ping()
