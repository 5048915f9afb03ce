"""Registry heartbeat, reaping a dead replica, and restoring after a lost registration."""
import time

from realtime.auth import Principal
from realtime.services import ClusterService, PresenceService
from realtime.store.memory import MemoryStore

ANA, BO = {"id": "ana", "name": "Ana"}, {"id": "bo", "name": "Bo"}
ANA_TOKEN = Principal("ana", "Ana", int(time.time()) + 3600)


def replica(store, instance_id, ttl=30.0):
    """A replica's cluster and presence services, recording what it broadcasts."""
    sent = []
    broadcast = lambda event, data, to, skip_sid=None: sent.append((event, data, to))  # noqa: E731
    return ClusterService(store, instance_id, ttl), PresenceService(store, broadcast, instance_id), sent


def test_first_beat_registers_and_later_beats_refresh():
    store = MemoryStore()
    cluster, _, _ = replica(store, "r1")
    assert cluster.heartbeat() is True
    assert cluster.heartbeat() is False
    assert [i["id"] for i in store.list_instances()] == ["r1"]


def test_dead_replicas_presence_is_reaped_by_one_survivor():
    store = MemoryStore()
    dying, dying_presence, _ = replica(store, "dying", ttl=0.2)
    survivor, survivor_presence, sent = replica(store, "survivor")
    other, _, _ = replica(store, "other")
    for service in (dying, survivor, other):
        service.heartbeat()
    dying.connected("s1", ANA_TOKEN)
    dying_presence.joined("s1", ANA, "lobby")
    survivor_presence.joined("s2", BO, "lobby")
    time.sleep(0.3)
    claimed = survivor.claim_expired()
    assert claimed == ["dying"] and other.claim_expired() == []
    assert survivor_presence.reap("dying") == 1
    assert ("presence", {"room": "lobby", "user": ANA, "online": False}, "lobby") in sent
    assert ("typing", {"room": "lobby", "user": ANA, "typing": False, "expires_in": 0}, "lobby") in sent
    assert store.online("lobby") == [BO]
    assert [i["id"] for i in store.list_instances()] == ["other", "survivor"]


def test_lost_registration_restores_connections_and_presence():
    store = MemoryStore()
    cluster, presence, _ = replica(store, "r1", ttl=0.2)
    cluster.heartbeat()
    cluster.connected("s1", ANA_TOKEN)
    presence.joined("s1", ANA, "lobby")
    time.sleep(0.3)
    # Another replica reaped us while we could not beat (e.g. Redis was unreachable).
    _, reaper, _ = replica(store, "r2")
    store.claim_expired_instances()
    reaper.reap("r1")
    assert store.online("lobby") == [] and store.list_instances() == []
    assert cluster.heartbeat() is True
    presence.restore()
    assert store.online("lobby") == [ANA]
    assert store.list_instances()[0]["clients"] == 1


def test_a_connections_rooms_are_kept_once_each_until_it_leaves_them():
    store = MemoryStore()
    _, presence, sent = replica(store, "r1")
    presence.joined("s1", ANA, "lobby")
    presence.joined("s1", ANA, "lobby")  # a repeated join keeps one entry
    presence.joined("s1", ANA, "news")
    assert presence.local["s1"] == (("ana", "Ana"), ("lobby", "news"))  # tuples: kept per connection
    presence.left("s1", "lobby")
    assert presence.local["s1"] == (("ana", "Ana"), ("news",))
    presence.restore()
    assert store.online("news") == [ANA] and store.online("lobby") == []
    presence.disconnected("s1")
    assert "s1" not in presence.local and store.online("news") == []
    assert ("presence", {"room": "news", "user": ANA, "online": False}, "news") in sent


def test_reaping_a_dead_replica_keeps_users_still_connected_elsewhere(store):
    # Every backend: presence counts a user's connections per room; the users online are kept
    # beside those counts, and the dead replica's entries leave both.
    dying, dying_presence, _ = replica(store, "dying", ttl=0.2)
    survivor, survivor_presence, sent = replica(store, "survivor")
    for service in (dying, survivor):
        service.heartbeat()
    dying_presence.joined("s1", ANA, "lobby")   # Ana on both replicas
    survivor_presence.joined("s2", ANA, "lobby")
    dying_presence.joined("s3", BO, "lobby")    # Bo only on the one that dies
    time.sleep(0.3)
    assert survivor.claim_expired() == ["dying"]
    assert survivor_presence.reap("dying") == 1  # Bo went offline, Ana did not
    assert [data["user"] for event, data, _ in sent if event == "presence" and not data["online"]] == [BO]
    assert store.online("lobby") == [ANA]
    survivor_presence.disconnected("s2")
    assert store.online("lobby") == []
