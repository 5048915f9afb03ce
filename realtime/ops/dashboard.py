"""The monitoring dashboard's data: this replica's figures, shared through the store, and a
cluster snapshot pushed to admins on /admin (and served at GET /api/admin/dashboard)."""
from __future__ import annotations

import resource
import time
from typing import Any

from ..store import StoreUnavailable
from ..transport import greenlets, replica_view

GONE_FOR = 300.0  # seconds a vanished replica stays listed as gone


def rss_bytes() -> int | None:
    """Resident memory of this process (Linux /proc), or the peak as a fallback."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def counter_total(counter: Any, **match: str) -> float:
    """Sum of a labelled counter's samples whose labels match."""
    total = 0.0
    for metric in counter.collect():
        for sample in metric.samples:
            if sample.name.endswith("_total") and all(sample.labels.get(k) == v for k, v in match.items()):
                total += sample.value
    return total


class DashboardFeed:
    """Figures of this replica now, and the cluster as an operator sees it."""

    def __init__(self, services: Any):
        self.services = services
        self.previous: tuple[float, dict[str, float]] | None = None
        self.seen: dict[str, float] = {}

    def counters(self) -> dict[str, float]:
        """Totals since start: messages sent here, delivered here, events, errors."""
        metrics = self.services.metrics
        return {"in": counter_total(metrics.events, event="send", outcome="ok"),
                "out": counter_total(metrics.delivered),
                "events": counter_total(metrics.events),
                "errors": counter_total(metrics.events, outcome="internal") + counter_total(metrics.store_errors)}

    def local(self) -> dict[str, Any]:
        """This replica's figures, with rates over the time since the previous call."""
        now, totals = time.monotonic(), self.counters()
        before_at, before = self.previous or (now, totals)
        span = max(now - before_at, 1e-9)
        self.previous = (now, totals)
        cluster = self.services.cluster
        return {"id": cluster.instance_id, "started_at": cluster.started_at,
                "uptime_s": int(time.time() - cluster.started_at / 1000), "clients": len(cluster.connections),
                "memory_rss": rss_bytes(), "greenlets": greenlets.live(),
                "messages_in_per_s": round((totals["in"] - before["in"]) / span, 2) if before_at != now else 0.0,
                "messages_out_per_s": round((totals["out"] - before["out"]) / span, 2) if before_at != now else 0.0,
                "events_per_s": round((totals["events"] - before["events"]) / span, 2) if before_at != now else 0.0,
                "errors_total": int(totals["errors"]), "transport": replica_view()}

    def publish(self) -> dict[str, Any]:
        """Share this replica's figures (they expire like its registration); kept local if Redis is down."""
        figures = self.local()
        try:
            self.services.store.publish_figures(figures["id"], figures, self.services.settings["INSTANCE_TTL"])
        except StoreUnavailable:
            pass  # the snapshot says Redis is down
        return figures

    def snapshot(self, mine: dict[str, Any] | None = None) -> dict[str, Any]:
        """The cluster now; with Redis down, this replica alone and a red Redis card."""
        mine = mine or self.local()
        store, worker = self.services.store, self.services.webhook_worker
        redis: dict[str, Any] = {"ok": True, "used_memory": None, "error": None}
        try:
            store.ping()
            redis["used_memory"] = store.used_memory()
            replicas = list(store.all_figures().values()) or [mine]
            backlog = store.webhook_backlog() if self.services.webhooks.policy.enabled else None
        except StoreUnavailable as exc:
            redis = {"ok": False, "used_memory": None, "error": str(exc)[:200]}
            replicas, backlog = [mine], None
        now = time.monotonic()
        for figures in replicas:
            self.seen[figures["id"]] = now
        alive = {f["id"] for f in replicas}
        gone = sorted(i for i, at in self.seen.items() if i not in alive and now - at < GONE_FOR)
        breakers = {name: b.current_state for name, b in worker.breakers.items()} if worker else {}
        return {"time": int(time.time() * 1000), "instance": self.services.cluster.instance_id, "redis": redis,
                "clients_total": sum(f["clients"] for f in replicas),
                "replicas": sorted(replicas, key=lambda f: f["id"]), "gone": gone,
                "webhooks": {"backlog": backlog, "breakers": breakers}}
