"""Prometheus metrics of one replica, on a registry of its own (GET /metrics)."""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from ..store import StoreUnavailable, deadline
from ..transport import greenlets, status as transport_status
from ..version import PYTHON, VERSION

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)


class Metrics:
    """Counters and histograms updated on the hot path; gauges read when scraped."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)  # memory, CPU, open fds of this process
        self.events = Counter("realtime_events", "Socket.IO events received, by outcome",
                              ["namespace", "event", "outcome"], registry=self.registry)
        self.delivered = Counter("realtime_messages_delivered", "Chat messages handed to this replica's "
                                 "connections (once per message)", registry=self.registry)
        self.latency = Histogram("realtime_delivery_latency_seconds", "From a message's server timestamp "
                                 "to its delivery on this replica", buckets=LATENCY_BUCKETS,
                                 registry=self.registry)
        # How long a Socket.IO event's handler takes, ack included (the p99 alert reads it).
        self.event_seconds = Histogram("realtime_event_seconds", "Socket.IO event handling time, "
                                       "by namespace and event", ["namespace", "event"],
                                       buckets=LATENCY_BUCKETS, registry=self.registry)
        self.store_calls = Histogram("realtime_store_call_seconds", "State store (Redis) call latency",
                                     ["operation"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.store_errors = Counter("realtime_store_errors", "State store calls that failed",
                                    ["operation"], registry=self.registry)
        self.rate_limited = Counter("realtime_rate_limited", "Events refused by a rate limit",
                                    ["event"], registry=self.registry)
        self.refused = Counter("realtime_connections_refused", "Connections refused or closed by a "
                               "guard (connect_timeout, per_address, binary, slow_reader)", ["reason"],
                               registry=self.registry)
        self.queue_dropped = Counter("realtime_queue_dropped", "Emits other than chat messages dropped "
                                     "from a full message-queue outbox while Redis did not answer",
                                     registry=self.registry)
        for reason in ("connect_timeout", "per_address", "binary", "slow_reader"):
            self.refused.labels(reason)  # every reason scraped from the start, at 0
        # The labelled children of the per-event and per-store-call metrics, by their labels:
        # `labels()` validates and takes a lock on every call. The label values are bounded (known
        # events, error codes, store methods), so these stay small.
        self._event_counts: dict[tuple[str, str, str], Any] = {}
        self._event_times: dict[tuple[str, str], Any] = {}
        self._store_times: dict[str, Any] = {}

    def event_handled(self, namespace: str, event: str, outcome: str, seconds: float) -> None:
        """One Socket.IO event answered: counted by outcome, its handling time observed."""
        count = self._event_counts.get((namespace, event, outcome))
        if count is None:
            count = self._event_counts[(namespace, event, outcome)] = self.events.labels(namespace, event, outcome)
        count.inc()
        times = self._event_times.get((namespace, event))
        if times is None:
            times = self._event_times[(namespace, event)] = self.event_seconds.labels(namespace, event)
        times.observe(seconds)

    def observe_store(self, operation: str, seconds: float, failed: bool) -> None:
        """One store call (the Redis backend reports every call here)."""
        times = self._store_times.get(operation)
        if times is None:
            times = self._store_times[operation] = self.store_calls.labels(operation)
        times.observe(seconds)
        if failed:
            self.store_errors.labels(operation).inc()

    def message_delivered(self, message: dict[str, Any]) -> None:
        """A chat message reached this replica's connections."""
        self.delivered.inc()
        ts = message.get("ts")
        if isinstance(ts, (int, float)):
            self.latency.observe(max(0.0, time.time() - ts / 1000))

    def connection_refused(self, reason: str) -> None:
        """A connection guard refused or closed a connection."""
        self.refused.labels(reason).inc()

    def watch(self, read: Callable[[], Iterator[Metric]]) -> None:
        """Add gauges computed at scrape time."""
        self.registry.register(Scraped(read))


class Scraped:
    """A collector that asks the app for its current figures when Prometheus scrapes."""

    def __init__(self, read: Callable[[], Iterator[Metric]]):
        self.read = read

    def collect(self) -> Iterator[Metric]:
        """The figures now."""
        yield from self.read()


def url_label(url: str) -> str:
    """A URL as a label: scheme, host, port and path; never credentials, query or fragment."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    try:
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # a malformed port: leave it out rather than fail the scrape
        port = ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def replica_gauges(services: Any, server: Any, queue: Any = None) -> Callable[[], Iterator[Metric]]:
    """Build info, connections, greenlets, webhook outcomes, breakers, dead letters, queue listener."""
    def read() -> Iterator[Metric]:
        build = GaugeMetricFamily("realtime_build_info", "The running version (always 1)",
                                  labels=["version", "python"])
        build.add_metric([VERSION, PYTHON], 1)
        yield build
        connections = GaugeMetricFamily("realtime_connections", "Open connections",
                                        labels=["namespace", "transport"])
        counts: dict[tuple[str, str], int] = {}
        for namespace in ("/chat", "/admin"):
            try:
                participants = list(server.manager.get_participants(namespace, None))
            except KeyError:  # nobody ever connected to this namespace
                participants = []
            for _sid, eio_sid in participants:
                socket = server.eio.sockets.get(eio_sid)
                transport = "websocket" if getattr(socket, "upgraded", False) else "polling"
                counts[(namespace, transport)] = counts.get((namespace, transport), 0) + 1
        for (namespace, transport), count in sorted(counts.items()):
            connections.add_metric([namespace, transport], count)
        yield connections
        yield GaugeMetricFamily("realtime_greenlets", "Live greenlets in this process",
                                value=greenlets.live())
        paths = GaugeMetricFamily("realtime_fast_paths", "1 for the path this replica runs: on (the "
                                  "transport layer), off (stock), unverified (stock: a version not verified)",
                                  labels=["state"])
        paths.add_metric([transport_status()["state"]], 1)
        yield paths
        commit = getattr(services.store, "group_commit", None)
        if commit is not None and commit.calls:  # appends per round trip: how much group commit merges under this load
            yield CounterMetricFamily("realtime_store_appends", "Message appends sent to the store",
                                      value=commit.calls)
            yield CounterMetricFamily("realtime_store_append_round_trips", "Round trips those appends "
                                      "took (one per call on its own or per pipeline)", value=commit.batches)
        worker = services.webhook_worker
        if worker is not None:
            outcomes = GaugeMetricFamily("realtime_webhook_deliveries", "Webhook deliveries by outcome "
                                         "(this replica, since start)", labels=["outcome"])
            for outcome, count in sorted(worker.outcomes.items()):
                outcomes.add_metric([outcome], count)
            yield outcomes
            breakers = GaugeMetricFamily("realtime_webhook_breaker_open", "1 while the endpoint's "
                                         "breaker is open or half-open", labels=["endpoint"])
            for endpoint, breaker in sorted(worker.breakers.items()):
                # Webhook URLs may carry credentials or a token in the query: never in a label.
                breakers.add_metric([url_label(endpoint)], 0 if breaker.current_state == "closed" else 1)
            yield breakers
        yield from queue_gauges(services, queue)
    return read


def queue_gauges(services: Any, queue: Any) -> Iterator[Metric]:
    """Readiness, the message-queue listener's state and the webhook dead letters (cluster-wide)."""
    try:
        # A scrape must not hang on a Redis that does not answer: bounded like /readyz.
        with deadline.within(services.settings["READY_TIMEOUT"]):
            services.store.ping()
        ready = not services.draining
    except StoreUnavailable:
        ready = False
    yield GaugeMetricFamily("realtime_ready", "1 while /readyz would answer 200", value=1 if ready else 0)
    if queue is not None:
        # Subscribed to the main channel: without it this replica misses other replicas' emits.
        up = queue.listening is not None and queue.main_confirmed
        yield GaugeMetricFamily("realtime_queue_listener_up", "1 while the message-queue listener is "
                                "subscribed to Redis", value=1 if up else 0)
    if services.webhook_worker is not None:
        try:
            with deadline.within(services.settings["READY_TIMEOUT"]):
                dead = services.store.webhook_backlog()["dead"]
        except StoreUnavailable:
            return  # the gauge is absent while Redis does not answer; RealtimeStoreErrors says why
        yield GaugeMetricFamily("realtime_webhook_dead_letters", "Webhook deliveries in the dead-letter "
                                "list (cluster-wide)", value=dead)
