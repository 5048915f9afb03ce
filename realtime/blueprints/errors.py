"""Every HTTP error is JSON `{"error": {"code", "message"}}` with the right status."""
import logging
import time

from flask import Flask, jsonify
from flask_limiter import RateLimitExceeded
from redis.exceptions import ConnectionError as RedisConnectionError, RedisError, TimeoutError as RedisTimeoutError
from werkzeug.exceptions import HTTPException

from ..errors import AppError, unavailable
from ..extensions import limiter
from ..store import StoreUnavailable

log = logging.getLogger(__name__)


def app_error(exc: AppError):
    """A refusal we raised on purpose."""
    response = jsonify(error=exc.to_dict())
    if exc.retry_after is not None:
        response.headers["Retry-After"] = str(int(exc.retry_after + 0.999))
    return response, exc.status


def http_error(exc: HTTPException):
    """Werkzeug's errors (404, 405, 413, ...) in our shape, with their headers (a 405's `Allow`)."""
    code = (exc.name or "error").lower().replace(" ", "_")
    headers = [(name, value) for name, value in exc.get_headers() if name.lower() != "content-type"]
    return jsonify(error={"code": code, "message": exc.description}), exc.code, headers


def rate_limited(exc: RateLimitExceeded):
    """An HTTP rate limit was hit: the same `rate_limited` code as socket events."""
    # The window's reset, so the body's retry_after agrees with the Retry-After header flask-limiter sets.
    current = limiter.current_limit
    retry_after = max(1, current.reset_at - int(time.time())) if current is not None else 1
    limit = AppError("rate_limited", f"too many requests ({exc.description}), slow down", 429,
                     retry_after=retry_after)
    return app_error(limit)


def store_unavailable(exc: StoreUnavailable):
    """The store is down: retryable, nothing changed."""
    log.warning("store unavailable: %s", exc)
    return app_error(unavailable())


def redis_down(exc: RedisError):
    """Redis failed outside the store (flask-limiter's shared counters): as retryable as the store."""
    return store_unavailable(StoreUnavailable(str(exc)))


def unexpected(exc: Exception):
    """A bug: logged once with its traceback, answered without details."""
    log.exception("unhandled error")
    return jsonify(error={"code": "internal", "message": "internal error"}), 500


def register(app: Flask) -> None:
    """Install the JSON error handlers."""
    app.register_error_handler(AppError, app_error)
    app.register_error_handler(RateLimitExceeded, rate_limited)
    app.register_error_handler(HTTPException, http_error)
    app.register_error_handler(StoreUnavailable, store_unavailable)
    for redis_error in (RedisConnectionError, RedisTimeoutError):
        app.register_error_handler(redis_error, redis_down)
    app.register_error_handler(Exception, unexpected)
