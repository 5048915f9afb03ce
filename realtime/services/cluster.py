"""This replica's place in the cluster: registration, connection tracking, cluster-wide stats."""
from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from ..store import Quota, Store, StoreUnavailable

if TYPE_CHECKING:  # auth imports services.validation
    from ..auth import Principal

log = logging.getLogger(__name__)


class ClusterService:
    """Registers this replica with a heartbeat and reports cluster-wide counts."""

    def __init__(self, store: Store, instance_id: str, ttl: float):
        self.store = store
        self.instance_id = instance_id
        self.ttl = ttl
        self.started_at = int(time.time() * 1000)
        # sid -> its Principal (the session holds it anyway): no user dict per connection
        self.connections: dict[str, Principal] = {}
        self.last_stats: dict[str, Any] | None = None

    def info(self) -> dict[str, Any]:
        """What this replica announces about itself."""
        return {"id": self.instance_id, "started_at": self.started_at}

    def heartbeat(self) -> bool:
        """Refresh this replica's registration; True if it had been lost and was written anew."""
        if self.store.register_instance(self.info(), self.ttl):
            return False
        # First beat, or the registration expired (Redis restarted or was unreachable too long).
        users = {sid: who.user for sid, who in self.connections.items()}
        self.store.replace_connections(self.instance_id, users)
        return True

    def claim_expired(self) -> list[str]:
        """Replicas that stopped beating; each is handed to exactly one live replica to clean up."""
        return [i for i in self.store.claim_expired_instances() if i != self.instance_id]

    def connected(self, sid: str, who: Principal, quota: Quota | None = None) -> None:
        """Track a new connection on this replica, taking `quota` (the connect limit) in the same step.

        OverLimit: nothing tracked. A store outage refuses the connection when it had a quota to
        take (the limit could not be checked); without one it costs a log line (the heartbeat
        writes the replica's connections again once its registration is lost).
        """
        try:
            self.store.add_connection(self.instance_id, sid, who.user, quota)
        except StoreUnavailable as exc:
            if quota is not None:
                if exc.outcome_unknown:  # it may be tracked: nothing will untrack a refused connection
                    self.disconnected(sid)
                raise
            log.warning("connection %s not tracked: %s", sid, exc)
        self.connections[sid] = who

    def disconnected(self, sid: str) -> None:
        """Stop tracking a connection; tolerate a store outage (the heartbeat expiry cleans up)."""
        self.connections.pop(sid, None)
        try:
            self.store.remove_connection(self.instance_id, sid)
        except StoreUnavailable as exc:
            log.warning("could not untrack %s: %s", sid, exc)

    def deregister(self) -> None:
        """Leave the cluster now instead of waiting for the heartbeat to expire."""
        try:
            self.store.remove_instance(self.instance_id)
        except StoreUnavailable as exc:
            log.warning("deregister failed: %s", exc)

    def stats(self) -> dict[str, Any]:
        """Cluster-wide counts as the `stats` event and GET /api/stats carry them."""
        instances = [{"id": i["id"], "clients": i["clients"], "started_at": i["started_at"]}
                     for i in self.store.list_instances()]
        self.last_stats = {"instance": self.instance_id,
                           "clients_total": sum(i["clients"] for i in instances),
                           "instances": instances}
        return self.last_stats
