"""A Redis that hangs (alive, not answering): SIGSTOP for 10 s under 60 steady senders, then SIGCONT.

Every send must be acknowledged within REALTIME_EVENT_TIMEOUT (an `unavailable` ack while Redis
does not answer), retried with the same client_id until it is `ok`; every `ok` message must reach
every member of its room and be in history once; `/readyz` of every replica must answer within 1 s
throughout (503 while Redis hangs); and the replicas must come back by themselves, without a pile
of greenlets or Redis connections left behind.
"""
from __future__ import annotations

import logging
import re
import signal
import threading
import time
from pathlib import Path

import engineio.payload
import pytest
import requests

from chatclient import wait_until
from faultstream import Stream
from realtime.settings import DEFAULTS
from realtime.store import create_redis
from realtime.store.redis import RedisStore
from test_faults import report

pytestmark = [pytest.mark.integration, pytest.mark.nginx]

ROOMS, PER_ROOM = 6, 10  # 60 clients, each one sending; 10 members per room
BOUND = DEFAULTS["EVENT_TIMEOUT"]
SLACK = 1.5  # transport, polling and a loaded 2-core machine, on top of the server's bound
HANG = 10.0
SOURCES = [f"127.0.2.{n}" for n in range(1, ROOMS * PER_ROOM + 1)]


class ReadyzPoller(threading.Thread):
    """GET /readyz of every replica, a 1 s client timeout each, until stopped; every outcome kept."""

    def __init__(self, replicas):
        super().__init__(name="readyz-poller", daemon=True)
        self.replicas = replicas
        self.samples: list[tuple[float, str, object, float]] = []  # (at, replica, status, seconds)
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            for replica in self.replicas:
                at = time.monotonic()
                try:
                    outcome: object = requests.get(replica.url + "/readyz", timeout=1).status_code
                except requests.RequestException as exc:
                    outcome = type(exc).__name__
                self.samples.append((at, replica.name, outcome, time.monotonic() - at))
            self.stopping.wait(0.25)

    def stop(self) -> None:
        self.stopping.set()
        self.join(timeout=5)


def metric(replica, name: str) -> float:
    """One unlabelled gauge of a replica's /metrics."""
    text = requests.get(replica.url + "/metrics", timeout=5).text
    return float(re.search(rf"^{name} (\S+)$", text, re.M).group(1))


def established(port: int) -> int:
    """Established TCP connections to `port` on this machine (client side), from /proc/net/tcp."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "01" and int(fields[2].rsplit(":", 1)[1], 16) == port:
            count += 1
    return count


class ClientLog(logging.Handler):
    """Keeps the socket.io clients' warnings (why a client dropped its connection)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        for name in ("engineio.client", "socketio.client"):
            logging.getLogger(name).setLevel(logging.WARNING)
            logging.getLogger(name).addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name}: {record.getMessage()}"[:200])

    def close(self) -> None:
        for name in ("engineio.client", "socketio.client"):
            logging.getLogger(name).removeHandler(self)
        super().close()


def percentile(values: list[float], fraction: float) -> float:
    """The value below which `fraction` of `values` lie (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else 0.0


@pytest.fixture
def long_polls(monkeypatch):
    """Let the test's clients take a long poll of many packets, as a browser does.

    python-engineio's client drops its connection when one polling response holds more than 16
    packets; a room's retried sends landing together after the hang (and everything else queued
    for a client meanwhile) can exceed that.
    """
    monkeypatch.setattr(engineio.payload.Payload, "max_decode_packets", 1000)


def test_redis_hangs_for_ten_seconds(cluster, long_polls):
    started = time.monotonic()
    client_log = ClientLog()
    streams = [Stream(cluster, f"hang{k}", readers=0, senders=PER_ROOM,
                      sources=SOURCES[k * PER_ROOM:(k + 1) * PER_ROOM], interval=1.0,
                      ack_timeout=BOUND + 2 * SLACK) for k in range(ROOMS)]
    senders = [s for stream in streams for s in stream.senders]
    store = RedisStore(create_redis(cluster.redis.url))
    poller = ReadyzPoller(cluster.replicas)
    port = cluster.redis.port
    try:
        for stream in streams:
            stream.start()
        poller.start()
        time.sleep(3)
        greenlets_before = [metric(r, "realtime_greenlets") for r in cluster.replicas]
        links_before = established(port)
        cluster.redis.signal(signal.SIGSTOP)
        stopped_at = time.monotonic() + 0.05  # a PING already under way may still be answered
        links_hung = []
        try:
            while time.monotonic() - stopped_at < HANG:
                time.sleep(1)
                links_hung.append(established(port))
            greenlets_hung = [metric(r, "realtime_greenlets") for r in cluster.replicas]
        finally:
            cluster.redis.signal(signal.SIGCONT)
        resumed_at = time.monotonic()
        wait_until(lambda: all(s.log.ack_times and s.log.ack_times[-1][0] > resumed_at for s in senders),
                   timeout=20)
        time.sleep(2)
        for stream in streams:
            stream.stop()
        poller.stop()
        missing = {stream.room: stream.wait_caught_up(timeout=15) for stream in streams}
        greenlets_after = [metric(r, "realtime_greenlets") for r in cluster.replicas]
        links_after = established(port)
        history = {stream.room: store.messages_after(stream.room, 0, 100_000) for stream in streams}
    finally:
        cluster.redis.signal(signal.SIGCONT)  # whatever failed above, Redis runs again
        poller.stop()
        for stream in streams:
            stream.close()
        store.client.close()
        client_log.close()

    latencies = [t for s in senders for t in s.log.latencies]
    errors: dict[str, int] = {}
    for sender in senders:
        for code, count in sender.log.errors.items():
            errors[code] = errors.get(code, 0) + count
    hung = [(name, status, round(seconds, 2)) for at, name, status, seconds in poller.samples
            if stopped_at < at and at + seconds < resumed_at]  # asked and answered while Redis hung
    slowest_readyz = max(seconds for *_, seconds in poller.samples)
    stored_twice = {room: sorted({m["client_id"] for m in messages if
                                  sum(n["client_id"] == m["client_id"] for n in messages) > 1})
                    for room, messages in history.items()}
    acked = {cid: mid for s in senders for cid, mid in s.log.acked.items()}
    stored = {m["client_id"]: m["id"] for messages in history.values() for m in messages}
    seen_twice = sum(1 for s in senders if len({m["client_id"] for m in s.seen.values()}) != len(s.seen))
    report("Redis hangs (SIGSTOP) for 10 s", clients=len(senders), sends_acked_ok=len(acked),
           send_calls=len(latencies), errors=errors, outcome_unknown=sum(len(s.log.outcomes) for s in senders),
           ack_p50_s=round(percentile(latencies, 0.5), 3), ack_p99_s=round(percentile(latencies, 0.99), 3),
           ack_max_s=round(max(latencies), 3), readyz_samples=len(poller.samples),
           readyz_max_s=round(slowest_readyz, 3),
           readyz_while_hung=sorted({status for _, status, _ in hung}, key=str),
           reconnects=sum(len(s.epochs) - 1 for s in senders),
           greenlets_before_hung_after=[greenlets_before, greenlets_hung, greenlets_after],
           redis_links_before_hung_after=[links_before, links_hung, links_after],
           unanswered=[(s.name, round(at - stopped_at, 2), what) for s in senders for at, what in s.log.failures],
           client_warnings=client_log.lines[:10], test_seconds=round(time.monotonic() - started, 1))

    assert all(r.running() for r in cluster.replicas), "a replica died while Redis hung"
    assert set(errors) <= {"unavailable"}, \
        f"sends without an ack within {BOUND + 2 * SLACK} s, or refused otherwise: {errors}"
    assert max(latencies) <= BOUND + SLACK, f"an ack took {max(latencies):.2f} s (bound {BOUND} s)"
    assert errors.get("unavailable", 0) > 0, "no send was refused while Redis hung"
    assert hung and all(status == 503 for _, status, _ in hung), f"readyz while Redis hung: {hung}"
    assert slowest_readyz < 1.0, f"a readyz took {slowest_readyz:.2f} s"
    assert not any(missing.values()), f"acknowledged messages missing (room: client: ids): {missing}"
    assert not any(stored_twice.values()), f"a client_id stored twice: {stored_twice}"
    assert all(stored.get(cid) == mid for cid, mid in acked.items()), "an acked message is not in history"
    assert seen_twice == 0, "a client saw one client_id under two ids"
    # Nothing piles up while Redis hangs: a connection interrupted by the time bound is dropped,
    # so the links to Redis stay about one per event in flight (at most one per client) plus the
    # replicas' own loops, and do not grow with the length of the hang. Afterwards the greenlets
    # are back to what they were.
    assert max(links_hung) <= links_before + len(senders) + 20, (links_before, links_hung)
    half = len(links_hung) // 2
    assert max(links_hung[half:]) <= max(links_hung[:half]) + 15, links_hung
    assert links_after <= links_before + len(senders), (links_before, links_after)
    for before, after in zip(greenlets_before, greenlets_after):
        assert after <= before + 30, (greenlets_before, greenlets_after)
