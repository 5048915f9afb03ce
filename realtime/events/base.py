"""The one wrapper around every event handler: acks, structured errors, nothing silent."""
from __future__ import annotations

import functools
import logging
import time
from typing import Any, Callable

from flask import request
from flask_socketio import ConnectionRefusedError, Namespace

from .. import auth
from ..errors import AppError, AuthError, unavailable
from ..services import validation
from ..store import StoreUnavailable, deadline

log = logging.getLogger(__name__)
events_log = logging.getLogger("realtime.events")
QUIET = {"typing", "read"}  # high-volume events are logged at debug
LIFECYCLE = {"on_connect", "on_disconnect"}
# Names python-socketio uses for lifecycle calls; a client may send them as ordinary events.
RESERVED = {"connect", "disconnect", "connect_error", "__disconnect_final"}


def error_ack(error: AppError) -> dict[str, Any]:
    """The ack of a refused event."""
    return {"ok": False, "error": error.to_dict()}


def acked(handler: Callable) -> Callable:
    """Turn a handler's result into `{ok: true, ...}` and any failure into `{ok: false, error}`."""
    event = handler.__name__.removeprefix("on_")

    @functools.wraps(handler)
    def run(self, payload: Any = None, *_extra: Any) -> dict[str, Any]:
        started = time.perf_counter()
        ack = answer(self, handler, event, payload)
        outcome = "ok" if ack["ok"] else ack["error"]["code"]
        metrics = getattr(getattr(self, "services", None), "metrics", None)
        elapsed = time.perf_counter() - started
        if metrics is not None:
            metrics.event_handled(self.namespace, event, outcome, elapsed)
        room = payload.get("room") if isinstance(payload, dict) else None
        # One line per event: debug for the chatty ones, info for the rest.
        events_log.log(logging.DEBUG if event in QUIET else logging.INFO, "%s %s %s", self.namespace, event,
                       outcome, extra={"event": event, "namespace": self.namespace, "outcome": outcome,
                                       "room": room if isinstance(room, str) else None,
                                       "duration_ms": round(elapsed * 1000, 2)})
        return ack
    return run


def answer(namespace: Any, handler: Callable, event: str, payload: Any) -> dict[str, Any]:
    """Run one handler: its result as an ok ack, or the refusal; a bug is logged once."""
    try:
        # Its store calls are bounded: a Redis that hangs gets the client an `unavailable` ack.
        with deadline.within(event_timeout(namespace)):
            namespace.before_event(event)
            return {"ok": True, **(handler(namespace, payload) or {})}
    except AppError as exc:
        namespace.refused(event, exc)
        return error_ack(exc)
    except StoreUnavailable as exc:
        log.warning("store unavailable during %s: %s", handler.__name__, exc)
        return error_ack(unavailable(outcome_unknown=exc.outcome_unknown))
    except Exception:
        log.exception("event handler %s failed (sid=%s)", handler.__name__, getattr(request, "sid", None))
        return error_ack(AppError("internal", "internal error", 500))


def event_timeout(namespace: Any) -> float | None:
    """REALTIME_EVENT_TIMEOUT of the namespace's services (None: unbounded)."""
    settings = getattr(getattr(namespace, "services", None), "settings", None)
    return settings.get("EVENT_TIMEOUT") if isinstance(settings, dict) else None


def refuse(error: AppError) -> ConnectionRefusedError:
    """A connection refusal shaped as the contract says: {message, data: {code, ...}}."""
    data = {k: v for k, v in error.to_dict().items() if k != "message"}
    return ConnectionRefusedError(error.message, data)


def authenticate(services: Any, auth_payload: Any, limit_connects: bool = True,
                 admit: Callable[[Any, Any], None] | None = None) -> Any:
    """The principal of a connecting client, or the contract's refusal (rate limit, token, store).

    `admit(principal, quota)` records the connection and takes the connect limit's quota (None when
    it is off) in the same store call; without it the limit is counted on its own, first.
    """
    try:
        if limit_connects and admit is not None:
            # A refused token still counts its hit (taken_by_store), as it did when counted first.
            with services.limits.taken_by_store("connect", request.remote_addr or "unknown") as quota:
                principal = services.verifier.verify(token_of(services, auth_payload))
                admit(principal, quota)
            return principal
        if limit_connects:
            services.limits.hit("connect", request.remote_addr or "unknown")
        principal = services.verifier.verify(token_of(services, auth_payload))
        if admit is not None:
            admit(principal, None)
        return principal
    except AppError as exc:
        raise refuse(exc)
    except StoreUnavailable as exc:
        raise refuse(AppError("unavailable", f"cannot check the token now: {exc}", 503, 1.0))


def token_of(services: Any, auth_payload: Any) -> str:
    """The token a connecting client sent (in `auth`, or ?token= when that is switched on)."""
    # ?token= only when switched on: a query string ends up in access logs and proxies' logs.
    query_token = request.args.get("token") if services.settings["QUERY_TOKEN"] else None
    return auth.token_from(auth_payload, query_token)


def refreshed(services: Any, payload: Any, current: Any) -> Any:
    """The principal of a `refresh` payload's token: valid, unrevoked, and of the same user."""
    principal = services.verifier.verify(auth.token_from(validation.payload_dict(payload), None))
    if principal.id != current.id:
        raise AuthError("forbidden", "a refreshed token must name the same user")
    return principal


class AckNamespace(Namespace):
    """A namespace whose `on_<event>` methods take one payload and always answer an ack."""

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        for name, member in list(vars(cls).items()):
            if name.startswith("on_") and name not in LIFECYCLE and callable(member):
                setattr(cls, name, acked(member))

    def before_event(self, event: str) -> None:
        """Checks every event passes before its handler runs (e.g. rate limits)."""

    def refused(self, event: str, error: AppError) -> None:
        """Called after an event was refused (e.g. to spot abuse)."""

    def trigger_event(self, event: Any, *args: Any) -> Any:
        """Dispatch; unknown, non-string and client-sent lifecycle names get an error ack."""
        if not isinstance(event, str) or not hasattr(self, "on_" + event) or self.is_spoofed(event, args):
            return error_ack(AppError("unknown_event", f"unknown event {str(event)[:64]!r}"))
        if event == "connect":  # its store calls bounded as an event's: a hung Redis refuses it promptly
            with deadline.within(event_timeout(self)):
                return super().trigger_event(event, *args)
        return super().trigger_event(event, *args)

    def is_spoofed(self, event: str, args: tuple) -> bool:
        """A lifecycle name sent by a connected client as an ordinary event."""
        # python-socketio runs the real connect/disconnect handlers while the client is
        # pending (is_connected is False then); an event from a connected client is not one.
        if event not in RESERVED:
            return False
        sid = args[0] if args else None
        return bool(sid) and self.socketio.server.manager.is_connected(sid, self.namespace)
