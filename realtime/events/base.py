"""The one wrapper around every event handler: acks, structured errors, nothing silent."""
from __future__ import annotations

import functools
import logging
from typing import Any, Callable

from flask import request
from flask_socketio import Namespace

from ..errors import AppError, unavailable
from ..store import StoreUnavailable

log = logging.getLogger(__name__)
LIFECYCLE = {"on_connect", "on_disconnect"}


def error_ack(error: AppError) -> dict[str, Any]:
    """The ack of a refused event."""
    return {"ok": False, "error": error.to_dict()}


def acked(handler: Callable) -> Callable:
    """Turn a handler's result into `{ok: true, ...}` and any failure into `{ok: false, error}`."""
    event = handler.__name__.removeprefix("on_")

    @functools.wraps(handler)
    def run(self, payload: Any = None, *_extra: Any) -> dict[str, Any]:
        try:
            self.before_event(event)
            return {"ok": True, **(handler(self, payload) or {})}
        except AppError as exc:
            self.refused(event, exc)
            return error_ack(exc)
        except StoreUnavailable as exc:
            log.warning("store unavailable during %s: %s", handler.__name__, exc)
            return error_ack(unavailable())
        except Exception:
            log.exception("event handler %s failed (sid=%s)", handler.__name__,
                          getattr(request, "sid", None))
            return error_ack(AppError("internal", "internal error", 500))
    return run


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

    def trigger_event(self, event: str, *args: Any) -> Any:
        """Answer unknown events with an error ack instead of dropping them silently."""
        if not hasattr(self, "on_" + (event or "")):
            return error_ack(AppError("unknown_event", f"unknown event {event!r}"))
        return super().trigger_event(event, *args)
