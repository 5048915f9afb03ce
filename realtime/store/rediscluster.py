"""Redis Cluster backend: the Redis store with no script or transaction across two slots.

Every key of a room carries the room as its hash tag (`rt:room:{<room>}:...`, as on one Redis), so
the append script, history reads and presence of one room run on the shard that owns the room.
What the single-Redis scripts wrote outside the room's slot is written here in a second call:
- the webhook outbox (`rt:{webhooks}`): queued after the append and before the send is
  acknowledged; with an idempotency key a marker in the room's slot (`hooked:<id>`) records it,
  so the retry of a send whose second call failed queues them, and any other repeat does not;
- the send quota (`rt:limit:<rule>:{<subject>}`): taken before the append;
- the replica's room set (`rt:instance:<id>:rooms`): added before the presence entry;
- the connect and join quotas: taken before the connection is tracked or the room entered.
Room announcements use SPUBLISH on the room's shard channel, which carries the same hash tag.
"""
from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import unquote, urlsplit

from redis import BlockingConnectionPool
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.retry import Retry

from .base import Announcement, Appended, NotReplicated, OverLimit, Quota, Retention, new_epoch
from .redis import (APPEND_SCRIPT, RedisStore, decode_epoch, decode_message, join_args, join_keys, joined,
                    presence_keys, room_key, unavailable_on_error)

CLUSTER_SCHEMES = {"redis+cluster", "rediss+cluster"}
SLOT_REFRESH = 0.5  # seconds between slot-map refreshes after failed calls (a failover storms them)

# The room's announcement goes to its shard only; its channel hashes to the room's slot.
CLUSTER_APPEND_SCRIPT = APPEND_SCRIPT.replace("redis.call('PUBLISH'", "redis.call('SPUBLISH'")


def is_cluster_url(url: str | None) -> bool:
    """Whether `url` names a Redis Cluster (redis+cluster:// or rediss+cluster://)."""
    return bool(url) and urlsplit(url).scheme in CLUSTER_SCHEMES


def cluster_address(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """Seed nodes and connection options of `redis+cluster://[user:password@]h:p,h:p/`."""
    parts = urlsplit(url)
    if parts.scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"{url!r} is not a redis+cluster:// or rediss+cluster:// URL")
    seeds = []
    for address in parts.netloc.rpartition("@")[2].split(","):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"cluster seed {address!r} must be host:port in {url!r}")
        seeds.append((host.strip("[]"), int(port)))
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError(f"{url!r}: a Redis Cluster has only database 0")
    options: dict[str, Any] = {"ssl": parts.scheme == "rediss+cluster"}
    if parts.username:
        options["username"] = unquote(parts.username)
    if parts.password:
        options["password"] = unquote(parts.password)
    return seeds, options


def create_redis_cluster(url: str, socket_timeout: float = 5.0, max_connections: int = 200,
                         **extra: Any) -> RedisCluster:
    """A RedisCluster client for the seed nodes of `url`: per-node pools, timeouts on every call.

    redis-py follows MOVED/ASK and refreshes its slot map after a connection error (a shard's
    master that died is replaced by its promoted replica on a later try). Each node's pool is a
    blocking one, as on one Redis: a burst of calls (a replica's clients all disconnecting) waits
    up to `socket_timeout` for a connection instead of failing when the pool is full.
    """
    seeds, options = cluster_address(url)
    return RedisCluster(
        startup_nodes=[ClusterNode(host, port) for host, port in seeds],
        socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout, max_connections=max_connections,
        connection_pool_class=BlockingConnectionPool, timeout=socket_timeout, health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=3),
        **options, **extra)


def limiter_storage(url: str) -> tuple[str, dict[str, Any]]:
    """The `limits` library's storage URI and options for a cluster URL (its RedisClusterStorage)."""
    seeds, options = cluster_address(url)
    netloc = urlsplit(url).netloc.rpartition("@")
    credentials = netloc[0] + "@" if netloc[0] else ""
    uri = "redis+cluster://" + credentials + ",".join(f"{host}:{port}" for host, port in seeds)
    return uri, {"ssl": True} if options["ssl"] else {}


def subject_tag(key: str) -> str:
    """A hash tag for a quota's subject: every quota of one user on one slot, braces kept out."""
    return "{" + key.replace("{", "%7B").replace("}", "%7D") + "}"


class RedisClusterStore(RedisStore):
    """The Redis store on a Redis Cluster: sharded by room, no script across two slots."""

    name = "redis-cluster"
    # The webhook queue and its dead letters share one slot: the replay script moves between them.
    WEBHOOKS = "rt:{webhooks}"
    DEAD = "rt:{webhooks}:dead"

    def __init__(self, client: RedisCluster, **kwargs: Any):
        super().__init__(client, **kwargs)
        self._append = client.register_script(CLUSTER_APPEND_SCRIPT)
        self._refreshed = 0.0  # monotonic time of the last slot-map refresh

    @staticmethod
    def limit_key(quota: Quota) -> str:
        """The hash that counts a quota's hits, on its subject's slot."""
        return f"rt:limit:{quota.rule}:{subject_tag(quota.key)}"

    @unavailable_on_error
    def append_message(self, room, message, idempotency_key, retention: Retention,
                       webhooks=(), announce: Announcement | None = None,
                       quota: Quota | None = None) -> Appended:
        """Persist `message` with the room's next id (quota first, webhooks after: other slots)."""
        if quota is not None:
            answer = self._take(keys=[self.limit_key(quota)], args=[quota.limit, quota.window, 1])
            if answer[0]:
                raise OverLimit(quota, answer[0] / 1000)
        now = time.time()
        body = json.dumps({k: v for k, v in message.items() if k not in ("id", "room")},
                          separators=(",", ":"))
        # KEYS[4] (the outbox on one Redis) is never written here: an empty webhook list.
        keys = [room_key(room, "messages"), room_key(room, "seq"),
                room_key(room, f"idem:{idempotency_key or ''}"), room_key(room, "unused"), room_key(room, "epoch")]
        ts = int(message.get("ts", now * 1000))
        args = [body, ts, retention.max_messages, int((now - retention.max_age) * 1000),
                int(retention.idempotency_ttl * 1000), "1" if idempotency_key else "0", "[]", room]
        # The script may only SPUBLISH on its room's slot: other audiences (a direct room's, on
        # the main channel) are broadcast by the caller once the append returns.
        if self.wait_replicas or (announce is not None
                                  and key_slot(announce.channel.encode()) != key_slot(keys[1].encode())):
            announce = None
        args += ([announce.channel, announce.prefix, announce.suffix, json.dumps(room)] if announce
                 else ["", "", "", ""])
        args.append(new_epoch())
        if not self.wait_replicas:
            duplicate, message_id, stored, epoch = self._run_append(keys, args)
            replicas = None
        else:
            duplicate, message_id, stored, epoch, replicas = self._append_and_wait(room, keys, args)
        if webhooks:
            self._queue_hooks(room, int(message_id), webhooks, int(json.loads(stored).get("ts", ts)),
                              bool(duplicate), idempotency_key and int(retention.idempotency_ttl * 1000))
        if replicas is not None and replicas < self.wait_replicas:
            raise NotReplicated(f"{replicas} of {self.wait_replicas} replica(s) confirmed the message "
                                f"within {self.wait_timeout_ms} ms")
        appended = decode_message(room, int(message_id), stored, decode_epoch(epoch))
        if replicas is None:
            return Appended(appended, duplicate=bool(duplicate), published=announce is not None and not duplicate)
        return Appended(appended, duplicate=bool(duplicate), broadcast_repeat=bool(duplicate))

    def _append_and_wait(self, room: str, keys: list[str], args: list[Any]) -> tuple[Any, ...]:
        """The append and a WAIT on one connection to the master of the room's shard.

        A slot that moved (MOVED) or a master that is gone fails the call (StoreUnavailable, with
        a slot-map refresh): the client's retry goes where the room is now.
        """
        cluster: RedisCluster = self._redis
        node = cluster.get_node_from_key(keys[1])
        # WAIT counts the writes of its own connection: both go to that master, pipelined.
        with cluster.get_redis_connection(node).pipeline(transaction=False) as pipe:
            self._append(keys=keys, args=args, client=pipe)
            pipe.wait(self.wait_replicas, self.wait_timeout_ms)
            (duplicate, message_id, stored, epoch), replicas = pipe.execute()
        return duplicate, message_id, stored, epoch, replicas

    def lost_connection(self) -> None:
        """A call failed on a node: its shard may have a new master, so read the slot map again."""
        self._refresh_slots()

    def _refresh_slots(self) -> None:
        """Re-read the cluster's slot map, at most every SLOT_REFRESH seconds (best effort: a
        cluster mid-failover may not answer yet, and the next failed call tries again)."""
        now = time.monotonic()
        if now - self._refreshed < SLOT_REFRESH:
            return
        self._refreshed = now
        try:
            self._redis.nodes_manager.initialize()
        except Exception:  # no seed answers now; a later failed call refreshes again
            pass

    def _queue_hooks(self, room: str, message_id: int, webhooks: Any, created_at: int, duplicate: bool,
                     marker_ttl_ms: int | None) -> None:
        """Queue the message.created deliveries of one message (ids as the single-Redis script makes them).

        With an idempotency key, a marker in the room's slot says they were queued: a repeat queues
        them only when its first try stopped between the append and here.
        """
        marker = room_key(room, f"hooked:{message_id}")
        if duplicate and (not marker_ttl_ms or self._redis.exists(marker)):
            return
        with self._redis.pipeline(transaction=False) as pipe:
            for number, endpoint in enumerate(webhooks):
                hook = {"id": f"msg-{room}-{message_id}-{number}", "endpoint": endpoint,
                        "event": "message.created", "created_at": created_at,
                        "ref": {"room": room, "id": message_id}}
                pipe.xadd(self.WEBHOOKS, {"d": json.dumps(hook)})
            pipe.execute()
        if marker_ttl_ms:
            self._redis.set(marker, 1, px=marker_ttl_ms)

    def _entries_with_epoch(self, room: str, read: Any) -> tuple[list, str | None]:
        """As on one Redis (a same-slot transaction); the cluster's transaction leaves entries raw."""
        entries, epoch = super()._entries_with_epoch(room, read)
        return [(entry_id, fields if isinstance(fields, dict) else dict(zip(fields[::2], fields[1::2])))
                for entry_id, fields in entries], epoch

    def _take_one(self, quota: Quota) -> None:
        """Take one quota on its subject's slot (OverLimit when it is used up)."""
        answer = self._take(keys=[self.limit_key(quota)], args=[quota.limit, quota.window, quota.weight])
        if answer[0]:
            raise OverLimit(quota, answer[0] / 1000)

    @unavailable_on_error
    def add_connection(self, instance_id, sid, user, quota=None):
        """Track one connection on a replica (the quota first: another slot)."""
        if quota is not None:
            self._take_one(quota)
        self._connect(keys=[f"rt:instance:{instance_id}:connections"],
                      args=[sid, json.dumps(user), self._connection_ttl_ms])

    @unavailable_on_error
    def presence_join(self, room, instance_id, sid, user):
        """Record a connection in a room; True if it is the user's first there."""
        # The room set first: a replica that dies between the two leaves nothing it cannot clear.
        self._redis.sadd(f"rt:instance:{instance_id}:rooms", room)
        count = self._presence_join(keys=presence_keys(room),
                                    args=[f"{instance_id}|{sid}", json.dumps(user), user["id"], room])
        return count == 1

    @unavailable_on_error
    def join_room(self, room, instance_id, sid, user, since, limit, quota=None):
        """A connection enters a room: the quota, the replica's room set, then one script on the room's slot."""
        if quota is not None:
            self._take_one(quota)
        self._redis.sadd(f"rt:instance:{instance_id}:rooms", room)
        return joined(room, self._join(keys=join_keys(room), args=join_args(room, instance_id, sid, user, since,
                                                                            limit)), quota)

    @unavailable_on_error
    def remove_instance(self, instance_id):
        """Forget a replica and its connections (one key per command: they live on several slots)."""
        with self._redis.pipeline(transaction=False) as pipe:
            for key in (f"rt:instance:{instance_id}", f"rt:instance:{instance_id}:connections",
                        f"rt:instance:{instance_id}:rooms"):
                pipe.delete(key)
            pipe.zrem(self.INSTANCES, instance_id)
            pipe.execute()

    @unavailable_on_error
    def revoke_token(self, jti, ttl):
        """Deny a token id for `ttl` seconds, then tell every replica's mirror (PUBLISH reaches every node)."""
        ttl_ms = max(1, int(ttl * 1000))
        self._redis.set(f"rt:revoked:{jti}", 1, px=ttl_ms)
        self._redis.publish(self.REVOCATIONS, f"{ttl_ms} {jti}")

    @unavailable_on_error
    def uninvite(self, room, user_id):
        """Take a user's invitation back, then tell every replica."""
        removed = self._redis.srem(room_key(room, "invited"), user_id)
        self._redis.publish(self.ACCESS_CHANGES, json.dumps({"uninvited": user_id, "room": room}))
        return bool(removed)

    @unavailable_on_error
    def all_figures(self):
        """Every replica's current figures, by replica id (their keys live on several slots)."""
        ids = [i.decode() for i in self._redis.zrange(self.INSTANCES, 0, -1)]
        values = self._redis.mget_nonatomic([f"rt:figures:{i}" for i in ids]) if ids else []
        return {i: json.loads(v) for i, v in zip(ids, values) if v is not None}

    @unavailable_on_error
    def used_memory(self):
        """used_memory summed over the shards' masters, in bytes."""
        answers = self._redis.info("memory", target_nodes=RedisCluster.PRIMARIES)
        if "used_memory" in answers:  # a single-master cluster answers with one dict
            return int(answers["used_memory"])
        return sum(int(info.get("used_memory", 0)) for info in answers.values())

    @unavailable_on_error
    def take(self, quota, *more):
        """Count a hit of each quota, all or none (one subject's quotas share a slot)."""
        quotas = (quota, *more)
        answer = self._take(keys=[self.limit_key(q) for q in quotas],
                            args=[value for q in quotas for value in (q.limit, q.window, q.weight)])
        if answer[0]:
            raise OverLimit(quotas[int(answer[1]) - 1], answer[0] / 1000)
