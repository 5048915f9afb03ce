"""Outbound webhooks: a durable queue in the store, delivered with timeouts, retries with
backoff and jitter, a circuit breaker per endpoint and a dead-letter list.

Publishing never blocks a handler on the network: it only queues. Every replica runs a worker
that claims deliveries from the shared queue; a delivery claimed by a replica that died is
taken over by another after `reclaim_idle` seconds (same delivery id, so receivers deduplicate).
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import pybreaker
import requests
from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from ..signing import sign

from ..store import Store

log = logging.getLogger(__name__)
EVENTS = ("message.created", "client.connected", "client.disconnected", "room.joined", "room.left")


@dataclass(frozen=True)
class WebhookPolicy:
    """Where deliveries go and how hard to try."""

    endpoints: tuple[str, ...] = ()
    events: frozenset[str] = frozenset(EVENTS)
    secret: str = ""
    connect_timeout: float = 2.0
    read_timeout: float = 5.0
    max_attempts: int = 6
    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    breaker_failures: int = 5
    breaker_reset: float = 30.0
    concurrency: int = 8
    reclaim_idle: float = 300.0

    @property
    def enabled(self) -> bool:
        """Whether any endpoint is configured."""
        return bool(self.endpoints)


class DeliveryFailed(Exception):
    """One attempt did not get a 2xx answer."""


class WebhookPublisher:
    """Queues events for every endpoint that wants them."""

    def __init__(self, store: Store, policy: WebhookPolicy):
        self.store = store
        self.policy = policy

    def message_endpoints(self) -> tuple[str, ...]:
        """Endpoints that get `message.created` (queued by the store with the message itself)."""
        return self.policy.endpoints if "message.created" in self.policy.events else ()

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """Queue `event` for each endpoint; a store outage costs a log line, never the caller."""
        if event not in self.policy.events:
            return
        for endpoint in self.policy.endpoints:
            record = {"id": uuid.uuid4().hex, "endpoint": endpoint, "event": event,
                      "created_at": int(time.time() * 1000), "data": data}
            try:
                self.store.enqueue_webhook(record)
            except Exception as exc:
                log.error("webhook %s for %s not queued: %s", event, endpoint, exc)


class WebhookWorker:
    """Claims deliveries and delivers them; one per replica."""

    def __init__(self, store: Store, policy: WebhookPolicy, consumer: str,
                 spawn: Callable[..., Any], session: requests.Session | None = None):
        self.store = store
        self.policy = policy
        self.consumer = consumer
        self.spawn = spawn
        self.session = session or requests.Session()
        self.session.trust_env = False  # never route deliveries through an ambient proxy
        self.breakers: dict[str, pybreaker.CircuitBreaker] = {}
        self.slots = threading.BoundedSemaphore(policy.concurrency)
        self.outcomes: dict[str, int] = {"delivered": 0, "retried": 0, "dead": 0}
        self.transitions: list[tuple[str, str, str]] = []
        self.last_reclaim = 0.0
        self.stopping = False
        self.in_flight = 0

    def breaker(self, endpoint: str) -> pybreaker.CircuitBreaker:
        """The circuit breaker of one endpoint (per replica)."""
        if endpoint not in self.breakers:
            self.breakers[endpoint] = pybreaker.CircuitBreaker(
                fail_max=self.policy.breaker_failures, reset_timeout=self.policy.breaker_reset,
                name=endpoint, listeners=[BreakerLog(self.transitions)])
        return self.breakers[endpoint]

    def stop(self, timeout: float) -> None:
        """Claim nothing more and wait up to `timeout` for deliveries in flight (drain)."""
        self.stopping = True
        deadline = time.monotonic() + timeout
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.1)
        if self.in_flight:
            log.warning("%d webhook deliveries still in flight; another replica will reclaim them",
                        self.in_flight)

    def step(self) -> int:
        """Claim a batch (taking over stale ones now and then) and start delivering it."""
        if self.stopping:
            time.sleep(1.0)
            return 0
        batch = []
        if time.monotonic() - self.last_reclaim > min(30.0, self.policy.reclaim_idle / 2):
            self.last_reclaim = time.monotonic()
            batch += self.store.reclaim_webhooks(self.consumer, self.policy.reclaim_idle, 50)
        batch += self.store.claim_webhooks(self.consumer, self.policy.concurrency, 1.0)
        for queue_id, record in batch:
            self.slots.acquire()
            self.in_flight += 1
            self.spawn(self.run, queue_id, record)
        return len(batch)

    def run(self, queue_id: str, record: dict[str, Any]) -> None:
        """Deliver one record with retries; dead-letter it if every attempt fails."""
        try:
            self.deliver(record)
            self.outcomes["delivered"] += 1
        except Exception as exc:
            log.warning("webhook %s to %s dead-lettered: %s", record.get("id"), record.get("endpoint"), exc)
            self.store.dead_letter({**record, "error": str(exc)[:500], "failed_at": int(time.time() * 1000)})
            self.outcomes["dead"] += 1
        finally:
            self.slots.release()
            self.in_flight -= 1
        self.store.finish_webhook(queue_id)

    def deliver(self, record: dict[str, Any]) -> None:
        """Attempts with exponential backoff and jitter; an open breaker fails an attempt fast."""
        body = self.body(record)
        backoff = wait_exponential_jitter(self.policy.backoff_initial, self.policy.backoff_max)

        def wait(state: Any) -> float:
            """Backoff with jitter; an open breaker is waited out until it half-opens instead."""
            if isinstance(state.outcome.exception(), pybreaker.CircuitBreakerError):
                return self.policy.breaker_reset
            return backoff(state)
        retrying = Retrying(stop=stop_after_attempt(self.policy.max_attempts), reraise=True, wait=wait,
                            retry=retry_if_exception_type((DeliveryFailed, pybreaker.CircuitBreakerError,
                                                           requests.RequestException)),
                            before_sleep=lambda _state: self.count_retry())
        for attempt in retrying:
            with attempt:
                self.breaker(record["endpoint"]).call(self.post, record, body)

    def count_retry(self) -> None:
        """Counted for the operators' figures."""
        self.outcomes["retried"] += 1

    def body(self, record: dict[str, Any]) -> bytes:
        """The signed JSON body; a message is read from the store (the queue holds a reference)."""
        data = record.get("data")
        if "ref" in record:
            ref = record["ref"]
            found = self.store.messages_after(ref["room"], ref["id"] - 1, 1)
            data = found[0] if found and found[0]["id"] == ref["id"] else {"room": ref["room"], "id": ref["id"]}
        payload = {"id": record["id"], "event": record["event"], "created_at": record["created_at"],
                   "data": data}
        return json.dumps(payload, separators=(",", ":")).encode()

    def post(self, record: dict[str, Any], body: bytes) -> None:
        """One signed POST with connect and read timeouts."""
        timestamp = int(time.time())
        headers = {"Content-Type": "application/json", "User-Agent": "realtime-webhooks/1",
                   "X-Realtime-Event": record["event"], "X-Realtime-Delivery": record["id"],
                   "X-Realtime-Timestamp": str(timestamp),
                   "X-Realtime-Signature": sign(self.policy.secret.encode(), timestamp, body)}
        answer = self.session.post(record["endpoint"], data=body, headers=headers, allow_redirects=False,
                                   timeout=(self.policy.connect_timeout, self.policy.read_timeout))
        if not 200 <= answer.status_code < 300:
            raise DeliveryFailed(f"HTTP {answer.status_code}")


class BreakerLog(pybreaker.CircuitBreakerListener):
    """Logs and records breaker state changes (closed -> open -> half-open -> closed)."""

    def __init__(self, transitions: list[tuple[str, str, str]]):
        self.transitions = transitions

    def state_change(self, cb: pybreaker.CircuitBreaker, old_state: Any, new_state: Any) -> None:
        """One transition of one endpoint's breaker."""
        change = (cb.name, getattr(old_state, "name", str(old_state)), getattr(new_state, "name", str(new_state)))
        self.transitions.append(change)
        del self.transitions[:-100]
        log.warning("webhook breaker for %s: %s -> %s", *change)
