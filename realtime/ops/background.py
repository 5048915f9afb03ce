"""Per-replica background loops: the registry heartbeat and the coalesced `stats` push."""
from __future__ import annotations

import logging
from typing import Any, Callable

from flask_socketio import SocketIO

from ..events.chat import leave_lost_rooms
from ..wiring import Services
from ..services.tokens import TokenWatch
from ..services.webhooks import WebhookWorker
from ..store import StoreUnavailable

log = logging.getLogger(__name__)


def forever(socketio: SocketIO, name: str, interval: float,
            step: Callable[[], Any]) -> Callable[[], None]:
    """A loop that runs `step` every `interval` seconds and survives any failure of it."""
    def loop() -> None:
        while True:
            try:
                step()
            except StoreUnavailable as exc:
                log.warning("%s: store unavailable: %s", name, exc)
            except Exception:
                log.exception("%s failed", name)
            socketio.sleep(interval)
    return loop


class StatsPush:
    """Pushes cluster-wide stats to this replica's clients when they change, at most once a tick."""

    def __init__(self, socketio: SocketIO, services: Services):
        self.socketio = socketio
        self.services = services
        self.pushed: Any = None

    def __call__(self) -> None:
        """Clean up after dead replicas, recompute the counts and push them if anything changed."""
        for dead in self.services.cluster.claim_expired():
            went = self.services.presence.reap(dead)
            log.info("replica %s expired; %d users went offline", dead, went)
        stats = self.services.cluster.stats()
        if stats != self.pushed:
            # Each replica reads the shared counts itself, so the push stays local to it.
            self.socketio.emit("stats", stats, namespace="/chat", ignore_queue=True)
            self.pushed = stats


def watches(services: Services) -> list[tuple[TokenWatch, str]]:
    """Every namespace whose connections carry a token, with its watch: /chat, /admin, the Admin UI."""
    return [(services.tokens, "/chat"), (services.admin_tokens, "/admin"),
            (services.adminui_tokens, services.settings["ADMIN_UI_NAMESPACE"])]


class TokenExpiry:
    """Warns connections whose token is about to expire and closes those past it."""

    def __init__(self, socketio: SocketIO, services: Services):
        self.socketio = socketio
        self.services = services

    def __call__(self) -> None:
        """One pass over this replica's connections, in every namespace that takes a token."""
        for watch, namespace in watches(self.services):
            warn, drop = watch.due()
            for sid, left in warn:
                self.socketio.emit("token_expiring", {"expires_in": max(0, int(left))}, to=sid,
                                   namespace=namespace, ignore_queue=True)
            for sid in drop:
                log.info("closing %s on %s: token expired and was not refreshed", sid, namespace)
                watch.forget(sid)
                self.socketio.server.disconnect(sid, namespace=namespace)


class RevokedConnections:
    """Closes this replica's connections whose token was just revoked (a Revocations listener).

    It also listens for per-user revocations and for invitations taken back (the feed brings
    both from every replica): it registers itself for those when it is made.
    """

    def __init__(self, socketio: SocketIO, services: Services):
        self.socketio = socketio
        self.services = services
        services.revocations.user_listeners.append(self.user_cut_off)
        services.revocations.uninvite_listeners.append(self.uninvited)

    def __call__(self, jti: str) -> None:
        """Tell each connection using the token why, then close it."""
        for watch, namespace in watches(self.services):
            self.close(watch, namespace, watch.using(jti), f"its token {jti} was revoked")

    def user_cut_off(self, user_id: str, before: float) -> None:
        """Close the user's connections whose token was issued before `before`."""
        for watch, namespace in watches(self.services):
            self.close(watch, namespace, watch.issued_before(user_id, before),
                       f"the tokens of {user_id} were revoked")

    def uninvited(self, room: str, user_id: str) -> None:
        """The user's connections in `room` that relied on the invitation leave it."""
        for sid, principal in list(self.services.tokens.principals.items()):
            if principal.id == user_id:
                leave_lost_rooms(self.socketio, self.services, sid, principal, "uninvited", only=room)

    def close(self, watch: TokenWatch, namespace: str, sids: list[str], why: str) -> None:
        """Tell each connection why, then close it."""
        for sid in sids:
            log.info("closing %s on %s: %s", sid, namespace, why)
            watch.forget(sid)
            self.socketio.emit("token_revoked", {"code": "token_invalid", "reason": "revoked"},
                               to=sid, namespace=namespace, ignore_queue=True)
            self.socketio.server.disconnect(sid, namespace=namespace)


class DashboardPush:
    """Shares this replica's figures and pushes the cluster snapshot to its admins on /admin."""

    def __init__(self, socketio: SocketIO, services: Services):
        self.socketio = socketio
        self.services = services

    def __call__(self) -> None:
        """One tick: publish, then push only if an admin is watching from this replica."""
        mine = self.services.dashboard.publish()
        watching = self.socketio.server.manager.rooms.get("/admin", {}).get("dashboard")
        if watching:
            self.socketio.emit("dashboard", self.services.dashboard.snapshot(mine), to="dashboard",
                               namespace="/admin", ignore_queue=True)


def heartbeat(services: Services) -> Callable[[], None]:
    """One beat: refresh the registration, and restore presence if the registration was lost."""
    def beat() -> None:
        if services.cluster.heartbeat():
            services.presence.restore()
    return beat


def start(socketio: SocketIO, services: Services) -> None:
    """Start this replica's loops; they live as long as the process."""
    settings = services.settings
    socketio.start_background_task(
        forever(socketio, "heartbeat", settings["HEARTBEAT_INTERVAL"], heartbeat(services)))
    socketio.start_background_task(
        forever(socketio, "stats push", settings["STATS_INTERVAL"], StatsPush(socketio, services)))
    socketio.start_background_task(forever(socketio, "token expiry", 1.0, TokenExpiry(socketio, services)))
    socketio.start_background_task(
        forever(socketio, "dashboard", settings["DASHBOARD_INTERVAL"], DashboardPush(socketio, services)))
    socketio.start_background_task(forever(socketio, "upload retention", *services.uploads.retention_loop()))
    revocations = services.revocations
    if revocations.mirror and services.store.revocation_feed() is not None:  # a store with a feed
        # follow() returns when the feed breaks; until it is back, checks go to the store.
        socketio.start_background_task(forever(socketio, "revocation feed", 1.0, revocations.follow))
    if services.webhooks.policy.enabled:
        worker = WebhookWorker(services.store, services.webhooks.policy, services.cluster.instance_id,
                               socketio.start_background_task)
        services.webhook_worker = worker
        # step() waits up to a second in the store while the queue is empty; the short pause
        # only keeps a store outage from spinning.
        socketio.start_background_task(forever(socketio, "webhooks", 0.1, worker.step))
