"""The transport layer: every fast path that replaces or patches a library's private internals.

The adapters below change how bytes reach and leave a client, never what they are: each keeps
the Engine.IO and Socket.IO protocols byte for byte and has a test holding it to the stock
behaviour. They lean on private code of python-engineio, python-socketio, Flask-SocketIO, gevent
and gevent-websocket, so they are applied only on the exact versions in VERIFIED, all together
or none (`REALTIME_FAST_PATHS`: auto, on, off), once per worker process at worker start
(realtime.transport.worker.Worker.load_wsgi), before the app is built. `create_app` patches
nothing: it only reads `active()` to pick the client manager's room index and the packet JSON.

Process-wide patches (install/uninstall): wsfast (gevent-websocket's reader), wsdirect
(engine.io's Socket, python-socketio's Manager.emit; with wsframes, keptenviron, interned),
socketsession (Flask-SocketIO's session class). Chosen at app build time: roomindex (the client
manager's rooms), wirepacket (the packet class), wirejson (the packet JSON module). The gunicorn
worker (worker.py) can detach websockets; it does so only when wsdirect asks. greenlets counts live greenlets through gevent's
public spawn callback, in every state (the /metrics gauge reads it).
"""
from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Mapping

log = logging.getLogger(__name__)

# The exact library versions the adapters were verified against (their tests pass on them, with
# the layer on and off). A version not listed keeps the stock path (auto) or stops the start (on).
VERIFIED: dict[str, tuple[str, ...]] = {
    "python-engineio": ("4.15.1",),
    "python-socketio": ("5.18.1",),
    "Flask-SocketIO": ("5.7.0",),
    "gevent": ("26.9.0",),
    "gevent-websocket": ("0.10.1",),
}
MODES = {"auto": "auto", "on": "on", "off": "off",
         "true": "on", "1": "on", "yes": "on", "false": "off", "0": "off", "no": "off"}
_state: dict[str, Any] = {"installed": False, "state": "off", "mode": None, "reason": "not installed"}


def mode(value: Any) -> str:
    """The switch as auto, on or off (true/false and their spellings are on/off)."""
    if isinstance(value, bool):
        return "on" if value else "off"
    found = MODES.get(str(value).strip().lower())
    if found is None:
        raise ValueError(f"REALTIME_FAST_PATHS must be auto, on or off, got {value!r}")
    return found


def versions() -> dict[str, str | None]:
    """The installed version of each library the adapters lean on (None: not installed)."""
    found: dict[str, str | None] = {}
    for name in VERIFIED:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def unverified(installed: Mapping[str, str | None]) -> list[str]:
    """'name version' of each installed library whose version is not in VERIFIED."""
    return [f"{name} {installed.get(name)}" for name, good in VERIFIED.items() if installed.get(name) not in good]


def decide(setting: Any, installed: Mapping[str, str | None] | None = None) -> tuple[str, str]:
    """(state, reason) for a switch value: on, off or unverified; RuntimeError for `on` on others."""
    wanted = mode(setting)
    if wanted == "off":
        return "off", "REALTIME_FAST_PATHS=off"
    wrong = unverified(versions() if installed is None else installed)
    if not wrong:
        return "on", ""
    reason = "not verified: " + ", ".join(wrong)
    if wanted == "on":
        raise RuntimeError(f"REALTIME_FAST_PATHS=on, but the fast paths are {reason} "
                           f"(realtime.transport.VERIFIED); set auto or off to run the stock path")
    return "unverified", reason


def install(settings: Mapping[str, Any]) -> str:
    """Apply every adapter or none, once per process (at worker start); the state it left."""
    from . import greenlets
    if _state["installed"]:
        return _state["state"]
    state, reason = decide(settings.get("FAST_PATHS", "auto"))
    if state == "unverified":
        log.warning("fast paths off, the stock path runs: %s (realtime.transport.VERIFIED)", reason)
    greenlets.install()
    if state == "on":
        try:
            apply(settings)
        except Exception:
            remove()
            raise
    _state.update(installed=True, state=state, mode=mode(settings.get("FAST_PATHS", "auto")), reason=reason)
    return state


def apply(settings: Mapping[str, Any]) -> None:
    """Patch the libraries (every adapter; the caller undoes a partial apply)."""
    from . import socketsession, wsdirect, wsfast
    # Bytes bound a websocket message before engine.io's own check (in characters) runs on it.
    wsfast.install(4 * int(settings.get("MAX_HTTP_BUFFER_SIZE", 1_000_000)) + 4)
    wsdirect.install()  # one frame per broadcast, direct writes, detached reads, one ping clock
    socketsession.install()  # no instance dict per client session


def remove() -> None:
    """Put back every attribute the adapters replaced."""
    from . import socketsession, wsdirect, wsfast
    socketsession.uninstall()
    wsdirect.uninstall()
    wsfast.uninstall()


def uninstall() -> None:
    """Undo `install`: the libraries' own objects back, greenlets no longer counted (tests)."""
    from . import greenlets
    remove()
    greenlets.uninstall()
    _state.update(installed=False, state="off", mode=None, reason="not installed")


def active() -> bool:
    """Whether the fast paths are applied in this process."""
    return _state["state"] == "on"


def status() -> dict[str, Any]:
    """What runs here, for the startup line, /metrics and the dashboard."""
    return {"state": _state["state"], "mode": _state["mode"], "reason": _state["reason"], "versions": versions()}


def replica_view() -> dict[str, Any]:
    """The dashboard's view: the state (on, off, unverified) and the library versions."""
    now = status()
    return {"state": now["state"], "versions": now["versions"]}


def summary() -> str:
    """The startup line: fast paths on, off or stock because of a version, with the versions."""
    now = status()
    libraries = ", ".join(f"{name} {found}" for name, found in now["versions"].items())
    head = "fast paths on" if now["state"] == "on" else f"fast paths off, stock path ({now['reason']})"
    return f"{head}; {libraries}"
