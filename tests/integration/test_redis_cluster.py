"""Three real gunicorn replicas on a real Redis Cluster (3 masters + 3 replicas, redis+cluster://).

The delivery, recovery, idempotency, presence, counts and emitter tests of the single-Redis suites
run here again, unchanged, against the cluster: this module's `cluster` fixture puts the replicas
on the session's Redis Cluster (`.redis.url` is its redis+cluster:// URL).
"""
from __future__ import annotations

import secrets
import threading
import time

import pytest
import requests

from chatclient import wait_until
from clusterfixtures import Cluster, replica_env
from realtime.devcluster import Replica, free_ports, stop_all

# The single-Redis tests, collected again here with this module's fixtures.
from test_cluster_delivery import (test_cli_emit_from_a_plain_process,  # noqa: F401
                                   test_counts_are_cluster_wide_and_pushed,
                                   test_external_emitter_reaches_every_replica_and_is_persisted,
                                   test_message_reaches_members_on_every_replica,
                                   test_missed_messages_are_recovered_on_another_replica)
from test_messaging import (test_idempotent_resend_on_another_replica,  # noqa: F401
                            test_presence_across_replicas_and_after_sigkill,
                            test_private_messages_stay_private_across_replicas,
                            test_receipts_and_unread_across_replicas,
                            test_reconnect_elsewhere_gets_exactly_the_missed_then_live,
                            test_typing_reaches_other_replicas_and_stops_on_disconnect)

pytestmark = pytest.mark.integration


class ClusterRedis:
    """The Redis Cluster as the `cluster` fixture's `.redis`: `.url`, and what heal() calls."""

    def __init__(self, nodes):
        self.nodes = nodes

    @property
    def url(self) -> str:
        """The redis+cluster:// URL."""
        return self.nodes.url

    def running(self) -> bool:
        """Every node runs."""
        return all(node.running() for node in self.nodes.nodes)

    def start(self, wait: bool = True, timeout: float = 30.0) -> None:
        """Start the nodes a test stopped."""
        for node in self.nodes.nodes:
            if not node.running():
                node.start(wait=wait, timeout=timeout)

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until the cluster is whole again."""
        wait_until(self.nodes.healthy, timeout)


@pytest.fixture(scope="module")
def cluster(redis_cluster, tmp_path_factory, system_executable, start_processes):
    """3 replicas on the session's Redis Cluster, shared by this module's tests."""
    from realtime.store import create_redis
    from redis.cluster import RedisCluster
    client = create_redis(redis_cluster.url)
    client.flushall(target_nodes=RedisCluster.PRIMARIES)
    client.close()
    workdir = tmp_path_factory.mktemp("cluster-on-redis-cluster")
    secret = secrets.token_urlsafe(32)
    # Every append waits for a replica of its shard: the failover test counts on it.
    env = {**replica_env(redis_cluster.url, secret, workdir), "REALTIME_REDIS_WAIT_REPLICAS": "1"}
    replicas = [Replica(port, env, workdir / "logs", instance_id=f"replica-{n}")
                for n, port in enumerate(free_ports(3))]
    try:
        start_processes(*replicas)
        yield Cluster(ClusterRedis(redis_cluster), replicas, secret)
    finally:
        stop_all(replicas)


def test_the_replicas_are_ready_on_the_cluster(cluster):
    for replica in cluster.replicas:
        assert requests.get(replica.url + "/readyz", timeout=5).json() == {"status": "ready",
                                                                           "store": "redis-cluster"}


def test_rooms_on_every_shard_reach_members_on_every_replica(connect):
    rooms = [f"shard-{n}" for n in range(8)]  # spread over the three masters' slots
    clients = [connect(i, f"spread{i}") for i in range(3)]
    for client in clients:
        for room in rooms:
            assert client.call("join", {"room": room})["ok"] is True
    sent = [clients[n % 3].call("send", {"room": room, "body": room})["message"] for n, room in enumerate(rooms)]
    for client in clients:
        for message in sent:
            assert client.wait_for("message", lambda m, room=message["room"]: m["room"] == room) == message


def test_http_rate_limits_live_on_the_cluster(cluster):
    """flask-limiter counts on the cluster (limits' RedisClusterStorage): the headers say so."""
    response = requests.get(cluster.replicas[0].url + "/api/rooms/general/messages", timeout=5,
                            headers={"Authorization": "Bearer " + cluster.token("limited")})
    assert response.status_code == 200
    assert "X-RateLimit-Limit" in response.headers
    from realtime.store import create_redis
    client = create_redis(cluster.redis.url)
    try:
        assert any(b"rt-http" in key for key in client.scan_iter(match="*rt-http*"))
    finally:
        client.close()


def test_a_burst_in_one_room_arrives_once_and_in_order_everywhere(connect):
    sender = connect(0, "burster")
    readers = [connect(i, f"reader{i}") for i in (1, 2)]
    for client in (sender, *readers):
        client.call("join", {"room": "burst"})
    stream = threading.Thread(target=lambda: [sender.call("send", {"room": "burst", "body": str(n)})
                                              for n in range(100)])
    stream.start()
    stream.join(60)
    for reader in readers:
        wait_until(lambda reader=reader: len(reader.bodies("burst")) >= 100, 30)
        assert reader.bodies("burst") == [str(n) for n in range(100)]


def promoted(nodes, old, key):
    """Whether another node serves `key`'s slot now (False while none does)."""
    try:
        return nodes.master_of(key) is not old
    except LookupError:
        return False


def test_a_shard_master_killed_loses_no_acknowledged_message(cluster, redis_cluster, connect):
    """REDIS_WAIT_REPLICAS=1: kill the master of the room's slot mid-stream. Sends meanwhile are
    refused (`unavailable`, within the bound) and succeed on retry; every acknowledged message is
    in the history and reaches the member on another replica once, in order."""
    room = "failover"
    writer, reader = connect(0, "writer"), connect(2, "reader")
    for client in (writer, reader):
        client.call("join", {"room": room})
    acknowledged, refused = [], []

    def send(n):
        started = time.monotonic()
        ack = writer.call("send", {"room": room, "body": str(n), "client_id": f"f-{n}"})
        if ack["ok"]:
            acknowledged.append(ack["message"])
            return True
        assert ack["error"]["code"] == "unavailable", ack
        refused.append(time.monotonic() - started)
        return False

    for n in range(5):
        assert send(n)
    master = redis_cluster.master_of(f"rt:room:{{{room}}}:seq")
    master.kill()
    n, deadline = 5, time.monotonic() + 60
    try:
        while n < 20 and time.monotonic() < deadline:
            if not master.running() and promoted(redis_cluster, master, f"rt:room:{{{room}}}:seq"):
                master.start()  # back as the promoted master's replica: WAIT 1 can be met again
            if send(n):
                n += 1  # a refused send is retried with the same client_id
            else:
                time.sleep(0.2)
        assert n == 20, f"sends did not succeed again in time ({len(refused)} refused)"
        assert refused and max(refused) < 10, "refused within the bound"
        page = requests.get(cluster.replicas[1].url + f"/api/rooms/{room}/messages?limit=100",
                            headers={"Authorization": "Bearer " + cluster.token("auditor")}, timeout=10)
        stored = page.json()["messages"]
        assert [m["body"] for m in acknowledged] == [str(k) for k in range(20)]
        assert {m["id"] for m in acknowledged} <= {m["id"] for m in stored}
        wait_until(lambda: set(reader.bodies(room)) >= {str(k) for k in range(20)}, 30)
        bodies = reader.bodies(room)
        assert bodies == sorted(set(bodies), key=int), "each message once, in order"
    finally:
        if not master.running():
            wait_until(lambda: promoted(redis_cluster, master, f"rt:room:{{{room}}}:seq"), 30)
            master.start()
        wait_until(redis_cluster.healthy, 30)
