"""Group commit (store/groupcommit.py) against a real Redis, from a gevent-patched process as a
replica is: concurrent appends share pipelines, yet each keeps its own reply, ids, order,
idempotency, quota and deadline."""
from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PROBE = Path(__file__).with_name("groupcommit_probe.py")
ROOT = Path(__file__).resolve().parents[2]


def probe(scenario: str, url: str, *args: str) -> dict:
    """Run one scenario of the probe; its observations."""
    done = subprocess.run([sys.executable, str(PROBE), scenario, url, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_concurrent(seen: dict) -> None:
    """Every append acked once, ids contiguous per room, each sender's messages in its order."""
    assert seen["calls"] == 1000
    assert seen["batches"] < seen["calls"] / 10  # they did share pipelines
    check_stored(seen)


def check_stored(seen: dict) -> None:
    """Ids contiguous per room, each sender's in its order, history exactly what was acked."""
    for sender, sent in seen["sent"].items():
        ids = [message_id for _, message_id, _ in sent]
        assert ids == sorted(ids), sender  # a sender's later message has a later id
    for room, history in seen["history"].items():
        assert [message_id for message_id, _ in history] == list(range(1, len(history) + 1)), room
        acked = sorted((m_id, body) for sent in seen["sent"].values() for r, m_id, body in sent if r == room)
        assert [tuple(entry) for entry in history] == acked, room  # acked means stored, as acked


def test_concurrent_appends_share_pipelines_and_keep_ids_and_order(redis_url):
    check_concurrent(probe("concurrent", redis_url))


def test_concurrent_appends_on_redis_cluster(redis_cluster_url):
    check_concurrent(probe("concurrent", redis_cluster_url))


def test_a_pipeline_after_redis_forgot_the_script_loads_it_and_runs_every_call(redis_url):
    seen = probe("noscript", redis_url)
    check_stored(seen["first"])
    check_stored(seen["second"])  # the second history includes the first's messages, then its own
    assert sum(len(sent) for sent in seen["second"]["sent"].values()) == 40
    assert seen["batches"] < seen["calls"]  # they went as pipelines


def test_a_script_that_fails_fails_only_its_own_send(redis_url):
    seen = probe("one_fails", redis_url)
    assert seen["batch_delta"] == 1 and seen["call_delta"] == 21  # one turn, one pipeline
    results = seen["results"]
    assert results[10][0] == "error" and results[10][1] == "ResponseError"
    good = results[:10] + results[11:]
    assert [r[0] for r in good] == ["ok"] * 20
    assert [r[1] for r in good] == list(range(1, 21))  # queue order is id order
    assert seen["history"] == [f"u:{n}" for n in range(20)]


def test_repeats_of_one_client_id_in_one_pipeline_are_one_message(redis_url):
    seen = probe("repeats", redis_url)
    assert seen["firsts"][0] == [1, False]
    assert all(first == [1, True] for first in seen["firsts"][1:])
    assert seen["later"] == [1, True]
    assert seen["history"] == [1]


def test_a_quota_refusal_in_a_pipeline_writes_nothing(redis_url):
    seen = probe("over_quota", redis_url)
    assert [r[:2] for r in seen["results"]] == [["ok", 1], ["ok", 2], ["ok", 3]] + [["error", "OverLimit"]] * 3
    assert seen["history"] == [1, 2, 3]


def test_deadline_holds_while_redis_is_stopped(redis_url):
    bound = 1.0
    seen = probe("hung", redis_url, str(bound))
    # Sent before Redis could answer: may have happened (the client retries with its client_id).
    assert all(r == ["unavailable", "Expired", True] for r in seen["results"])
    # The bound of each caller's own deadline, with slack for a loaded machine: never the socket
    # timeout (5 s), and the later callers (a shorter deadline) not held by the first pipeline.
    assert max(seen["took"][:20]) < bound + 1.0
    assert max(seen["took"][20:]) < bound / 2 + 1.0
    # Retried with the same client_ids once Redis is back: each message once.
    assert all(r[0] == "ok" for r in seen["retried"])
    assert Counter(seen["history"]) == Counter(f"u:{n}" for n in range(40))
