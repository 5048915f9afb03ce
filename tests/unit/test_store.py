"""One contract, run against both backends (Redis is a real redis-server)."""
from __future__ import annotations

import json
import time

import pytest

from realtime.store import OverLimit, Quota, Retention, StoreUnavailable, create_redis, create_store
from realtime.store.memory import MemoryStore
from realtime.store.redis import RedisStore

KEEP = Retention(max_messages=1000, max_age=3600, idempotency_ttl=60)


def text(body: str, ts: int | None = None) -> dict:
    """A message as the service hands it to the store."""
    return {"from": {"id": "ana", "name": "Ana"}, "type": "text", "body": body,
            "ts": ts if ts is not None else int(time.time() * 1000)}


def ids(messages):
    return [m["id"] for m in messages]


def test_ids_are_monotonic_per_room(store):
    first = store.append_message("a", text("1"), None, KEEP).message
    second = store.append_message("a", text("2"), None, KEEP).message
    other = store.append_message("b", text("x"), None, KEEP).message
    assert (first["id"], second["id"], other["id"]) == (1, 2, 1)
    assert second == {**text("2", second["ts"]), "id": 2, "room": "a", "epoch": first["epoch"]}


def test_idempotency_key_returns_the_original(store):
    first = store.append_message("a", text("hello"), "ana:k1", KEEP)
    again = store.append_message("a", text("changed"), "ana:k1", KEEP)
    assert (first.duplicate, again.duplicate) == (False, True)
    assert again.message == first.message
    assert ids(store.messages_after("a", 0, 10)) == [1]


def test_same_key_in_another_room_is_independent(store):
    store.append_message("a", text("x"), "ana:k1", KEEP)
    assert store.append_message("b", text("y"), "ana:k1", KEEP).duplicate is False


def test_pages_after_and_before(store):
    for n in range(10):
        store.append_message("r", text(str(n)), None, KEEP)
    assert ids(store.messages_after("r", 0, 3)) == [1, 2, 3]
    assert ids(store.messages_after("r", 8, 5)) == [9, 10]
    assert ids(store.messages_before("r", None, 3)) == [8, 9, 10]
    assert ids(store.messages_before("r", 4, 5)) == [1, 2, 3]
    assert store.messages_before("r", 1, 5) == []
    assert store.messages_after("empty", 0, 5) == []


def test_bounds(store):
    assert store.room_bounds("r") == (0, 0)
    for n in range(3):
        store.append_message("r", text(str(n)), None, KEEP)
    assert store.room_bounds("r") == (1, 3)


def lose_history(store, room: str, *parts: str):
    """The store after a data loss: Redis loses the room's keys (`parts`, default all); memory, its process."""
    if isinstance(store, MemoryStore):
        return MemoryStore()
    from realtime.store.redis import room_key
    store.client.delete(*(room_key(room, part) for part in parts or ("messages", "seq", "epoch")))
    return store


def test_epoch_is_made_with_the_first_id_and_stays(store):
    assert store.room_state("r") == (0, 0, None)
    first = store.append_message("r", text("1"), None, KEEP).message
    epoch = first["epoch"]
    assert isinstance(epoch, str) and 0 < len(epoch) <= 64
    second = store.append_message("r", text("2"), "ana:k", KEEP).message
    assert store.append_message("r", text("2"), "ana:k", KEEP).message["epoch"] == epoch  # a repeat
    assert second["epoch"] == epoch and store.room_state("r") == (1, 2, epoch)
    assert {m["epoch"] for m in store.messages_after("r", 0, 10) + store.messages_before("r", None, 10)} == {epoch}
    other = store.append_message("s", text("x"), None, KEEP).message
    assert other["epoch"] != epoch
    assert store.room_bounds("r") == (1, 2)


def test_a_lost_history_starts_again_under_a_new_epoch(store):
    before = [store.append_message("r", text(str(n)), None, KEEP).message for n in range(3)]
    store = lose_history(store, "r")
    assert store.room_state("r") == (0, 0, None)
    again = store.append_message("r", text("new"), "ana:k", KEEP).message
    assert again["id"] == 1 and again["epoch"] != before[0]["epoch"]
    assert store.room_state("r") == (1, 1, again["epoch"])


@pytest.mark.parametrize("store", ["redis"], indirect=True)  # memory loses its rooms only with its process
def test_an_epoch_never_outlives_its_counter(store):
    old = store.append_message("r", text("1"), None, KEEP).message["epoch"]
    store.append_message("r", text("2"), None, KEEP)
    lose_history(store, "r", "seq", "messages")  # the epoch key survived (say, evicted apart)
    restarted = store.append_message("r", text("3"), None, KEEP).message
    assert (restarted["id"], restarted["epoch"] != old) == (1, True)
    lose_history(store, "r", "epoch")  # the counter survived: same ids, but a new name for safety
    kept = store.append_message("r", text("4"), None, KEEP).message
    assert kept["id"] == 2 and kept["epoch"] not in (old, restarted["epoch"])
    assert store.room_state("r").epoch == kept["epoch"]


def test_retention_by_count_keeps_ids_growing(store):
    small = Retention(max_messages=3, max_age=3600, idempotency_ttl=60)
    for n in range(5):
        store.append_message("r", text(str(n)), None, small)
    assert ids(store.messages_after("r", 0, 10)) == [3, 4, 5]
    assert store.room_bounds("r") == (3, 5)


def test_retention_by_age(store):
    old = int((time.time() - 100) * 1000)
    for n in range(3):
        store.append_message("r", text(str(n), ts=old), None, KEEP)
    store.append_message("r", text("new"), None, Retention(1000, max_age=50, idempotency_ttl=60))
    assert ids(store.messages_after("r", 0, 10)) == [4]


def test_instances_and_connection_counts(store):
    assert store.register_instance({"id": "i1", "started_at": 1}, ttl=30) is False
    assert store.register_instance({"id": "i1", "started_at": 1}, ttl=30) is True
    store.register_instance({"id": "i2", "started_at": 2}, ttl=30)
    store.add_connection("i1", "s1", {"id": "ana", "name": "Ana"})
    store.add_connection("i1", "s2", {"id": "bo", "name": "Bo"})
    store.add_connection("i2", "s3", {"id": "cy", "name": "Cy"})
    store.remove_connection("i1", "s2")
    assert store.list_instances() == [{"id": "i1", "started_at": 1, "clients": 1},
                                      {"id": "i2", "started_at": 2, "clients": 1}]
    store.remove_instance("i2")
    assert [i["id"] for i in store.list_instances()] == ["i1"]


def test_instance_expires_without_heartbeat(store):
    store.register_instance({"id": "gone", "started_at": 1}, ttl=0.3)
    store.add_connection("gone", "s1", {"id": "ana", "name": "Ana"})
    store.register_instance({"id": "alive", "started_at": 1}, ttl=30)
    time.sleep(0.5)
    assert [i["id"] for i in store.list_instances()] == ["alive"]


def test_replace_connections_restores_counts(store):
    store.register_instance({"id": "i1", "started_at": 1}, ttl=30)
    store.add_connection("i1", "old", {"id": "x", "name": "x"})
    store.replace_connections("i1", {"s1": {"id": "a", "name": "a"}, "s2": {"id": "b", "name": "b"}})
    assert store.list_instances()[0]["clients"] == 2
    store.replace_connections("i1", {})
    assert store.list_instances()[0]["clients"] == 0


def test_ping(store):
    store.ping()


def test_unreachable_redis_raises_store_unavailable():
    store = RedisStore(create_redis("redis://127.0.0.1:1/0", socket_timeout=0.5))
    with pytest.raises(StoreUnavailable):
        store.ping()
    with pytest.raises(StoreUnavailable):
        store.append_message("r", text("x"), None, KEEP)


def test_a_master_refusing_writes_is_unavailable_not_an_error(redis_url):
    client = create_redis(redis_url)
    client.config_set("min-replicas-to-write", 1)  # no replica here: Redis answers NOREPLICAS
    try:
        with pytest.raises(StoreUnavailable, match="NOREPLICAS"):
            RedisStore(client).append_message("r", text("x"), None, KEEP)
    finally:
        client.config_set("min-replicas-to-write", 0)


@pytest.mark.parametrize("url, kind", [(None, "memory"), ("memory://", "memory"),
                                       ("redis://127.0.0.1:1/0", "redis")])
def test_create_store_chooses_by_scheme(url, kind):
    assert create_store(url).name == kind


def test_create_store_refuses_unknown_scheme():
    with pytest.raises(ValueError):
        create_store("postgres://x")


ANA, BO = {"id": "ana", "name": "Ana"}, {"id": "bo", "name": "Bo"}


def test_read_position_moves_forward_only(store):
    for n in range(5):
        store.append_message("r", text(str(n)), None, KEEP)
    assert store.advance_read("r", "ana", 3) == (True, 3)
    assert store.advance_read("r", "ana", 2) == (False, 3)
    assert store.advance_read("r", "bo", 5) == (True, 5)
    assert store.read_positions("r") == {"ana": 3, "bo": 5}
    with pytest.raises(ValueError):
        store.advance_read("r", "ana", 6)


def test_presence_counts_connections_per_user(store):
    assert store.presence_join("r", "i1", "s1", ANA) is True
    assert store.presence_join("r", "i2", "s2", ANA) is False   # second connection, other replica
    assert store.presence_join("r", "i1", "s1", ANA) is False   # same connection again
    assert store.presence_join("r", "i1", "s3", BO) is True
    assert store.online("r") == [ANA, BO]
    assert store.presence_leave("r", "i1", "s1") is None
    assert store.presence_leave("r", "i2", "s2") == ANA
    assert store.presence_leave("r", "i2", "s2") is None
    assert store.online("r") == [BO]


def test_instance_presence_lists_a_replicas_entries(store):
    store.presence_join("a", "i1", "s1", ANA)
    store.presence_join("b", "i1", "s1", ANA)
    store.presence_join("a", "i2", "s9", BO)
    assert store.instance_presence("i1") == [("a", "s1"), ("b", "s1")]


def test_expired_instances_are_claimed_once(store):
    store.register_instance({"id": "dead", "started_at": 1}, ttl=0.2)
    store.register_instance({"id": "live", "started_at": 1}, ttl=30)
    time.sleep(0.4)
    assert store.claim_expired_instances() == ["dead"]
    assert store.claim_expired_instances() == []


def test_conversations_most_recent_first(store):
    store.touch_conversation(["ana", "bo"], "dm:ana:bo", 10)
    store.touch_conversation(["ana", "cy"], "dm:ana:cy", 20)
    assert store.conversations("ana", 10) == ["dm:ana:cy", "dm:ana:bo"]
    assert store.conversations("bo", 10) == ["dm:ana:bo"]
    assert store.conversations("ana", 1) == ["dm:ana:cy"]


def test_claim_is_exclusive_until_it_expires_or_is_released(store):
    assert store.claim("k", 0.3) is True
    assert store.claim("k", 0.3) is False
    store.release("k")
    assert store.claim("k", 0.2) is True
    time.sleep(0.3)
    assert store.claim("k", 1) is True


def test_revoked_tokens_expire_from_the_denylist(store):
    assert store.is_revoked("j1") is False
    store.revoke_token("j1", 0.3)
    assert store.is_revoked("j1") is True and store.is_revoked("j2") is False
    time.sleep(0.4)
    assert store.is_revoked("j1") is False


def test_invitations(store):
    assert store.is_invited("private-x", "ana") is False
    assert store.invite("private-x", "ana") is True
    assert store.invite("private-x", "ana") is False
    assert store.is_invited("private-x", "ana") is True
    assert store.is_invited("private-y", "ana") is False


def test_webhook_queue_claims_reclaims_and_dead_letters(store):
    first = store.enqueue_webhook({"id": "d1", "event": "message.created"})
    store.enqueue_webhook({"id": "d2", "event": "room.joined"})
    claimed = store.claim_webhooks("replica-a", 10, 0.01)
    assert [r["id"] for _, r in claimed] == ["d1", "d2"]
    assert store.claim_webhooks("replica-b", 10, 0.01) == []
    assert store.webhook_backlog() == {"waiting": 0, "in_flight": 2, "dead": 0}
    store.finish_webhook(first)
    time.sleep(0.3)
    # replica-a died holding d2: another replica takes it over after the idle time.
    taken = store.reclaim_webhooks("replica-b", 0.2, 10)
    assert [r["id"] for _, r in taken] == ["d2"]
    store.finish_webhook(taken[0][0])
    store.dead_letter({"id": "d2", "event": "room.joined"})
    assert [r["id"] for r in store.dead_letters(10)] == ["d2"]
    assert store.webhook_backlog() == {"waiting": 0, "in_flight": 0, "dead": 1}
    assert store.replay_dead_letters(10) == 1
    assert store.dead_letters(10) == []
    assert [r["id"] for _, r in store.claim_webhooks("replica-c", 10, 0.01)] == ["d2"]


def test_new_messages_queue_their_webhooks_atomically(store):
    hooks = ("http://a.example/hook", "http://b.example/hook")
    first = store.append_message("r", text("x"), "ana:k", KEEP, webhooks=hooks).message
    store.append_message("r", text("x"), "ana:k", KEEP, webhooks=hooks)  # a duplicate: no new hooks
    records = [r for _, r in store.claim_webhooks("c", 10, 0.01)]
    assert [(r["endpoint"], r["event"], r["ref"]) for r in records] == [
        (hooks[0], "message.created", {"room": "r", "id": first["id"]}),
        (hooks[1], "message.created", {"room": "r", "id": first["id"]})]
    assert records[0]["id"] != records[1]["id"] and records[0]["created_at"] == first["ts"]


def test_figures_are_shared_per_live_replica(store):
    store.register_instance({"id": "r1", "started_at": 1}, ttl=30)
    store.publish_figures("r1", {"id": "r1", "clients": 3}, ttl=30)
    assert store.all_figures() == {"r1": {"id": "r1", "clients": 3}}
    store.publish_figures("r1", {"id": "r1", "clients": 4}, ttl=0.2)
    time.sleep(0.3)
    assert store.all_figures() == {}
    assert store.used_memory() is None or store.used_memory() > 0


def test_revoked_tokens_lists_the_denylist_with_time_left(store):
    assert store.revoked_tokens() == {}
    store.revoke_token("j1", 30)
    store.revoke_token("j2", 0.2)
    time.sleep(0.3)
    listed = store.revoked_tokens()
    assert list(listed) == ["j1"] and 28 < listed["j1"] <= 30


def test_waiting_for_replicas_refuses_what_no_replica_confirmed(redis_url):
    from realtime.store import NotReplicated
    client = create_redis(redis_url)
    lonely = RedisStore(client, wait_replicas=1, wait_timeout=0.05)  # a master without replicas
    try:
        with pytest.raises(NotReplicated):
            lonely.append_message("r", text("unconfirmed"), "ana:c1", KEEP)
        # Stored on the master all the same; its retry is a repeat, refused until confirmed too.
        with pytest.raises(NotReplicated):
            lonely.append_message("r", text("unconfirmed"), "ana:c1", KEEP)
        assert ids(lonely.messages_after("r", 0, 10)) == [1]
        trusting = RedisStore(client)
        repeat = trusting.append_message("r", text("unconfirmed"), "ana:c1", KEEP)
        assert repeat.duplicate and not repeat.broadcast_repeat
    finally:
        client.close()



def test_a_new_message_is_published_with_its_append_and_a_repeat_is_not(redis_url):
    import json

    from realtime.store import Announcement
    client = create_redis(redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe("announced")
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    announce = Announcement("announced", '{"before": [', '], "after": 1}')
    try:
        store = RedisStore(client)
        first = store.append_message('r "1"', text("héllo \u2603"), "ana:k", KEEP, announce=announce)
        again = store.append_message('r "1"', text("héllo \u2603"), "ana:k", KEEP, announce=announce)
        assert first.published and not again.published and again.duplicate
        got = pubsub.get_message(timeout=5)
        # The stored message, id and room spliced in, decodes to exactly what the sender got back.
        assert json.loads(got["data"]) == {"before": [first.message], "after": 1}
        assert pubsub.get_message(timeout=0.3) is None, "a repeat was published again"
        # Appends that wait for replicas leave the broadcast to the caller, after the WAIT.
        waiting = RedisStore(client, wait_replicas=1, wait_timeout=0.05)
        with pytest.raises(Exception):
            waiting.append_message("r2", text("x"), None, KEEP, announce=announce)
        assert pubsub.get_message(timeout=0.3) is None
        assert MemoryStore().append_message("r", text("x"), None, KEEP, announce=announce).published is False
    finally:
        pubsub.close()
        client.close()


def test_a_users_revocation_time_only_moves_forward_and_expires(store):
    assert store.revoked_before("ana") is None and store.revoked_users() == {}
    assert store.revoke_user("ana", 1000.5, 0.4) == 1000.5
    assert store.revoke_user("ana", 900.0, 0.4) == 1000.5  # an earlier time never lifts the first
    assert store.revoked_before("ana") == 1000.5 and store.revoked_before("bo") is None
    (before, left), = store.revoked_users().values()
    assert before == 1000.5 and 0 < left <= 0.4
    time.sleep(0.5)
    assert store.revoked_before("ana") is None and store.revoked_users() == {}


def test_invitations_can_be_taken_back(store):
    assert store.uninvite("private-x", "ana") is False
    store.invite("private-x", "ana")
    store.invite("private-x", "bo")
    assert store.uninvite("private-x", "ana") is True
    assert store.is_invited("private-x", "ana") is False and store.is_invited("private-x", "bo") is True


def test_a_weighted_take_counts_its_weight(store):
    upload = Quota("upload_bytes", "ana", 1000, 60.0, weight=600)
    store.take(upload)
    with pytest.raises(OverLimit) as refused:
        store.take(upload)  # 1200 > 1000
    assert refused.value.quota == upload and 0 < refused.value.retry_after <= 120
    store.take(Quota("upload_bytes", "ana", 1000, 60.0, weight=400))  # exactly the limit
    with pytest.raises(OverLimit):
        store.take(Quota("upload_bytes", "ana", 1000, 60.0, weight=1))


def test_a_weight_above_the_limit_never_fits(store):
    with pytest.raises(OverLimit) as refused:
        store.take(Quota("upload_bytes", "bea", 10, 60.0, weight=11))
    assert refused.value.retry_after > 0
    store.take(Quota("upload_bytes", "bea", 10, 60.0, weight=10))  # nothing was counted


def test_several_quotas_are_taken_all_or_none(store):
    count = Quota("upload", "ana", 5, 60.0)
    size = Quota("upload_bytes", "ana", 100, 60.0, weight=80)
    store.take(count, size)
    with pytest.raises(OverLimit) as refused:
        store.take(count, size)  # the bytes do not fit: the count is not taken either
    assert refused.value.quota == size
    for _ in range(4):
        store.take(count)  # 1 + 4 = 5: the refused take counted nothing
    with pytest.raises(OverLimit) as full:
        store.take(Quota("upload_bytes", "ana", 100, 60.0, weight=1), count)
    assert full.value.quota == count
    store.take(Quota("upload_bytes", "ana", 100, 60.0, weight=20))  # 80 + 20: still all there


def test_online_reads_each_user_once_however_many_connections(redis_url):
    # A join's `online` list must cost the room's users, not its connections: one user with many
    # tabs comes back from Redis once (the join storm of issue 22 read every connection's entry).
    client = create_redis(redis_url)
    client.flushdb()
    store = RedisStore(client)
    for n in range(50):
        store.presence_join("big", f"i{n % 3}", f"s{n}", ANA)
    store.presence_join("big", "i1", "bo", BO)
    sent = []
    client.set_response_callback("EVALSHA", lambda reply, **_: sent.append(reply) or reply)
    assert store.online("big") == [ANA, BO]
    assert len(json.loads(sent[0])) == 2 and len(sent) == 1


def test_join_room_records_presence_and_reads_everything_a_join_ack_needs(store):
    for n in range(5):
        store.append_message("r", text(str(n)), None, KEEP)
    store.advance_read("r", "bo", 2)
    store.presence_join("r", "i2", "s9", BO)
    first = store.join_room("r", "i1", "s1", ANA, since=2, limit=2)
    epoch = store.room_state("r").epoch
    assert first.state == (1, 5, epoch) and first.first is True
    assert first.reads == {"bo": 2} and first.online == [ANA, BO]
    assert ids(first.after) == [3, 4] and all(m["epoch"] == epoch and m["room"] == "r" for m in first.after)
    again = store.join_room("r", "i2", "s2", ANA, since=None, limit=500)  # a second connection of Ana
    assert again.first is False and again.after == [] and again.online == [ANA, BO]
    assert store.join_room("r", "i1", "s1", ANA, since=5, limit=500).after == []  # the same connection again
    assert store.instance_presence("i1") == [("r", "s1")]
    assert store.presence_leave("r", "i1", "s1") is None       # Ana still has s2
    assert store.presence_leave("r", "i2", "s2") == ANA
    assert store.online("r") == [BO]


def test_join_room_of_an_empty_room(store):
    joined = store.join_room("new", "i1", "s1", ANA, since=0, limit=10)
    assert joined.state == (0, 0, None) and joined.first is True and joined.reads == {}
    assert joined.online == [ANA] and joined.after == []


def test_join_room_over_its_quota_writes_nothing(store):
    quota = Quota("join", "ana", 1, 60.0)
    store.join_room("r", "i1", "s1", ANA, since=None, limit=10, quota=quota)
    with pytest.raises(OverLimit) as refused:
        store.join_room("r", "i1", "s2", ANA, since=None, limit=10, quota=quota)
    assert refused.value.quota == quota and refused.value.retry_after > 0
    assert store.instance_presence("i1") == [("r", "s1")]
    assert store.presence_leave("r", "i1", "s1") == ANA  # s2 was never counted
    assert store.online("r") == []


def test_add_connection_over_its_quota_tracks_nothing(store):
    quota = Quota("connect", "127.0.0.1", 2, 60.0)
    store.register_instance({"id": "i1", "started_at": 1}, ttl=30)
    store.add_connection("i1", "s1", ANA, quota)
    store.add_connection("i1", "s2", BO, quota)
    with pytest.raises(OverLimit):
        store.add_connection("i1", "s3", BO, quota)
    store.add_connection("i1", "s4", BO)  # no quota: always tracked
    assert store.list_instances()[0]["clients"] == 3


def test_online_keeps_a_user_until_their_last_connection_leaves(store):
    store.presence_join("r", "i1", "s1", ANA)
    store.presence_join("r", "i2", "s2", {"id": "ana", "name": "Ana B."})  # a renamed second tab
    assert store.online("r") == [{"id": "ana", "name": "Ana B."}]
    assert store.presence_leave("r", "i2", "s2") is None
    assert [u["id"] for u in store.online("r")] == ["ana"]
    assert store.presence_leave("r", "i1", "s1") is not None
    assert store.online("r") == []
    store.presence_join("r", "i1", "s3", ANA)  # back: listed again
    assert store.online("r") == [ANA]


def test_online_lists_users_recorded_before_the_users_hash(redis_url):
    # A rolling upgrade: a replica of the previous version recorded presence without the users
    # hash (members and counts only); `online` and a join still list that user.
    client = create_redis(redis_url)
    client.flushdb()
    store = RedisStore(client)
    client.hset("rt:room:{r}:members", "old|s1", json.dumps(ANA))
    client.hincrby("rt:room:{r}:online", "ana", 1)
    assert store.online("r") == [ANA]
    assert store.join_room("r", "i1", "s2", BO, since=None, limit=10).online == [ANA, BO]
    assert store.presence_leave("r", "old", "s1") == ANA
    assert store.online("r") == [BO]
