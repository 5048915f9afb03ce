"""The send form: put a message into a realtime room, over the HTTP server API or the Redis emitter.

Both paths answer `(status, body)`: the realtime answer itself (`201 {"message"}` or its
`{"error"}`), or one of ours when realtime could not be reached or answered something else.
"""
from __future__ import annotations

import http.client
import json
import socket
import threading
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote, urlsplit

from .web import Invalid

SENDER = "webhook-tester"
MAX_ROOM, MAX_BODY = 200, 20_000  # realtime validates for real; these only bound what we forward
MAX_ANSWER = 1024 * 1024


def send_request(data: dict[str, Any]) -> tuple[str, str, str]:
    """`(room, body, via)` from the form's JSON, or Invalid."""
    room, body, via = data.get("room"), data.get("body"), data.get("via", "http")
    if not isinstance(room, str) or not 0 < len(room) <= MAX_ROOM:
        raise Invalid("invalid_payload", f"room must be a string of 1-{MAX_ROOM} characters")
    if not isinstance(body, str) or not 0 < len(body) <= MAX_BODY:
        raise Invalid("invalid_payload", f"body must be a string of 1-{MAX_BODY} characters")
    if via not in ("http", "redis"):
        raise Invalid("invalid_payload", "via must be http or redis")
    return room, body, via


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer to show, not to follow (it would turn the POST into a GET)."""

    def redirect_request(self, *args, **kwargs):
        return None


# No proxies from the environment: the realtime URL is a neighbour, never reached through one.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect)


def send_http(base_url: str | None, api_key: str | None, room: str, body: str,
              timeout: float) -> tuple[int, dict[str, Any]]:
    """POST the message to `{base_url}/api/rooms/<room>/messages` with the API key."""
    if not base_url:
        raise Invalid("not_configured", "WEBHOOK_REALTIME_URL is not set", 503)
    url = f"{base_url.rstrip('/')}/api/rooms/{quote(room, safe='')}/messages"
    payload = json.dumps({"type": "text", "body": body, "from": SENDER}).encode()
    headers = {"Content-Type": "application/json", "Accept": "application/json",
               "User-Agent": "realtime-webhook-tester/1"}
    if api_key:
        headers["X-API-Key"] = api_key
    outgoing = urllib.request.Request(url, data=payload, headers=headers, method="POST")
    try:
        # `timeout` bounds the connect and every read.
        with _opener.open(outgoing, timeout=timeout) as response:
            return upstream_answer(response.status, response.read(MAX_ANSWER))
    except urllib.error.HTTPError as answer:  # realtime answered, with an error status
        with answer:
            return upstream_answer(answer.code, answer.read(MAX_ANSWER))
    except (OSError, http.client.HTTPException) as failure:  # refused, reset, timed out, garbled
        raise unreachable(base_url, timeout, getattr(failure, "reason", failure)) from None


def unreachable(base_url: str, timeout: float, reason: object) -> Invalid:
    """Our error for a realtime that did not answer: timed out (504) or unreachable (502)."""
    if isinstance(reason, (TimeoutError, socket.timeout)):
        return Invalid("upstream_timeout", f"realtime did not answer within {timeout:g}s", 504)
    where = urlsplit(base_url).netloc.rpartition("@")[2]  # never echo credentials in a URL
    return Invalid("upstream_unreachable", f"cannot reach realtime at {where}: {reason}", 502)


def upstream_answer(status: int, raw: bytes) -> tuple[int, dict[str, Any]]:
    """Realtime's JSON answer as is; anything else (a proxy's HTML page…) is a 502 of ours."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    if not isinstance(body, dict):
        snippet = raw[:200].decode("utf-8", "replace")
        raise Invalid("bad_upstream_answer",
                      f"realtime answered {status} without JSON: {snippet}", 502)
    return status, body


class RedisPath:
    """The Redis emitter of this process: created on first use, then shared by every request."""

    def __init__(self, url: str | None):
        self.url = url
        self._emitter = None
        self._lock = threading.Lock()

    def emitter(self):
        """The one Emitter (one Redis pool) of this process."""
        with self._lock:
            if self._emitter is None:
                # Imported here: the receiver itself needs nothing of realtime to run.
                from realtime.emitter import Emitter
                self._emitter = Emitter(self.url)
            return self._emitter

    def send(self, room: str, body: str) -> tuple[int, dict[str, Any]]:
        """Persist and publish the message like `realtime emit`; returns `(201, {"message"})`."""
        if not self.url:
            raise Invalid("not_configured", "WEBHOOK_REDIS_URL is not set", 503)
        import redis
        from realtime.errors import AppError
        from realtime.store.base import StoreUnavailable
        try:
            message = self.emitter().send(room=room, body=body,
                                          sender={"id": SENDER, "name": SENDER})
        except AppError as refusal:  # realtime's own validation: invalid_room, body_too_long…
            return refusal.status, {"error": refusal.to_dict()}
        except (StoreUnavailable, redis.RedisError, OSError) as failure:
            raise Invalid("upstream_unreachable", f"cannot reach Redis: {failure}", 502) from None
        return 201, {"message": message}

    def close(self) -> None:
        """Release the emitter's connections."""
        with self._lock:
            if self._emitter is not None:
                self._emitter.close()
                self._emitter = None
