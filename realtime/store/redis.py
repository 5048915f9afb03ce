"""Redis backend: room streams, idempotency keys, the instance registry."""
from __future__ import annotations

import functools
import json
import time
from typing import Any, Callable

import redis

from .base import Appended, Retention, Store, StoreUnavailable

# Atomic append: reuse an idempotency key's message, else take the next id, XADD, trim by count
# and by age. Keys share the room's hash tag so the script also runs on Redis Cluster.
APPEND_SCRIPT = """
local stream, seq, idem = KEYS[1], KEYS[2], KEYS[3]
local body, now, max_len, min_ts, idem_ttl, has_key = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4]), ARGV[5], ARGV[6]
if has_key == '1' then
  local known = redis.call('GET', idem)
  if known then
    local found = redis.call('XRANGE', stream, known, known)
    if #found > 0 then return {1, tonumber(known), found[1][2][4]} end
  end
end
local id = redis.call('INCR', seq)
redis.call('XADD', stream, 'MAXLEN', '=', max_len, id .. '-0', 'ts', now, 'm', body)
if has_key == '1' then redis.call('SET', idem, id, 'PX', idem_ttl) end
local oldest = redis.call('XRANGE', stream, '-', '+', 'COUNT', 100)
local keep_from = nil
for _, entry in ipairs(oldest) do
  if tonumber(entry[2][2]) < min_ts then keep_from = entry[1] else break end
end
if keep_from then
  local last = tonumber(string.match(keep_from, '^(%d+)'))
  redis.call('XTRIM', stream, 'MINID', '=', (last + 1) .. '-0')
end
return {0, id, body}
"""


def create_redis(url: str, socket_timeout: float = 5.0) -> redis.Redis:
    """The process's one Redis connection pool, with timeouts on every call."""
    return redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                socket_connect_timeout=socket_timeout, health_check_interval=30)


def unavailable_on_error(method: Callable) -> Callable:
    """Turn Redis connection failures into StoreUnavailable."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        try:
            return method(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable(str(exc)) from exc
    return wrapper


def room_key(room: str, part: str) -> str:
    """A key of the room, hash-tagged by room name."""
    return f"rt:room:{{{room}}}:{part}"


def decode_entry(room: str, entry_id: bytes, fields: dict[bytes, bytes]) -> dict[str, Any]:
    """A stream entry as a message dict."""
    return decode_message(room, int(entry_id.split(b"-")[0]), fields[b"m"])


def decode_message(room: str, message_id: int, body: bytes) -> dict[str, Any]:
    """The stored JSON plus the id and room that the stream entry carries."""
    return {**json.loads(body), "id": message_id, "room": room}


class RedisStore(Store):
    """State shared by every replica through one Redis server."""

    name = "redis"
    INSTANCES = "rt:instances"

    def __init__(self, client: redis.Redis):
        self.client = client
        self._redis = client
        self._append = client.register_script(APPEND_SCRIPT)
        self._connection_ttl_ms = 15_000

    @unavailable_on_error
    def append_message(self, room, message, idempotency_key, retention: Retention) -> Appended:
        """Persist `message` with the room's next id, unless the key was already used."""
        now = time.time()
        body = json.dumps({k: v for k, v in message.items() if k not in ("id", "room")},
                          separators=(",", ":"))
        keys = [room_key(room, "messages"), room_key(room, "seq"),
                room_key(room, f"idem:{idempotency_key or ''}")]
        args = [body, int(message.get("ts", now * 1000)), retention.max_messages,
                int((now - retention.max_age) * 1000), int(retention.idempotency_ttl * 1000),
                "1" if idempotency_key else "0"]
        duplicate, message_id, stored = self._append(keys=keys, args=args)
        return Appended(decode_message(room, int(message_id), stored), duplicate=bool(duplicate))

    @unavailable_on_error
    def messages_after(self, room, after_id, limit):
        """Up to `limit` messages with id > after_id, oldest first."""
        if limit <= 0:
            return []
        entries = self._redis.xrange(room_key(room, "messages"), f"{after_id + 1}-0", "+", count=limit)
        return [decode_entry(room, entry_id, fields) for entry_id, fields in entries]

    @unavailable_on_error
    def messages_before(self, room, before_id, limit):
        """Up to `limit` messages with id < before_id (None: the newest), oldest first."""
        if limit <= 0 or (before_id is not None and before_id <= 1):
            return []
        top = "+" if before_id is None else f"{before_id - 1}-0"
        entries = self._redis.xrevrange(room_key(room, "messages"), top, "-", count=limit)
        return [decode_entry(room, entry_id, fields) for entry_id, fields in reversed(entries)]

    @unavailable_on_error
    def room_bounds(self, room):
        """(oldest retained id, newest id) of a room; (0, 0) when it has none."""
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.xrange(room_key(room, "messages"), "-", "+", count=1)
            pipe.get(room_key(room, "seq"))
            oldest, newest = pipe.execute()
        newest = int(newest or 0)
        return (int(oldest[0][0].split(b"-")[0]) if oldest else 0, newest)

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
            pipe.delete(f"rt:instance:{instance_id}", f"rt:instance:{instance_id}:connections")
            pipe.zrem(self.INSTANCES, instance_id)
            pipe.execute()

    @unavailable_on_error
    def list_instances(self):
        """Live replicas with their connection counts, sorted by id."""
        self._redis.zremrangebyscore(self.INSTANCES, "-inf", time.time())
        ids = sorted(i.decode() for i in self._redis.zrange(self.INSTANCES, 0, -1))
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
    def add_connection(self, instance_id, sid, user):
        """Track one connection on a replica."""
        key = f"rt:instance:{instance_id}:connections"
        with self._redis.pipeline(transaction=False) as pipe:
            pipe.hset(key, sid, json.dumps(user))
            pipe.pexpire(key, self._connection_ttl_ms)
            pipe.execute()

    @unavailable_on_error
    def remove_connection(self, instance_id, sid):
        """Stop tracking one connection."""
        self._redis.hdel(f"rt:instance:{instance_id}:connections", sid)

    @unavailable_on_error
    def ping(self):
        """Raise StoreUnavailable when Redis cannot be reached."""
        self._redis.ping()
