"""The message queue on a real Redis Cluster (3 masters, 3 replicas): sharded channels, failover.

As in test_room_subscriptions.py, the manager's listener runs in a thread and membership changes go
through basic_enter_room/basic_leave_room.
"""
from __future__ import annotations

import json
import time

import pytest
import redis
import socketio

from realtime.mq import queue_for
from realtime.mq.clusterqueue import RedisClusterQueue
from realtime.mq.sequencer import Sequencer
from realtime.store import Announcement, Retention, StoreUnavailable, create_redis
from realtime.store.rediscluster import RedisClusterStore

from test_room_subscriptions import Replica, ThreadServer, wait_until

CHANNEL = "rt-shards"
KEEP = Retention(max_messages=1000, max_age=3600, idempotency_ttl=60)


class ClusterReplica(Replica):
    """test_room_subscriptions' Replica on a RedisClusterQueue; it can deliver to local members."""

    @staticmethod
    def make_queue(url, **options):
        queue = queue_for(url, CHANNEL, retry_max=0.2, socket_timeout=2.0, **options)
        assert isinstance(queue, RedisClusterQueue)
        return queue

    def dispatch(self, data):
        if data.get("method") == "emit":
            self.received.append(data)
            if isinstance(self.queue.server, DeliveringServer):
                self.queue._handle_emit(data)

    def member(self, sid, room):
        self.queue.basic_enter_room(sid, "/chat", None, eio_sid="e-" + sid)
        self.queue.basic_enter_room(sid, "/chat", room)


class DeliveringServer(ThreadServer):
    """Records the ids of the `message` events the manager sends its local connections."""
    packet_class = socketio.packet.Packet

    def __init__(self):
        self.delivered: list[int] = []

    def _send_eio_packet(self, eio_sid, eio_packet):
        event, data = json.loads(eio_packet.data[eio_packet.data.index("["):])
        if event == "message":
            self.delivered.append(data["id"])


@pytest.fixture
def cluster_client(redis_cluster_url):
    client = create_redis(redis_cluster_url)
    yield client
    client.close()


@pytest.fixture
def replica(redis_cluster_url, cluster_client):
    started = []

    def start(**options):
        made = ClusterReplica(redis_cluster_url, **options)
        started.append(made)
        return made.listen()
    yield start
    for made in started:
        made.stopping.set()
    try:
        cluster_client.spublish(CHANNEL, "{}")  # wakes each listener, which then returns
    except Exception:  # a test left the main channel's shard failing over: the threads are daemons
        pass
    for made in started:
        made.thread.join(5)


def shard_subscribers(cluster, client, channel):
    """PUBSUB SHARDNUMSUB of `channel` on the master that owns its slot."""
    node = cluster.master_of(channel)
    with redis.Redis(host=node.host, port=node.port) as direct:
        return direct.execute_command("PUBSUB", "SHARDNUMSUB", channel)[1]


def test_a_room_channel_hashes_to_the_rooms_slot(redis_cluster_url):
    queue = queue_for(redis_cluster_url, CHANNEL, write_only=True)
    channel = queue.room_channel("/chat", "lobby")
    assert channel == f"{CHANNEL}:room:/chat:{{lobby}}"
    from redis.crc import key_slot
    assert key_slot(channel.encode()) == key_slot(b"rt:room:{lobby}:messages")


def test_the_first_member_ssubscribes_on_the_rooms_shard_before_the_join_returns(
        replica, redis_cluster, cluster_client):
    one = replica()
    one.member("sid-1", "lobby")
    channel = one.queue.room_channel("/chat", "lobby")
    assert one.queue.rooms_wanted.wanted[channel].ready.is_set()
    assert shard_subscribers(redis_cluster, cluster_client, channel) == 1
    assert cluster_client.spublish(channel, json.dumps({"method": "emit", "n": 1})) == 1
    wait_until(lambda: one.received)
    one.queue.basic_leave_room("sid-1", "/chat", "lobby")
    wait_until(lambda: shard_subscribers(redis_cluster, cluster_client, channel) == 0)


def test_room_emits_reach_only_replicas_with_a_member(replica, redis_cluster_url):
    rooms = ["alpha", "bravo", "charlie", "delta"]  # several slots, so several shards
    one, two = replica(), replica()
    for n, room in enumerate(rooms):
        one.member(f"a{n}", room)
    two.member("b0", "alpha")
    sender = queue_for(redis_cluster_url, CHANNEL, write_only=True)
    for room in rooms:
        sender.emit("notice", {"room": room}, namespace="/chat", room=room)
    sender.emit("notice", {"room": "everyone"}, namespace="/chat")  # the main channel
    wait_until(lambda: len(one.received) == 5 and len(two.received) == 2)
    assert sorted(e["data"][0]["room"] for e in two.received) == ["alpha", "everyone"]


def test_the_append_script_announces_on_the_rooms_shard(replica, cluster_client):
    one = replica()
    one.member("sid-1", "news")
    store = RedisClusterStore(cluster_client)
    channel = one.queue.room_channel("/chat", "news")
    announce = Announcement(channel, '{"method": "emit", "event": "message", "data": [',
                            '], "namespace": "/chat", "room": "news", "host_id": "elsewhere"}')
    message = {"type": "text", "body": "hi", "ts": int(time.time() * 1000)}
    appended = store.append_message("news", message, None, KEEP, announce=announce)
    assert appended.published
    wait_until(lambda: one.received)
    assert one.received[0]["data"][0]["id"] == appended.message["id"]


def promoted(cluster, old, key="rt:room:{failover}:seq"):
    """Whether another node serves `key`'s slot now."""
    try:
        return cluster.master_of(key) is not old
    except LookupError:  # between the failure and the promotion no master serves it
        return False


def test_a_shard_failover_loses_no_acknowledged_message(replica, redis_cluster, cluster_client,
                                                        redis_cluster_url):
    """Kill the master of a room's slot: the replica is promoted, the listener subscribes on it and
    catches up; with WAIT 1 every acknowledged message is there, and reaches the member."""
    store = RedisClusterStore(cluster_client, wait_replicas=1, wait_timeout=1.0)
    one = replica()
    one.queue.sequencer = Sequencer(lambda room, after, limit: store.messages_after(room, after, limit),
                                    lambda room: store.room_state(room)[1:])
    one.queue.server = server = DeliveringServer()
    delivered = server.delivered
    one.member("sid-1", "failover")
    acknowledged = []
    sender = queue_for(redis_cluster_url, CHANNEL, write_only=True)

    def send(n):
        message = {"type": "text", "body": str(n), "ts": int(time.time() * 1000)}
        appended = store.append_message("failover", message, f"k{n}", KEEP)
        sender.emit("message", appended.message, namespace="/chat", room="failover")
        acknowledged.append(appended.message["id"])

    for n in range(5):
        send(n)
    wait_until(lambda: len(delivered) >= 5)
    master = redis_cluster.master_of("rt:room:{failover}:seq")
    master.kill()
    try:
        refused = []
        deadline = time.monotonic() + 30
        n = 5
        while len(acknowledged) < 15 and time.monotonic() < deadline:
            if not master.running() and promoted(redis_cluster, master):
                master.start()  # promoted its replica: back as the new master's replica (WAIT 1 again)
            try:
                send(n)
                n += 1
            except StoreUnavailable as refusal:  # `unavailable` while the shard fails over: a retry
                refused.append(refusal)
                time.sleep(0.2)
        assert len(acknowledged) == 15, f"sends did not succeed again within 30 s ({refused[-3:]})"
        assert refused, "the failover refused sends meanwhile"
        wait_until(lambda: one.queue.subscriptions > 1, 30)
        wait_until(lambda: set(acknowledged) <= set(delivered), 30)
        assert store.messages_after("failover", 0, 100)[-1]["id"] == acknowledged[-1]
        assert sorted(set(delivered)) == sorted(delivered), "nothing delivered twice"
    finally:
        if not master.running():
            master.start()
        wait_until(redis_cluster.healthy, 30)


def test_the_revocation_feed_hears_every_node(cluster_client):
    """Revocations and uninvitations are plain PUBLISH: the feed, on one node, hears them all."""
    from realtime.store import Uninvited, UserCutoff
    store = RedisClusterStore(cluster_client)
    feed = store.revocation_feed()
    try:
        assert next(feed) is None  # subscribed
        store.revoke_token("jti-1", 60)
        assert next(feed) == ("jti-1", 60.0)
        assert store.is_revoked("jti-1")
        store.invite("secret", "bob")
        assert store.uninvite("secret", "bob") is True
        assert next(feed) == Uninvited("secret", "bob")
        store.revoke_user("ana", 1000.0, 60)
        cutoff = next(feed)
        assert isinstance(cutoff, UserCutoff) and cutoff.user == "ana"
        assert set(store.revoked_tokens()) == {"jti-1"} and set(store.revoked_users()) == {"ana"}
    finally:
        feed.close()


def test_leaving_and_entering_again_keeps_the_listener_on(replica, cluster_client):
    one = replica()
    rounds = one.queue.subscriptions
    for _ in range(5):
        one.member("sid-1", "churn")
        one.queue.basic_leave_room("sid-1", "/chat", "churn")
    one.member("sid-1", "churn")
    channel = one.queue.room_channel("/chat", "churn")
    cluster_client.spublish(channel, json.dumps({"method": "emit", "n": "after"}))
    wait_until(lambda: one.received)
    assert one.queue.subscriptions == rounds, "no start-over for our own unsubscribes"


def test_a_slot_moved_away_makes_the_listener_follow_it(replica, redis_cluster, cluster_client):
    """Migrate the room's slot to another master: Redis drops the shard channel; the listener
    subscribes it on the new owner and messages flow again."""
    one = replica()
    one.member("sid-1", "moving")
    channel = one.queue.room_channel("/chat", "moving")
    rounds = one.queue.subscriptions
    source = redis_cluster.master_of(channel)
    target = next(n for n in redis_cluster.nodes if n is not source and n.running()
                  and redis_cluster.cli(n, "role").startswith("master"))
    slot = int(redis_cluster.cli(source, "cluster", "keyslot", channel).strip())
    # As redis-cli --cluster reshard moves it (IMPORTING first, so the new owner bumps its config
    # epoch): a bare SETSLOT NODE leaves the masters disagreeing for a while, and a listener
    # bounced between them by MOVED.
    redis_cluster.move_slot(slot, target)
    wait_until(lambda: one.queue.subscriptions > rounds, 15)
    wait_until(lambda: one.queue.rooms_wanted.wanted[channel].ready.is_set(), 15)
    cluster_client.nodes_manager.initialize()
    cluster_client.spublish(channel, json.dumps({"method": "emit", "n": "moved"}))
    wait_until(lambda: any(e.get("n") == "moved" for e in one.received))


def test_a_message_published_into_a_failing_shard_is_caught_up_from_the_stream(
        replica, redis_cluster, cluster_client):
    """A message stored (WAIT 1: on the replica) whose announcement never reached the listener:
    after the master is killed and its replica promoted, the listener's start-over catches it up
    from the history, with no later message to reveal the gap."""
    store = RedisClusterStore(cluster_client, wait_replicas=1, wait_timeout=1.0)
    one = replica()
    one.queue.sequencer = Sequencer(lambda room, after, limit: store.messages_after(room, after, limit),
                                    lambda room: store.room_state(room)[1:])
    one.queue.server = server = DeliveringServer()
    one.member("sid-1", "silent")
    one.queue.sequencer.note("silent", 0)
    message = {"type": "text", "body": "never announced", "ts": int(time.time() * 1000)}
    stored = store.append_message("silent", message, "k-silent", KEEP).message  # no emit
    key = "rt:room:{silent}:seq"
    master = redis_cluster.master_of(key)
    master.kill()
    try:
        wait_until(lambda: promoted(redis_cluster, master, key), 30)
        wait_until(lambda: server.delivered == [stored["id"]], 30)
    finally:
        if not master.running():
            master.start()
        wait_until(redis_cluster.healthy, 30)
