"""Connection guards at the Engine.IO level: what a hostile or broken client is refused.

- A connection that has not connected a Socket.IO namespace within CONNECT_TIMEOUT seconds is
  closed (Socket.IO's own server calls this `connectTimeout`; python-socketio has none).
- An address may hold at most MAX_CONNECTIONS_PER_ADDRESS connections at once; past it a new one
  is answered 401 with `{"message", "data": {"code": "too_many_connections"}}` (engine.io's
  refusal) on polling, and closed with 1008 `too_many_connections` on a websocket. The address is REMOTE_ADDR as the Socket.IO middleware sees it, which ProxyFix has
  already rewritten from X-Forwarded-For when PROXY_COUNT is set (realtime.web).
- The API has no binary event: an Engine.IO binary message, or a Socket.IO BINARY_EVENT ('5') or
  BINARY_ACK ('6'), closes the connection before python-socketio buffers anything of it.

It wraps the Engine.IO server's `connect`, `disconnect` and `message` handlers (engine.io's public
`handlers` table; each wrapper keeps the one it replaced as `__wrapped__`), so it holds for every
transport, on the direct websocket path (realtime.transport.wsdirect) and on the stock one alike. Every
refusal is counted in `realtime_connections_refused{reason}` and logged once.
"""
from __future__ import annotations

import collections
import functools
import logging
import struct
import time
from typing import Any, Callable

log = logging.getLogger(__name__)

POLICY_VIOLATION = 1008  # the websocket close code of a connection refused by a guard
BINARY_PACKETS = ("5", "6")  # Socket.IO BINARY_EVENT and BINARY_ACK, as their text header starts


class Guard:
    """The connection guards of one Engine.IO server."""

    def __init__(self, sio: Any, connect_timeout: float, max_per_address: int, refused: Callable[[str], None]):
        self.sio, self.eio = sio, sio.eio
        self.connect_timeout, self.max_per_address = connect_timeout, max_per_address
        self.count_refusal = refused
        self.addresses: dict[str, int] = {}     # open connections per address
        self.address_of: dict[str, str] = {}    # eio sid -> its address
        self.due: collections.deque = collections.deque()  # (deadline, eio sid), in order
        self.clock: Any = None

    def install(self) -> "Guard":
        """Wrap the Engine.IO handlers in place (after anything else that re-registers them)."""
        handlers = self.eio.handlers
        for event, wrapper in (("connect", self.on_connect), ("disconnect", self.on_disconnect),
                               ("message", self.on_message)):
            inner = handlers.get(event)
            if inner is not None:
                handlers[event] = functools.update_wrapper(functools.partial(wrapper, inner), inner)
        self.eio._rt_guard = self  # realtime.sendbound reports slow readers through it
        return self

    def refuse(self, reason: str, eio_sid: str, address: str | None, detail: str = "") -> None:
        """Count and log one refusal."""
        self.count_refusal(reason)
        log.warning("connection refused: %s%s", reason, f" ({detail})" if detail else "",
                    extra={"reason": reason, "eio_sid": eio_sid, "address": address})

    def on_connect(self, inner: Callable, eio_sid: str, environ: dict) -> Any:
        """A new Engine.IO connection: the per-address cap, then the namespace-connect deadline."""
        address = environ.get("REMOTE_ADDR") or "unknown"
        held = self.addresses.get(address, 0)
        if self.max_per_address and held >= self.max_per_address:
            self.refuse("per_address", eio_sid, address, f"{held} connections open")
            close_websocket(environ, POLICY_VIOLATION, b"too_many_connections")
            return {"message": "too many connections from this address",
                    "data": {"code": "too_many_connections"}}
        result = inner(eio_sid, environ)
        if result is not None and result is not True:  # the application refused it
            return result
        if self.max_per_address:  # with no cap, nothing is kept per connection
            self.addresses[address] = held + 1
            self.address_of[eio_sid] = address
        if self.connect_timeout:
            self.due.append((time.monotonic() + self.connect_timeout, eio_sid))
            if self.clock is None:
                self.clock = self.eio.start_background_task(self.run_clock)
        return result

    def on_disconnect(self, inner: Callable, eio_sid: str, *args: Any) -> Any:
        """A connection ended: free its place in its address's count."""
        try:
            return inner(eio_sid, *args)
        finally:
            address = self.address_of.pop(eio_sid, None)
            if address is not None:
                left = self.addresses.get(address, 1) - 1
                if left > 0:
                    self.addresses[address] = left
                else:
                    self.addresses.pop(address, None)

    def on_message(self, inner: Callable, eio_sid: str, data: Any) -> Any:
        """A message: binary ones (no API event takes one) close the connection."""
        if isinstance(data, (bytes, bytearray)) or (isinstance(data, str) and data[:1] in BINARY_PACKETS):
            kind = "engine.io binary message" if not isinstance(data, str) else f"socket.io packet type {data[0]}"
            self.refuse("binary", eio_sid, self.address(eio_sid), kind)
            self.close(eio_sid)
            return None
        return inner(eio_sid, data)

    def address(self, eio_sid: str) -> str | None:
        """The client address of a connection, for the log line."""
        environ = getattr(self.sio, "environ", {}).get(eio_sid)
        return environ.get("REMOTE_ADDR") if isinstance(environ, dict) else self.address_of.get(eio_sid)

    def close(self, eio_sid: str) -> None:
        """Close a connection without waiting for its client (a polling one may never come back)."""
        sock = self.eio.sockets.get(eio_sid)
        if sock is not None and not sock.closed:
            sock.close(wait=False, abort=False, reason=self.eio.reason.SERVER_DISCONNECT)

    def namespaced(self, eio_sid: str) -> bool:
        """Whether the connection has connected at least one namespace."""
        manager = self.sio.manager
        for namespace in list(manager.get_namespaces()):
            sid = manager.sid_from_eio_sid(eio_sid, namespace)
            if sid is not None and manager.is_connected(sid, namespace):
                return True
        return False

    def run_clock(self) -> None:
        """Close each connection still without a namespace at its deadline; exit when none waits."""
        try:
            while self.due:
                when, eio_sid = self.due[0]
                delay = when - time.monotonic()
                if delay > 0:
                    self.eio.sleep(min(delay, 1.0))
                    continue
                self.due.popleft()
                sock = self.eio.sockets.get(eio_sid)
                if sock is None or sock.closed or self.namespaced(eio_sid):
                    continue
                try:
                    self.refuse("connect_timeout", eio_sid, self.address(eio_sid),
                                f"no namespace within {self.connect_timeout:g} s")
                    self.close(eio_sid)
                except Exception:  # one socket's failure must not stop the others' deadlines
                    log.exception("closing %s at its connect deadline failed", eio_sid)
        finally:
            self.clock = None


def close_websocket(environ: dict, code: int, reason: bytes) -> None:
    """Close a websocket refused at its handshake with `code` and `reason`.

    gevent-websocket has answered 101 before the application runs, so engine.io's 401 never
    reaches a websocket client; a close frame tells it why instead.
    """
    ws = environ.get("wsgi.websocket")
    if ws is not None and not getattr(ws, "closed", True):
        try:
            # gevent-websocket 0.10's close() drops its code argument: the frame is built here.
            ws.send_frame(struct.pack("!H", code) + reason, opcode=ws.OPCODE_CLOSE)
        except Exception:  # the client went first; nothing left to tell
            log.debug("closing a refused websocket failed", exc_info=True)
        ws.closed = True


def install(sio: Any, settings: dict[str, Any], refused: Callable[[str], None]) -> Guard:
    """Guard `sio`'s Engine.IO server with the settings' timeout and cap."""
    return Guard(sio, settings["CONNECT_TIMEOUT"], settings["MAX_CONNECTIONS_PER_ADDRESS"], refused).install()
