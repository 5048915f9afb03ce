"""The revocation mirror on a real Redis: feed, snapshot, a lost link, and two replicas' mirrors.

test_redis_cluster_tokens.py runs these tests again on the session's Redis Cluster: its
`redis_url` is the cluster's URL and its `redis_server` stops and starts the whole cluster.
"""
from __future__ import annotations

import threading

import pytest

from chatclient import wait_until
from realtime.services.revocations import Revocations
from realtime.store import StoreUnavailable, create_redis, is_cluster_client, redis_store
from realtime.store.redis import RedisStore
from realtime.store.rediscluster import RedisClusterStore

pytestmark = pytest.mark.integration


class Stoppable:
    """A store whose feed ends at its next event once the test stops following."""

    following = True

    def revocation_feed(self):
        for event in super().revocation_feed():
            if not self.following:
                return
            yield event


def stoppable_store(url: str):
    """The store for `url` (one Redis or a cluster), with a feed the test can end."""
    client = create_redis(url, socket_timeout=2)
    base = RedisClusterStore if is_cluster_client(client) else RedisStore
    return type(f"Stoppable{base.__name__}", (Stoppable, base), {})(client)


def pools(client) -> list:
    """Every connection pool of a client (one per node on a cluster)."""
    if is_cluster_client(client):
        return [node.redis_connection.connection_pool for node in client.get_nodes() if node.redis_connection]
    return [client.connection_pool]


def kill_pubsub_links(client) -> None:
    """CLIENT KILL TYPE pubsub on the Redis, or on every node of a cluster."""
    if is_cluster_client(client):
        for node in client.get_nodes():
            client.get_redis_connection(node).client_kill_filter(_type="pubsub")
    else:
        client.client_kill_filter(_type="pubsub")


class Following:
    """A replica's mirror following the feed in a thread, run again whenever the feed ends."""

    def __init__(self, url: str):
        self.store = stoppable_store(url)
        self.revocations = Revocations(self.store)
        self.reloads = 0
        self.revocations.resynced.append(self.count_reload)
        self.running = True
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        wait_until(lambda: self.revocations.synced, timeout=10)

    def count_reload(self):
        self.reloads += 1

    def run(self):
        while self.running:
            try:
                self.revocations.follow()
            except StoreUnavailable:
                pass
            except (OSError, ValueError):  # after stop(): the connection shut under the feed's read
                if self.running:
                    raise

    def stop(self):
        """End the thread now: shutting the pool's connections down ends the feed's blocking read
        too (closing the client alone did not, and the thread then logged into a closed stream
        when the session's Redis went away). The client's retries may reconnect the feed at once
        instead; it then re-subscribes, and that event ends it."""
        self.running = self.store.following = False
        for pool in pools(self.store.client):
            pool.disconnect()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive(), "the mirror's thread did not end"
        self.store.client.close()


@pytest.fixture
def replicas(redis_url):
    followers = [Following(redis_url), Following(redis_url)]
    yield followers
    for follower in followers:
        follower.stop()


def test_a_revocation_reaches_the_other_replicas_mirror(replicas):
    a, b = replicas
    told = []
    b.revocations.listeners.append(told.append)
    a.revocations.revoke("j1", 60)
    wait_until(lambda: told == ["j1"], timeout=5)
    assert b.revocations.is_revoked("j1") and not b.revocations.is_revoked("j2")
    # Answered from memory: the key gone from Redis does not change the answer while synced.
    a.store.client.delete("rt:revoked:j1")
    assert b.revocations.is_revoked("j1")


def test_a_new_mirror_loads_what_was_revoked_before(redis_url):
    store = redis_store(create_redis(redis_url))
    store.revoke_token("old", 60)
    late = Following(redis_url)
    try:
        assert late.revocations.revoked.keys() == {"old"}
        assert late.revocations.is_revoked("old")
    finally:
        late.stop()
        store.client.close()


def test_after_a_lost_link_the_mirror_reloads_what_it_missed(replicas, redis_url):
    a, b = replicas
    raw = create_redis(redis_url)
    # A revocation whose message b never gets: written without the publish.
    raw.set("rt:revoked:missed", 1, px=60_000)
    assert not b.revocations.is_revoked("missed")
    reloads = b.reloads
    kill_pubsub_links(raw)  # both mirrors lose their subscription
    wait_until(lambda: b.reloads > reloads and b.revocations.synced, timeout=10)
    assert b.revocations.is_revoked("missed")
    a.revocations.revoke("after", 60)  # and the feed works again
    wait_until(lambda: b.revocations.is_revoked("after"), timeout=5)
    raw.close()


def test_without_redis_the_mirror_is_not_trusted(redis_server, redis_url):
    follower = Following(redis_url)
    try:
        redis_server.stop()
        wait_until(lambda: not follower.revocations.synced, timeout=10)
        # Unsynced, a check goes to the store, which cannot answer: refused, never "not revoked".
        with pytest.raises(StoreUnavailable):
            follower.revocations.is_revoked("any")
    finally:
        redis_server.start()
        follower.stop()


def test_user_revocations_and_uninvitations_reach_the_other_replica(replicas, redis_url):
    a, b = replicas
    users, uninvited = [], []
    b.revocations.user_listeners.append(lambda user, before: users.append((user, before)))
    b.revocations.uninvite_listeners.append(lambda room, user: uninvited.append((room, user)))
    a.revocations.revoke_user("ana", 1234.5, 60)
    a.store.uninvite("private-x", "bo")
    wait_until(lambda: users == [("ana", 1234.5)] and uninvited == [("private-x", "bo")], timeout=5)
    assert b.revocations.revoked_before("ana") == 1234.5 and b.revocations.revoked_before("bo") is None
    late = Following(redis_url)  # a mirror started afterwards loads the user's entry too
    try:
        assert late.revocations.users["ana"][0] == 1234.5
    finally:
        late.stop()
