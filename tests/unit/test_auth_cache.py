"""Hot-path caches of authorization: verified tokens, the revocation mirror, invitations."""
from __future__ import annotations

import time

import jwt as pyjwt
import pytest
from flask_jwt_extended import decode_token

from realtime.auth import Verifier
from realtime.errors import AppError, AuthError
from realtime.services.access import AccessPolicy
from realtime.services.revocations import Revocations
from realtime.store.memory import MemoryStore

SECRET = "unit-test-secret-that-is-long-enough-0123456789"  # tests/unit/conftest.py's


class CountingStore(MemoryStore):
    """The in-memory store, counting the lookups the caches are meant to save."""

    def __init__(self):
        super().__init__()
        self.asked = {"is_revoked": 0, "is_invited": 0}

    def is_revoked(self, jti):
        self.asked["is_revoked"] += 1
        return super().is_revoked(jti)

    def is_invited(self, room, user_id):
        self.asked["is_invited"] += 1
        return super().is_invited(room, user_id)


class FedStore(CountingStore):
    """A store whose revocation feed is a list the test fills (the Redis one is tested for real)."""

    def __init__(self, events):
        super().__init__()
        self.events = events

    def revocation_feed(self):
        return iter(self.events)


def test_a_token_is_verified_once_and_its_principal_reused(app, token):
    verifier = Verifier(None)
    jwt = token("Ana")
    with app.app_context():
        first = verifier.verify(jwt)
    second = verifier.verify(jwt)  # no app context: a hit does not decode
    assert second is first and (verifier.misses, verifier.hits) == (1, 1)


def test_a_cached_token_is_checked_again_once_it_expires(app, token):
    now = [0.0]
    verifier = Verifier(None, clock=lambda: now[0])
    jwt = token("Ana")
    with app.app_context():
        principal = verifier.verify(jwt)
        now[0] = principal.exp  # the cache no longer vouches for it
        verifier.verify(jwt)
    assert verifier.misses == 2


def test_revocation_is_checked_on_every_call_even_when_cached(app, token):
    store = CountingStore()
    revocations = Revocations(store)
    verifier = Verifier(revocations)
    jwt = token("Ana")
    with app.app_context():
        jti = decode_token(jwt)["jti"]
        verifier.verify(jwt)
    revocations.revoke(jti, 60)
    with pytest.raises(AuthError) as refused:
        verifier.verify(jwt)
    assert refused.value.to_dict()["reason"] == "revoked"


def test_invalid_tokens_are_never_cached(app, token):
    verifier = Verifier(None)
    forged = token("Ana")[:-4] + "AAAA"
    with app.app_context():
        for _ in range(2):
            with pytest.raises(AuthError):
                verifier.verify(forged)
    assert not verifier.verified and verifier.hits == 0


def test_the_cache_is_bounded_least_recently_used_first(app, token):
    verifier = Verifier(None, size=2)
    a, b, c = token("Ana"), token("Bob"), token("Cy")
    with app.app_context():
        verifier.verify(a)
        verifier.verify(b)
        verifier.verify(a)  # a is now the most recent
        verifier.verify(c)  # b goes
        verifier.verify(a)
        verifier.verify(b)
    assert len(verifier.verified) == 2 and verifier.misses == 4


def test_size_zero_verifies_every_time(app, token):
    verifier = Verifier(None, size=0)
    jwt = token("Ana")
    with app.app_context():
        verifier.verify(jwt)
        verifier.verify(jwt)
    assert verifier.hits == 0 and not verifier.verified


def test_without_a_feed_revocations_are_asked_of_the_store():
    store = CountingStore()
    revocations = Revocations(store)
    revocations.follow()  # the memory store has no feed: returns at once
    assert revocations.is_revoked("j") is False and store.asked["is_revoked"] == 1
    store.revoke_token("j", 60)  # e.g. by another process on the same store
    assert revocations.is_revoked("j") is True


def test_a_synced_mirror_answers_from_memory_and_applies_the_feed():
    store = CountingStore()
    store.revoke_token("early", 60)
    revocations = Revocations(store)
    told, reloaded = [], []
    revocations.listeners.append(told.append)
    revocations.resynced.append(lambda: reloaded.append(revocations.synced))
    seen = []

    def feed():
        for event in [None, ("late", 60.0)]:
            yield event
            seen.append(revocations.synced)
            # While the feed is live, answers come from memory: no store lookup.
            assert revocations.is_revoked("early") is True
            assert store.asked["is_revoked"] == 0
    store.revocation_feed = feed
    revocations.follow()
    assert seen == [True, True] and reloaded == [True]
    assert told == ["late"]
    # The feed ended (in production: failed): unsynced, so the store is asked again.
    assert revocations.synced is False
    assert revocations.is_revoked("late") is False and store.asked["is_revoked"] == 1


def test_a_broken_feed_unsyncs_the_mirror():
    store = CountingStore()

    def feed():
        yield None
        raise ConnectionError("gone")
    store.revocation_feed = feed
    revocations = Revocations(store)
    with pytest.raises(ConnectionError):
        revocations.follow()
    assert revocations.synced is False


def test_mirror_off_never_follows():
    store = FedStore([None])
    revocations = Revocations(store, mirror=False)
    revocations.follow()
    assert revocations.synced is False


def test_mirror_entries_expire_with_the_token():
    now = [1000.0]
    revocations = Revocations(MemoryStore(), clock=lambda: now[0])
    revocations.synced = True
    revocations.apply("j", 5)
    assert revocations.is_revoked("j") is True
    now[0] += 6
    assert revocations.is_revoked("j") is False
    now[0] += 120
    revocations.prune()
    assert revocations.revoked == {}


class User:
    def __init__(self, id, rooms=(), roles=()):
        self.id, self.rooms, self.roles = id, frozenset(rooms), frozenset(roles)

    def has_role(self, role):
        return role in self.roles


def test_a_known_invitation_is_not_asked_again_but_a_refusal_is():
    store = CountingStore()
    policy = AccessPolicy(store)
    with pytest.raises(AppError):
        policy.check(User("ana"), "private-x")
    store.invite("private-x", "ana")  # e.g. through another replica: counts at once
    assert policy.check(User("ana"), "private-x") == "private-x"
    assert policy.check(User("ana"), "private-x") == "private-x"
    assert store.asked["is_invited"] == 2
    policy.forget_invitations()
    policy.check(User("ana"), "private-x")
    assert store.asked["is_invited"] == 3


def test_claims_and_admin_need_no_lookup():
    store = CountingStore()
    policy = AccessPolicy(store)
    policy.check(User("ana", rooms=["private-x"]), "private-x")
    policy.check(User("boss", roles=["admin"]), "private-x")
    assert store.asked["is_invited"] == 0


def test_revoking_closes_the_tokens_live_connections(app, token, chat, client):
    jwt = token("Ana")
    other = chat("Bob")
    victim = chat("Ana", auth={"token": jwt})
    with app.app_context():
        jti = decode_token(jwt)["jti"]
    admin = token("Root", roles=["admin"])
    answer = client.post("/api/admin/revocations", json={"jti": jti},
                         headers={"Authorization": f"Bearer {admin}"})
    assert answer.status_code == 201
    # (the test client drops what a closed connection received: the real-client test checks the
    # `token_revoked` notice, tests/integration/test_security.py)
    assert not victim.is_connected("/chat")
    assert other.is_connected("/chat")
    refused = chat("Ana", auth={"token": jwt})
    assert not refused.is_connected("/chat")


def test_revoking_closes_an_admin_dashboard_connection(app, token, client):
    from realtime.extensions import socketio
    admin = token("Root", roles=["admin"])
    with app.app_context():
        jti = decode_token(admin)["jti"]
    dashboard = socketio.test_client(app, namespace="/admin", auth={"token": admin})
    assert dashboard.is_connected("/admin")
    other_admin = token("Boss", roles=["admin"])
    answer = client.post("/api/admin/revocations", json={"jti": jti},
                         headers={"Authorization": f"Bearer {other_admin}"})
    assert answer.status_code == 201
    assert not dashboard.is_connected("/admin")


def test_a_token_that_is_not_valid_unicode_is_refused_not_a_crash(app):
    verifier = Verifier(None)
    with app.app_context(), pytest.raises(AuthError):
        verifier.verify("abc\ud800.def.ghi")


def raw_token(sub="ana", **claims):
    """An HS256 token signed with the unit tests' secret; a claim given as None is left out."""
    now = int(time.time())
    claims = {k: v for k, v in {"sub": sub, "type": "access", "exp": now + 60, "iat": now, **claims}.items()
              if v is not None}
    return pyjwt.encode(claims, SECRET, algorithm="HS256")


def refusal(app, verifier, token):
    """The reason a token is refused."""
    with app.app_context(), pytest.raises(AuthError) as refused:
        verifier.verify(token)
    return refused.value.to_dict()["reason"]


def test_a_token_living_longer_than_the_maximum_is_refused(app):
    now = int(time.time())
    verifier = Verifier(None, max_lifetime=3600)
    assert refusal(app, verifier, raw_token(exp=now + 10 * 365 * 86400)) == "lifetime_too_long"
    assert refusal(app, verifier, raw_token(iat=now - 7200, exp=now + 60)) == "lifetime_too_long"
    assert refusal(app, verifier, raw_token(exp=now + 7200, iat=None)) == "lifetime_too_long"
    with app.app_context():
        assert verifier.verify(raw_token(exp=now + 3000)).id == "ana"
        assert Verifier(None).verify(raw_token(exp=now + 10 * 365 * 86400)).id == "ana"  # 0: unbounded


def test_a_token_naming_an_audience_is_refused_when_none_is_configured(app):
    assert refusal(app, Verifier(None), raw_token(aud="someone-else")) == "bad_claims"


def test_a_users_revocation_refuses_older_tokens_even_cached_ones(app):
    store = MemoryStore()
    verifier = Verifier(Revocations(store))
    now = int(time.time())
    old, fresh, undated = raw_token(iat=now - 30), raw_token(iat=now + 5), raw_token(iat=None)
    with app.app_context():
        verifier.verify(old)  # cached from here on
    store.revoke_user("ana", now, 60)
    assert refusal(app, verifier, old) == "revoked"
    assert refusal(app, verifier, undated) == "revoked"  # no iat: counts as issued before
    with app.app_context():
        assert verifier.verify(fresh).iat == now + 5
        assert verifier.verify(raw_token("bo", iat=now - 30)).id == "bo"


def test_taking_an_invitation_back_is_seen_at_once(app):
    store = CountingStore()
    policy = AccessPolicy(store)
    told = []
    policy.uninvited.append(lambda room, user: told.append((room, user)))
    store.invite("private-x", "ana")
    assert policy.check(User("ana"), "private-x") == "private-x"  # remembered
    assert policy.uninvite(User("lead", rooms=["private-x"]), "private-x", "ana") is True
    assert told == [("private-x", "ana")]
    with pytest.raises(AppError):
        policy.check(User("ana"), "private-x")


def test_nobody_invites_themselves_and_outsiders_cannot_uninvite():
    policy = AccessPolicy(CountingStore())
    with pytest.raises(AppError) as refused:
        policy.invite(User("ana", rooms=["private-x"]), "private-x", "ana")
    assert refused.value.code == "forbidden"
    with pytest.raises(AppError) as refused:
        policy.uninvite(User("eve"), "private-x", "ana")
    assert refused.value.code == "forbidden"


def test_an_untrusted_cache_asks_the_store():
    store = CountingStore()
    policy = AccessPolicy(store)
    store.invite("private-x", "ana")
    policy.check(User("ana"), "private-x")
    policy.trusted = lambda: False  # e.g. the revocation feed is down
    policy.check(User("ana"), "private-x")
    assert store.asked["is_invited"] == 2
