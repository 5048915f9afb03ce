"""HTTP hardening in one place: proxy headers, CORS, security headers, HTTP rate limits."""
from __future__ import annotations

from typing import Any

from flask import Flask, Response, request
from flask.globals import request_ctx
from flask_cors import CORS
from werkzeug.middleware.proxy_fix import ProxyFix

from .store import deadline

# No inline script or style anywhere: the demo and the dashboard load everything from /static.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
       "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
       "frame-ancestors 'none'")
HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(self)",
}
HSTS = "max-age=31536000; includeSubDomains"


SOCKETIO_PATH = "/socket.io/"  # Flask-SocketIO's default, which realtime keeps
UNBOUNDED = {"uploads"}  # blueprints whose requests REALTIME_EVENT_TIMEOUT does not bound


class RealtimeFlask(Flask):
    """Flask, without URL routing for the request context Flask-SocketIO rebuilds for every event."""

    def create_url_adapter(self, request: Any) -> Any:
        """No adapter (so no route match) for a Socket.IO event; Flask's for everything else.

        engine.io answers every HTTP request under the Socket.IO path before Flask sees it, so a
        request context there is an event's: matching it against the routes only built a
        NotFound each time (most of the context's cost).
        """
        if request is not None and request.path.startswith(SOCKETIO_PATH):
            return None
        return super().create_url_adapter(request)

    def full_dispatch_request(self) -> Any:
        """Flask's, its store calls bounded by REALTIME_EVENT_TIMEOUT (503 when Redis hangs)."""
        # An upload reads its body from the client as it goes: a slow client is not a hung store.
        seconds = None if request.blueprint in UNBOUNDED else self.config["REALTIME"]["EVENT_TIMEOUT"]
        with deadline.within(seconds):
            return super().full_dispatch_request()

    def preprocess_request(self) -> Any:
        """The before_request hooks within the request's deadline (the HTTP rate limit's Redis calls)."""
        return deadline.call(super().preprocess_request)


def limiter_release_where_kept(app: Flask, limiter: Any) -> None:
    """Run flask-limiter's teardown only for requests its before_request hook kept state for.

    Flask-SocketIO pushes a request context for every Socket.IO event and runs no before_request
    hook in it, so the limiter kept nothing there; its teardown still built its per-request state
    (a dataclass holding a list, a dict and an ordered set) only to reset it: a large share of
    what an event's context cost. Its state lives on the request context being torn down, so should
    flask-limiter rename the attribute asked about here, skipping a reset loses nothing.
    """
    hooks = app.teardown_request_funcs.get(None, [])
    for index, hook in enumerate(hooks):
        if getattr(hook, "__self__", None) is limiter:
            def release(exc: BaseException | None = None, release: Any = hook) -> None:
                if "_limiter_request_context" in vars(request_ctx._get_current_object()):
                    release(exc)
            hooks[index] = release


def same_origin(origin: str, environ: dict[str, Any]) -> bool:
    """Whether `origin` is the server's own (as the client reached it, through a proxy too)."""
    host = environ.get("HTTP_X_FORWARDED_HOST", environ.get("HTTP_HOST", "")).split(",")[0].strip()
    scheme = environ.get("HTTP_X_FORWARDED_PROTO", environ.get("wsgi.url_scheme", "http"))
    return origin == f"{scheme.split(',')[0].strip()}://{host}"


def socketio_origins(origins: Any) -> Any:
    """engine.io's origin rule: the listed origins plus our own (a plain list would drop ours)."""
    if origins is None or origins == "*":
        return origins
    allowed = frozenset(origins)
    return lambda origin, environ: origin in allowed or same_origin(origin, environ)


def socketio_credentials(origins: Any) -> bool:
    """engine.io's `cors_credentials`: never for `*`, which engine.io answers by reflecting any Origin.

    `Access-Control-Allow-Credentials: true` next to a reflected Origin would let any site read
    answers to requests carrying the browser's cookies for this server (the sticky cookie today,
    whatever comes next). Listed origins keep it: their cross-origin polling clients need the
    `realtime_sticky` cookie to stay on one replica behind nginx.
    """
    return origins != "*"


def security_headers(hsts: bool):
    """An after_request hook adding the headers every response carries."""
    def add(response: Response) -> Response:
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
        if hsts or request.is_secure:
            response.headers.setdefault("Strict-Transport-Security", HSTS)
        return response
    return add


def init_app(app: Flask, settings: dict[str, Any], cors_origins: Any) -> None:
    """Install proxy handling, REST CORS (same origins as Socket.IO) and security headers."""
    if settings["PROXY_COUNT"]:
        # Behind nginx: the client address and scheme come from X-Forwarded-*; applied outside
        # the Socket.IO middleware so connection limits see the real address too.
        count = settings["PROXY_COUNT"]
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=count, x_proto=count, x_host=count, x_port=count)
    if cors_origins:
        # `*` is answered with a literal `*` (no reflected Origin), which browsers never combine
        # with credentials; flask-cors sends no Access-Control-Allow-Credentials either way.
        CORS(app, resources={r"/api/*": {"origins": cors_origins}}, supports_credentials=False,
             send_wildcard=cors_origins == "*",
             allow_headers=["Authorization", "Content-Type", "X-API-Key"], max_age=600)
    app.after_request(security_headers(settings["HSTS"]))
