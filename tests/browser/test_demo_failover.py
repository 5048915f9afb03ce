"""In a real browser: a user whose replica dies comes back on another one and misses nothing, also
when Redis lost its data meanwhile (ids start again from 1); the dashboard shows a dead replica as
gone, and says when Redis is down."""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

pytestmark = [pytest.mark.integration, pytest.mark.nginx, pytest.mark.browser]


def in_order(*texts: str) -> list[re.Pattern]:
    """`to_have_text` patterns: exactly these messages, in this order, each once."""
    return [re.compile(re.escape(text)) for text in texts]


def test_offline_user_recovers_missed_messages_once_on_another_replica(open_user, nginx_cluster,
                                                                        room):
    alice, bob = open_user("alice", 0), open_user("bob", 1)
    for user in (alice, bob):
        user.join(room)
    alice.send_text("before the outage")
    expect(bob.message("before the outage")).to_be_visible()

    # Bob goes offline: his replica dies, and his browser cannot reconnect until he is back.
    dead = nginx_cluster.replicas[1]
    bob.context.set_offline(True)
    dead.kill()
    expect(bob.status).to_have_text("reconnecting")
    bob.send_text("written while offline")  # kept in the outbox until the connection is back
    missed = [f"missed {n}" for n in range(1, 4)]
    for text in missed:
        alice.send_text(text)
    expect(alice.messages).to_have_text(in_order("before the outage", *missed))
    expect(bob.message("missed 1")).to_have_count(0)

    bob.context.set_offline(False)
    expect(bob.status).to_have_text("connected")
    survivors = [r.instance_id for r in nginx_cluster.replicas if r is not dead]
    expect(bob.replica).to_have_text(re.compile("^(" + "|".join(survivors) + ")$"))
    expect(alice.replica).to_have_text(nginx_cluster.replicas[0].instance_id)

    everything = in_order("before the outage", *missed, "written while offline")
    expect(bob.messages).to_have_text(everything)
    expect(alice.messages).to_have_text(everything)


def test_after_redis_lost_its_data_the_new_messages_with_small_ids_are_shown(open_user, nginx_cluster,
                                                                             room):
    alice, bob = open_user("alice", 0), open_user("bob", 1)
    for user in (alice, bob):
        user.join(room)
    before = [f"before {n}" for n in range(1, 4)]  # ids 1..3 of the first history
    for text in before:
        alice.send_text(text)
    expect(bob.messages).to_have_text(in_order(*before))

    # Bob is away (his replica dies too); Redis restarts without persistence: everything is gone.
    dead = nginx_cluster.replicas[1]
    bob.context.set_offline(True)
    dead.kill()
    expect(bob.status).to_have_text("reconnecting")
    nginx_cluster.redis.stop()
    nginx_cluster.redis.start()
    after = [f"after {n}" for n in range(1, 6)]  # ids 1..5 again, in a new history
    for text in after:
        alice.send_text(text)
    # Alice's page forgets the lost history as soon as the new one shows up.
    expect(alice.messages).to_have_text(in_order(*after), timeout=20_000)

    # Bob comes back with "seen up to 3" of the old history: he is given the new one, all of it.
    bob.context.set_offline(False)
    expect(bob.status).to_have_text("connected")
    expect(bob.messages).to_have_text(in_order(*after))
    alice.send_text("live again")
    expect(bob.messages).to_have_text(in_order(*after, "live again"))


def test_dashboard_shows_a_killed_replica_gone(open_dashboard, nginx_cluster):
    dashboard = open_dashboard(0)
    ids = [r.instance_id for r in nginx_cluster.replicas]
    for instance_id in ids:
        expect(dashboard.replica_row(instance_id)).to_contain_text("up")
    expect(dashboard.live_count).to_have_text("3")

    victim = nginx_cluster.replicas[2]
    victim.kill()
    # Gone once its registry entry expires (the cluster's instance TTL), then listed as such.
    gone = dashboard.replica_row(victim.instance_id)
    expect(gone).to_contain_text("gone", timeout=(nginx_cluster.instance_ttl + 20) * 1000)
    expect(dashboard.live_count).to_have_text("2")
    expect(dashboard.gone_count).to_have_text("1 gone")
    for instance_id in ids[:2]:
        expect(dashboard.replica_row(instance_id)).to_contain_text("up")


def test_dashboard_says_when_redis_is_down(open_dashboard, nginx_cluster):
    dashboard = open_dashboard(1)
    banner = dashboard.page.get_by_role("alert").filter(has_text="Redis is down")
    expect(dashboard.redis_state).to_have_text("OK")
    nginx_cluster.redis.stop()
    expect(banner).to_be_visible()
    expect(dashboard.redis_state).to_have_text("DOWN")
    nginx_cluster.redis.start()
    expect(dashboard.redis_state).to_have_text("OK")
    expect(banner).to_be_hidden()
