"""Direct websocket writes and detached reads for engine.io sockets (a small, tested adapter).

Replaces engine.io's `Socket.send`, `close`, `schedule_ping` and `_websocket_handler` and
python-socketio's `Manager.emit` (applied by realtime.transport.install, only with the whole
layer). Verified against python-engineio 4.15.1, python-socketio 5.18.1, Flask-SocketIO 5.7.0,
gevent 26.9.0, gevent-websocket 0.10.1 (realtime.transport.VERIFIED). Held to the stock behaviour
by tests/unit/test_wsdirect.py (frames byte for byte as gevent-websocket's, broadcasts as the stock
emit), tests/unit/test_wsdetach.py and the integration suites run with the layer on and off.

Stock engine.io (4.13-4.15) gives every websocket client a queue and a writer greenlet: a
broadcast to N clients is N queue puts, N greenlet switches and N websocket frames built, and
every idle connection keeps a writer and a ping greenlet alive. This adapter keeps the Engine.IO
and Socket.IO protocols byte for byte, and changes only how bytes reach an upgraded websocket:

- a packet's frame is built once and cached on the packet, so a broadcast (python-socketio sends
  the same packet object to every recipient) frames it once and writes the same bytes to all;
- a broadcast (`emit`, replacing python-socketio's Manager.emit) builds that
  packet once and writes its frame straight to each upgraded websocket, without the four calls
  per recipient through python-socketio and engine.io; everything else takes the stock path;
- the frames a client is given in one turn of the event loop leave in one non-blocking `send`
  at the turn's end (TurnBatch: an ack and the sender's own copy of the message, or messages the
  queue listener read together, cost one syscall); whatever the kernel does not take waits in the
  connection's buffer, flushed (coalesced into one send) by a greenlet that exists only while
  that client is behind; a client more than the server's send bound (realtime.sendbound,
  REALTIME_MAX_SEND_BUFFER; MAX_BUFFERED without one) behind is cut off (it reconnects and
  recovers what it missed by id, as after any drop);
- no writer greenlet per connection; pings come from one clock per server instead of a sleeping
  greenlet per connection.

And how bytes come from it. Stock, the pywsgi handler greenlet of every websocket stays blocked
in a read for the connection's whole life, keeping its stack (saved C stack and a frame chunk,
part of it touched), the request's headers and environ, the read buffer and
gevent-websocket's objects. When the handler can detach (realtime.transport.worker.Handler.detach), once
the handshake (and a polling client's upgrade probe) is done:

- the handler hands over the connection (its descriptor in a new socket, and any bytes its read
  buffer already held) and its greenlet ends; the connection keeps its place in the server's pool,
  so gunicorn's connection limit and graceful stop see it as before;
- a `Reader` has the socket's libev read watcher and no greenlet: when bytes (or the end)
  arrive it reads them in a greenlet (reused: ReaderGreenlets), decodes the frames
  (realtime.transport.wsframes: the same frames accepted and refused as gevent-websocket's reader), passes
  each message to engine.io in order as engine.io's reader loop does (a message over
  max_http_buffer_size ends the connection, as there), answers websocket pings, and waits again;
- every end goes through `Reader.end`: the client's close frame (echoed with its code), EOF or an
  error, a protocol error (a close frame with its code: 1002, 1007, 1009), or engine.io closing the
  socket (our close frame, then CLOSE_WAIT seconds for the client's answer before the connection
  is cut; stock waited for the 45 s read timeout). It runs engine.io's close (the disconnect
  handlers), flushes, closes the socket, frees the pool place and writes the access line;
- the environ python-socketio keeps for the client (rebuilt into a request context on every
  event) is replaced by a copy with only what that needs (KEPT_ENVIRON: the request line, the
  server and client addresses, the Host header, Flask-SocketIO's keys): the other headers, and
  the handshake's connection objects (`wsgi.websocket`, `gunicorn.sock`, `wsgi.input`), go;
  it is then held compactly (realtime.transport.keptenviron: what is equal between clients is shared).

A dead client is found by engine.io's ping timeout (its service task closes the socket), not by
a read timeout. Polling clients, and connections still upgrading, keep engine.io's own queue.
`install()` patches engine.io's Socket and python-socketio's Manager.emit; realtime.transport
calls it only with the whole layer, on the versions in its VERIFIED table. A handler without
`detach`, or DETACH = False, keep a blocking reader greenlet per connection, as before.
"""
from __future__ import annotations

import collections
import contextvars
import json
import logging
import os
import struct
import time
from typing import Any

import gevent
import greenlet
from engineio import packet as eio_packet
from engineio.socket import Socket
from gevent import get_hub
from socketio import packet as sio_packet
from socketio.manager import Manager
from geventwebsocket.websocket import Header

from . import greenlets
from .interned import shared_public
from .keptenviron import KeptEnvirons
from .wsframes import BINARY, CLOSE, PING, PONG, TEXT, FrameError, FrameParser
from .wsframes import frame as wsframe

log = logging.getLogger(__name__)

MAX_BUFFERED = 8 * 1024 * 1024  # bytes a slow client may fall behind before it is cut off
# Detaching also leans on gevent: its Pool's member protocol (worker.Detached), socket.detach,
# and the socket's read watcher (Reader); realtime.transport.VERIFIED pins gevent too.
DETACH = True  # detach websockets from their handler greenlet when the handler can (worker.py)
READ_CHUNK = 65536  # bytes read per wake-up of a detached reader
SEND_AT = 65536  # bytes a client is given in one turn before they go without waiting for its end
CLOSE_WAIT = 5.0  # seconds a client has to answer our close before its connection is cut
_stock: dict[str, Any] = {}


def frame_of(pkt: eio_packet.Packet) -> bytes:
    """The websocket frame carrying an Engine.IO packet, built once per packet object."""
    frame = pkt.__dict__.get("_rt_frame")
    if frame is None:
        encoded = pkt.encode()
        if isinstance(encoded, str):
            payload, opcode = encoded.encode("utf-8"), 0x1
        else:
            payload, opcode = bytes(encoded), 0x2
        # gevent-websocket's own header encoder: FIN set, no mask (server frames are unmasked).
        frame = pkt._rt_frame = Header.encode_header(True, opcode, b"", len(payload), 0) + payload
    return frame


class TurnBatch:
    """The writers given frames in this turn of the event loop, each sent once at the turn's end.

    Frames for one client written in the same turn (an ack and the sender's own copy of the
    message, several messages the queue listener read at once, a recovery) leave in one send
    instead of one each. The loop runs `flush` as soon as the greenlets it woke have yielded,
    before it waits again, so nothing is held longer than the turn that wrote it.
    """

    __slots__ = ("loop", "writers")

    def __init__(self, hub: Any):
        self.loop, self.writers = hub.loop, []

    def flush(self) -> None:
        """Send what each writer was given this turn (in the hub: nothing here may wait)."""
        writers, self.writers = self.writers, []
        for writer in writers:
            # A writer may be listed twice, or be behind (its flusher sends) or dead meanwhile.
            if writer.buffer and writer.flusher is None and not writer.dead:
                try:
                    writer._send_now(writer._take())
                except Exception:  # one writer's bug must not leave the others' frames unsent
                    log.exception("websocket write failed")
                    writer.abort()


def of_hub(kind: type) -> Any:
    """The one `kind` (TurnBatch, ReaderGreenlets) of this thread's hub (a replica has one hub)."""
    hub = get_hub()
    one = hub.__dict__.get(kind.__name__)
    if one is None:
        one = hub.__dict__[kind.__name__] = kind(hub)
    return one


class DirectWriter:
    """Writes frames to one websocket: at the end of the loop's turn, or buffered while behind."""

    __slots__ = ("sock", "spawn", "buffer", "buffered", "flusher", "dead", "batch", "owner")

    def __init__(self, sock: Any, spawn: Any, owner: Socket | None = None):
        self.sock, self.spawn = sock, spawn
        self.owner = owner  # the engine.io socket: its server's send bound, its sid for the log
        self.buffer: list[bytes] = []
        self.buffered = 0
        self.flusher: Any = None
        self.dead = False
        self.batch = of_hub(TurnBatch)

    def write(self, data: bytes) -> None:
        """Queue `data`: sent with this turn's other frames, or by the flusher while behind."""
        if self.dead:
            return
        self.buffer.append(data)
        self.buffered += len(data)
        if self.flusher is not None:  # behind: the flusher sends it when the socket takes more
            if self.buffered > self.limit():
                self.cut_off()
        elif self.buffered >= SEND_AT:  # no point holding a turn's worth this large
            self._send_now(self._take())
        elif len(self.buffer) == 1:  # the turn's first frame: the turn's end sends it
            batch = self.batch
            if not batch.writers:
                batch.loop.run_callback(batch.flush)
            batch.writers.append(self)

    def limit(self) -> int:
        """Bytes this client may fall behind: the server's send bound, else MAX_BUFFERED."""
        bound = self.owner.server.__dict__.get("_rt_send_bound") if self.owner is not None else None
        return bound.limit if bound is not None and bound.limit else MAX_BUFFERED

    def cut_off(self) -> None:
        """The client stopped reading: report it (metric, log line) and drop the connection."""
        bound = self.owner.server.__dict__.get("_rt_send_bound") if self.owner is not None else None
        if bound is not None:
            bound.slow_reader(self.owner.sid, self.buffered)
        else:
            log.warning("websocket client %s bytes behind: cut off", self.buffered)
        self.abort()

    def _send_now(self, data: bytes) -> None:
        """One non-blocking send of `data`; the rest goes to a flusher greenlet."""
        try:
            # The socket gevent wraps, which is non-blocking: gevent's own `send` is a Python
            # layer (timeouts, waiting) that a send which must not wait does not need.
            sent = self.sock._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self.abort()
            return
        if sent < len(data):
            self.buffer.insert(0, data[sent:])
            self.buffered += len(data) - sent
            self.flusher = self.spawn(self._flush)

    def _take(self) -> bytes:
        """Everything buffered, as one bytes object."""
        data = self.buffer[0] if len(self.buffer) == 1 else b"".join(self.buffer)
        self.buffer.clear()
        self.buffered = 0
        return data

    def _flush(self) -> None:
        """Send the buffer, waiting for the socket, until it is empty (coalescing new writes)."""
        try:
            while self.buffer and not self.dead:
                # What is being sent stays counted in `buffered` until the socket took it: the
                # bound covers everything this client holds, not only what waits behind it.
                sendall, buffer = self.sock.sendall, self.buffer
                data = buffer[0] if len(buffer) == 1 else b"".join(buffer)
                buffer.clear()
                sendall(data)
                self.buffered = max(0, self.buffered - len(data))
        except OSError:
            self.abort()
        finally:
            self.flusher = None

    def drain(self) -> None:
        """Block until everything written so far has been sent (or the socket died)."""
        while (self.flusher is not None or self.buffer) and not self.dead:
            if self.flusher is None:
                self._send_now(self._take())
            if self.flusher is not None:
                self.flusher.join()

    def abort(self) -> None:
        """Drop the buffer and stop writing; the reader sees the connection end."""
        self.dead = True
        self.buffer.clear()
        self.buffered = 0
        try:
            self.sock.shutdown(2)
        except OSError:
            pass


class ReaderGreenlets:
    """The greenlets that run detached readers' wake-ups, reused (at most KEEP wait idle).

    A new greenlet per wake-up (gevent.spawn) was a visible share of every client event: gevent's
    Greenlet set-up, and the frame-stack chunk CPython 3.11 maps for a greenlet's first
    frame and unmaps when it ends (an mmap and a munmap per message). Each wake-up runs in a fresh
    contextvars context, as in a new greenlet, so no context variable outlives its event.
    """

    KEEP = 8

    def __init__(self, hub: Any):
        self.hub, self.idle = hub, []

    def run(self, reader: "Reader") -> None:
        """(In the hub) run `reader`'s wake-up in an idle greenlet, or in a new one."""
        if self.idle:
            worker = self.idle.pop()
        else:
            worker = greenlet.greenlet(self._serve, parent=self.hub)
            greenlets.count_raw(1)  # /metrics' live greenlets include these
        worker.switch(reader)

    def _serve(self, reader: "Reader") -> None:
        """Run wake-ups until there are KEEP idle greenlets, or something else wakes this one."""
        me = greenlet.getcurrent()
        try:
            while True:
                contextvars.Context().run(reader.run)
                if len(self.idle) >= self.KEEP:
                    return
                self.idle.append(me)
                reader = None  # an idle greenlet keeps no connection alive
                try:
                    reader = self.hub.switch()  # idle until `run` hands over the next reader
                except BaseException:  # thrown in by something it no longer waits for: retire
                    pass
                if not isinstance(reader, Reader):  # woken by anything but `run`: retire
                    if me in self.idle:
                        self.idle.remove(me)
                    return
        finally:
            greenlets.count_raw(-1)


class Reader:
    """Reads a detached websocket with no greenlet of its own while the client is quiet.

    A libev io watcher on the socket wakes `run` in a greenlet (reused: ReaderGreenlets) when
    bytes (or the end) arrive; it reads what is there, decodes the frames (realtime.transport.wsframes),
    hands each message to engine.io in order, as engine.io's own reader loop does, and re-arms the
    watcher. Every end of the connection passes through `end`, in such a greenlet.
    """

    __slots__ = ("esock", "sock", "writer", "ended_cb", "parser", "watcher", "timer", "sent_close",
                 "ended")

    def __init__(self, esock: Socket, sock: Any, writer: DirectWriter, ended: Any):
        self.esock, self.sock, self.writer, self.ended_cb = esock, sock, writer, ended
        self.parser: FrameParser | None = None  # only while a partial frame or message waits
        # The gevent socket's own read watcher (one per connection): the reader alone reads
        # the socket, with os.read, so gevent never waits on it; closing the socket closes it.
        self.watcher = sock._read_event
        self.timer: Any = None
        self.sent_close = self.ended = False

    def start(self, pending: bytes = b"") -> None:
        """Begin: first what the handshake's read buffer held, then whatever arrives."""
        if pending:
            gevent.spawn(self.run, pending)
        else:
            self.watcher.start(self.wake)

    def wake(self) -> None:
        """The socket is readable (in the hub): read it in a greenlet of the hub's ReaderGreenlets."""
        self.watcher.stop()
        of_hub(ReaderGreenlets).run(self)

    def throw(self, *_error: Any) -> None:
        """gevent cancels the wait on a socket closed under us (a worker shutting down): end.

        gevent's cancel_wait throws into whatever the watcher's callback is bound to, which it
        takes for a waiting greenlet; here that is the reader (no greenlet waits), in the hub.
        """
        if not self.ended:
            gevent.spawn(self.end)  # end runs engine.io's close and disconnect handlers: not in the hub

    def run(self, data: bytes | None = None) -> None:
        """Read once, dispatch every complete message, then wait again (or end)."""
        try:
            if data is None:
                data = os.read(self.watcher.fd, READ_CHUNK)
            if not data or self.esock.closed:  # the client left, or the server closed (stock: same)
                return self.end()
            # Bytes bound a message before engine.io's own check (in characters) runs on it.
            parser = self.parser or FrameParser(4 * self.esock.server.max_http_buffer_size + 4)
            try:
                for opcode, payload in parser.feed(data):
                    if not self.dispatch(opcode, payload):
                        return self.end()
            finally:
                self.parser = None if parser.idle else parser
        except BlockingIOError:
            pass
        except FrameError as exc:
            self.esock.server.logger.info("%s: websocket protocol error: %s", self.esock.sid, exc)
            self.send_close(struct.pack("!H", exc.code))
            return self.end()
        except OSError:
            return self.end()
        except Exception:  # a bug here must not leave a connection nobody reads
            log.exception("websocket reader of %s failed", self.esock.sid)
            return self.end()
        if self.esock.closed:
            return self.end()
        self.watcher.start(self.wake)

    def dispatch(self, opcode: int, payload: Any) -> bool:
        """One message or control frame; False when the connection must end."""
        esock = self.esock
        if opcode == TEXT or opcode == BINARY:
            if payload and len(payload) > esock.server.max_http_buffer_size:
                esock.server.logger.info('%s: Unexpected error "packet is too large", closing '
                                         'connection', esock.sid)
                return False
            try:
                esock.receive(eio_packet.Packet(encoded_packet=payload))
            except Exception:
                if not esock.closed:
                    esock.server.logger.exception("Unknown receive error")
                return False
            return True
        if opcode == PING:
            self.writer.write(wsframe(PONG, payload))
            return True
        if opcode == PONG:
            return True
        self.send_close(payload[:2])  # CLOSE: answer with the client's code, then end
        return False

    def send_close(self, code: bytes = b"") -> None:
        """Our websocket close frame, once."""
        if not self.sent_close:
            self.sent_close = True
            self.writer.write(wsframe(CLOSE, code))

    def closing(self) -> None:
        """engine.io closed the socket: close the websocket; the client has CLOSE_WAIT to answer."""
        self.send_close()  # no code, as gevent-websocket's close() sends it
        if not self.ended and self.timer is None:
            self.timer = get_hub().loop.timer(CLOSE_WAIT)
            self.timer.start(self.writer.abort)  # the reader then sees the end and finishes

    def end(self) -> None:
        """The connection is over: engine.io's close (disconnect handlers), flush, let go."""
        if self.ended:
            return
        self.ended = True
        self.watcher.stop()
        esock = self.esock
        try:
            esock.close(wait=False, abort=True, reason=esock.server.reason.TRANSPORT_CLOSE)
            self.send_close()
            self.writer.drain()
        finally:
            if self.timer is not None:
                self.timer.stop()
                self.timer.close()
            self.sock.close()  # and the watcher, stopped above
            if esock.server.sockets.get(esock.sid) is esock:
                del esock.server.sockets[esock.sid]
            self.ended_cb()


class PingClock:
    """Sends every socket's ping when due, from one greenlet per server."""

    PING = eio_packet.Packet(eio_packet.PING)  # one packet object: its frame is built once

    def __init__(self, server: Any):
        self.server = server
        self.due: collections.deque = collections.deque()
        self.task: Any = None

    def schedule(self, sock: Socket) -> None:
        """Ping `sock` one ping interval from now (intervals are equal, so the deque is sorted)."""
        self.due.append((time.monotonic() + self.server.ping_interval, sock))
        if self.task is None:
            self.task = self.server.start_background_task(self.run)

    def run(self) -> None:
        """Ping each socket when its time comes; exit when nobody waits."""
        try:
            while self.due:
                when, sock = self.due[0]
                delay = when - time.monotonic()
                if delay > 0:
                    self.server.sleep(min(delay, 1.0))
                    continue
                self.due.popleft()
                if not sock.closing and not sock.closed:
                    sock.last_ping = time.time()
                    try:
                        sock.send(self.PING)
                    except Exception:  # a socket closing under us; the others still get pinged
                        log.debug("ping to %s failed", sock.sid, exc_info=True)
        finally:
            self.task = None


def ping_clock(server: Any) -> PingClock:
    """The engine.io server's ping clock."""
    clock = server.__dict__.get("_rt_ping_clock")
    if clock is None:
        clock = server._rt_ping_clock = PingClock(server)
    return clock


def gevent_websocket(ws: Any) -> Any:
    """The gevent-websocket WebSocket behind engine.io's wrapper, or None for other servers."""
    inner = getattr(ws, "_sock", None)
    stream = getattr(inner, "stream", None)
    return inner if stream is not None and hasattr(getattr(stream, "handler", None), "socket") else None


def send(self: Socket, pkt: eio_packet.Packet) -> None:
    """Socket.send: straight to the websocket once upgraded, else engine.io's queue."""
    writer = self.__dict__.get("_rt_writer")
    if writer is None:
        return _stock["send"](self, pkt)
    if self.check_ping_timeout():
        writer.write(frame_of(pkt))


def emit(self: Manager, event: str, data: Any, namespace: str, room: Any = None, skip_sid: Any = None,
         callback: Any = None, to: Any = None, **kwargs: Any) -> None:
    """Manager.emit: one packet and one frame per emit, written straight to every upgraded websocket.

    Stock, each recipient costs four calls into python-socketio and engine.io before `send`. What
    needs engine.io's own path (a callback, binary data, a client polling or upgrading, a closed
    socket or one past its ping timeout) takes it, unchanged.
    """
    room = to or room
    if callback is not None or namespace not in self.rooms:
        return _stock["emit"](self, event, data, namespace, room=room, skip_sid=skip_sid, callback=callback,
                              **kwargs)
    args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
    packet_class = self.server.packet_class
    try:
        # The standard json refuses bytes: what it encodes has no binary attachment, so
        # python-socketio's walk of the whole payload looking for one (each emit) is skipped.
        binary = None if packet_class.json.dumps is not json.dumps else False
        encoded = packet_class(sio_packet.EVENT, namespace=namespace, data=[event] + args, binary=binary).encode()
    except TypeError:  # bytes in it (or something JSON cannot hold): the stock path sorts it out
        encoded = []
    if isinstance(encoded, list):  # binary attachments: several engine.io packets per recipient
        return _stock["emit"](self, event, data, namespace, room=room, skip_sid=skip_sid, **kwargs)
    eio_pkt = eio_packet.Packet(eio_packet.MESSAGE, encoded)
    frame = frame_of(eio_pkt)
    skip = skip_sid if isinstance(skip_sid, list) else [skip_sid]
    sockets, server = self.server.eio.sockets, self.server
    now, timeout = time.time(), server.eio.ping_timeout
    for sid, eio_sid in self.get_participants(namespace, room):
        if sid in skip:
            continue
        sock = sockets.get(eio_sid)
        writer = sock.__dict__.get("_rt_writer") if sock is not None else None
        if writer is None or sock.closed or (sock.last_ping and now - sock.last_ping > timeout):
            server._send_eio_packet(eio_sid, eio_pkt)
        else:
            writer.write(frame)


def schedule_ping(self: Socket) -> None:
    """Socket.schedule_ping on the server's clock (only after the previous ping was answered)."""
    if self.last_ping:
        self.last_ping = None
        ping_clock(self.server).schedule(self)


def close(self: Socket, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
    """Socket.close: a direct socket sends CLOSE, flushes and closes its websocket."""
    writer = self.__dict__.get("_rt_writer")
    if writer is None:
        return _stock["close"](self, wait=wait, abort=abort, reason=reason)
    if self.closed or self.closing:
        return
    self.closing = True
    self.server._trigger_event("disconnect", self.sid,
                               reason or self.server.reason.SERVER_DISCONNECT, run_async=False)
    if not abort:
        writer.write(frame_of(eio_packet.Packet(eio_packet.CLOSE)))
    self.closed = True
    reader = self.__dict__.get("_rt_reader")
    if reader is not None:
        reader.closing()
    else:
        ws = self.__dict__["_rt_ws"]
        if not ws.closed:
            ws.close()  # its close frame goes through the writer too
    if wait:
        writer.drain()


def websocket_handler(self: Socket, ws: Any) -> list:
    """Socket._websocket_handler: engine.io's handshake, then a detached or a blocking reader."""
    inner = gevent_websocket(ws)
    if inner is None or "send" in vars(ws):  # not gevent-websocket, or instrumented (Admin UI)
        return _stock["_websocket_handler"](self, ws)

    def websocket_wait():
        data = ws.wait()
        if data and len(data) > self.server.max_http_buffer_size:
            raise ValueError("packet is too large")
        return data

    handler = inner.stream.handler
    handler.socket.settimeout(self.server.ping_interval + self.server.ping_timeout)
    if self.connected:
        # an upgrade from polling: engine.io's probe exchange, packets held meanwhile
        self.upgrading = True
        if not upgrade_probe(self, ws, websocket_wait):
            self.upgrading = False
            return []
        self.upgraded, self.upgrading = True, False
    else:
        self.connected = self.upgraded = True

    detach = getattr(handler, "detach", None) if DETACH else None
    if detach is not None:
        sock, pending, ended = detach()
        writer = DirectWriter(sock, gevent.spawn, self)
        reader = self.__dict__["_rt_reader"] = Reader(self, sock, writer, ended)
        switch(self, writer)
        release_environ(ws.environ)
        slim_stored_environ(self)
        reader.start(pending)
        return []  # the handler's greenlet ends; the reader has the connection

    writer = DirectWriter(handler.socket, self.server.start_background_task, self)
    inner.raw_write = writer.write  # gevent-websocket's own frames (pong, close) queue behind ours
    self.__dict__["_rt_ws"] = inner
    switch(self, writer)
    while True:
        try:
            data = websocket_wait()
        except Exception as exc:
            if not self.closed:
                self.server.logger.info('%s: Unexpected error "%s", closing connection', self.sid, exc)
            break
        if data is None:
            break
        try:
            self.receive(eio_packet.Packet(encoded_packet=data))
        except Exception:
            if self.closed:
                break
            self.server.logger.exception("Unknown receive error")
            break
    self.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_CLOSE)
    writer.drain()
    return []


def switch(self: Socket, writer: DirectWriter) -> None:
    """Write through `writer` from now on; what engine.io queued meanwhile goes out first."""
    # No yield between these lines: the queued packets go out before anything sent later.
    self.__dict__["_rt_writer"] = writer
    for pkt in queued(self):
        writer.write(frame_of(pkt))
    self.queue = None  # nothing reads or writes engine.io's queue any more: free it


class EmptyInput:
    """`wsgi.input` of a request whose body is long gone (a websocket's handshake)."""

    def read(self, *args: Any) -> bytes:
        return b""

    def readline(self, *args: Any) -> bytes:
        return b""

    def readlines(self, *args: Any) -> list:
        return []

    def __iter__(self):
        return iter(())


EMPTY_INPUT = EmptyInput()


# What a request context rebuilt from the kept environ reads: Flask's URL binding (method, paths,
# query, host, scheme), request.remote_addr and request.args (a later namespace's connect), the
# WSGI basics, and Flask-SocketIO's app and per-connection session. ProxyFix has already applied
# the forwarded headers to these at the handshake.
KEPT_ENVIRON = frozenset({
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT",
    "SERVER_PROTOCOL", "REMOTE_ADDR", "REMOTE_PORT", "HTTP_HOST", "wsgi.url_scheme", "wsgi.version",
    "wsgi.errors", "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once", "flask.app",
    "saved_session"})


def slim_stored_environ(self: Socket) -> None:
    """Replace the environ python-socketio keeps for this client by its KEPT_ENVIRON part.

    It is kept for the connection's life only to be rebuilt into a request context per event;
    the rest (user agent, cookies, accept headers, websocket keys, ProxyFix's originals) was
    most of its memory per connection. (The admin UI's client list shows only the Host header then.)
    What is left is held by a KeptEnvirons: one dict per distinct shared part, not per client.
    """
    connect = self.server.handlers.get("connect")
    owner = getattr(getattr(connect, "__wrapped__", connect), "__self__", None)  # under realtime.guard's
    kept = getattr(owner, "environ", None)
    environ = kept.get(self.sid) if isinstance(kept, dict) else None
    if isinstance(environ, dict):
        slim = {key: environ[key] if key == "REMOTE_PORT" else shared_public(environ[key])
                for key in KEPT_ENVIRON if key in environ}
        slim["wsgi.input"] = EMPTY_INPUT
        if type(kept) is dict:  # python-socketio's own: ours from its first slimmed connection on
            kept = owner.environ = KeptEnvirons(kept)
        kept.keep(self.sid, slim)


def release_environ(environ: Any) -> None:
    """Drop what a kept environ holds of the handshake's connection (socket, buffer, handler).

    Flask-SocketIO rebuilds a request context from this environ for every event, so every
    string in it stays; only the connection objects go.
    """
    if not isinstance(environ, dict):
        return
    environ.pop("wsgi.websocket", None)   # gevent-websocket's WebSocket -> the pywsgi handler
    environ.pop("gunicorn.sock", None)    # the handshake's socket object
    if "wsgi.input" in environ:           # pywsgi's Input -> read buffer and socket
        environ["wsgi.input"] = EMPTY_INPUT


def upgrade_probe(self: Socket, ws: Any, wait: Any) -> bool:
    """engine.io's polling-to-websocket probe: PING probe → PONG probe, then UPGRADE."""
    received = eio_packet.Packet(encoded_packet=wait())
    if received.packet_type != eio_packet.PING or received.data != "probe":
        self.server.logger.info("%s: Failed websocket upgrade, no PING packet", self.sid)
        return False
    ws.send(eio_packet.Packet(eio_packet.PONG, data="probe").encode())
    self.queue.put(eio_packet.Packet(eio_packet.NOOP))  # ends the pending long-poll
    received = eio_packet.Packet(encoded_packet=wait())
    if received.packet_type != eio_packet.UPGRADE:
        self.server.logger.info("%s: Failed websocket upgrade, expected UPGRADE packet", self.sid)
        return False
    return True


def queued(self: Socket) -> list[eio_packet.Packet]:
    """Take the packets engine.io queued while the client was polling or upgrading."""
    packets = []
    while not self.queue.empty():
        pkt = self.queue.get(block=False)
        self.queue.task_done()
        if pkt is not None and pkt.packet_type != eio_packet.NOOP:
            packets.append(pkt)
    return packets


def install() -> bool:
    """Patch engine.io's Socket and python-socketio's Manager.emit (idempotent; realtime.transport checks versions)."""
    if _stock:
        return True
    for name in ("send", "close", "schedule_ping", "_websocket_handler"):
        _stock[name] = getattr(Socket, name)
    Socket.send, Socket.close, Socket.schedule_ping = send, close, schedule_ping
    Socket._websocket_handler = websocket_handler
    _stock["emit"] = Manager.emit
    Manager.emit = emit
    return True


def uninstall() -> None:
    """Put engine.io's and python-socketio's own methods back."""
    for name, method in _stock.items():
        setattr(Manager if name == "emit" else Socket, name, method)
    _stock.clear()
