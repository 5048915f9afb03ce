"""CPU per /chat event dispatched in one gevent-patched process, the dispatch adapter on against off.

One app from the factory on the memory store (INFO JSON logging to a file, metrics, rate limits
evaluated, as bench/compare.py runs a replica), one client connected and joined through
Flask-SocketIO's test client; then N encoded Socket.IO packets of one event are handed to
python-socketio's `_handle_eio_message` as a websocket message would be, and every packet the
server sends back (the ack, the sender's own copy) is encoded and dropped. Rounds alternate the
dispatch adapter (realtime.transport.dispatch) off and on in the same process; medians of µs per
event (time.process_time), and their minima (other work on the machine only ever adds). `--profile` prints cProfile's top functions of one more round instead.
No figure is checked against a threshold.

    .venv/bin/python bench/dispatchcost.py                          # send, 5 rounds x 20 000
    .venv/bin/python bench/dispatchcost.py --event typing --rounds 3
    .venv/bin/python bench/dispatchcost.py --components             # the changed pieces alone
    .venv/bin/python bench/dispatchcost.py --profile off            # where a send's time goes
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import cProfile  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import pstats  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import timeit  # noqa: E402
from pathlib import Path  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from flask_jwt_extended import create_access_token  # noqa: E402

from realtime import create_app, transport  # noqa: E402
from pythonjsonlogger.json import JsonFormatter  # noqa: E402

from realtime.extensions import socketio  # noqa: E402
from realtime.ops import logs  # noqa: E402
from realtime.transport import dispatch, wsdirect  # noqa: E402
from realtime.transport.keptenviron import KeptEnvirons  # noqa: E402

BODY = "x" * 150


def build(workdir: Path) -> tuple:
    """The app, its python-socketio server and one connected, joined client's engine.io sid."""
    for name in list(os.environ):
        if name.startswith("REALTIME_"):
            del os.environ[name]
    os.environ["REALTIME_ENV_FILE"] = str(workdir / "none.env")
    app = create_app({"ASYNC_MODE": "gevent", "BACKGROUND_TASKS": False, "INSTANCE_ID": "bench-1",
                      "JWT_SECRET_KEY": "bench-secret-that-is-long-enough-0123456789abcdef",
                      "LOG_FILE": str(workdir / "app.log"), "LOG_LEVEL": "INFO",
                      "RATE_LIMITS": "send=100000000/minute; typing=100000000/minute",
                      "UPLOAD_DIR": str(workdir / "uploads")})
    with app.app_context():
        jwt = create_access_token(identity="ana", additional_claims={"name": "Ana"})
    client = socketio.test_client(app, namespace="/chat", auth={"token": jwt})
    assert client.is_connected("/chat")
    ack = client.emit("join", {"room": "lobby"}, namespace="/chat", callback=True)
    assert ack["ok"], ack
    server = socketio.server
    keep_as_served(server, client.eio_sid)
    sink = []
    server._send_packet = lambda eio_sid, pkt: sink.append(pkt.encode())
    server._send_eio_packet = lambda eio_sid, pkt: sink.append(pkt.encode())
    return app, server, client.eio_sid, sink


def keep_as_served(server, eio_sid: str) -> None:
    """Hold the client's environ as a served websocket's (realtime.transport.wsdirect): the
    Socket.IO path, only KEPT_ENVIRON, compactly."""
    environ = dict(server.environ[eio_sid], PATH_INFO="/socket.io/", QUERY_STRING="EIO=4&transport=websocket")
    slim = {key: environ[key] for key in wsdirect.KEPT_ENVIRON if key in environ}
    slim["wsgi.input"] = wsdirect.EMPTY_INPUT
    if not isinstance(server.environ, KeptEnvirons):
        server.environ = KeptEnvirons(server.environ)
    server.environ.keep(eio_sid, slim)


def packets(event: str, count: int, tag: str) -> list[str]:
    """`count` encoded EVENT packets with an ack id, as a client sends them."""
    out = []
    for n in range(count):
        if event == "send":
            payload = {"room": "lobby", "type": "text", "body": BODY, "client_id": f"{tag}-{n}"}
        else:
            payload = {"room": "lobby", "typing": n % 2 == 0}
        out.append("2/chat," + str(n) + json.dumps([event, payload], separators=(",", ":")))
    return out


def one_round(server, eio_sid: str, sink: list, event: str, count: int, tag: str) -> float:
    """µs of this process's CPU per event."""
    batch = packets(event, count, tag)
    handle = server._handle_eio_message
    sink.clear()
    started = time.process_time()
    for data in batch:
        handle(eio_sid, data)
    spent = time.process_time() - started
    acks = [p for p in sink if p.startswith("3/chat,")]
    assert len(acks) == count and '"ok":true' in acks[-1], (len(acks), acks[-1:])
    sink.clear()
    return spent / count * 1e6


def components(server, eio_sid: str, ours: logging.Formatter, stock: logging.Formatter) -> None:
    """µs per call of the pieces the switch changes, stock against this tree, the minimum of
    alternated repeats: Flask-SocketIO's dispatch of an event to a handler that does nothing,
    and the formatting of one event log line."""
    flask_sio = socketio
    sid = server.manager.sid_from_eio_sid(eio_sid, "/chat")
    noop = lambda payload: None  # noqa: E731
    dispatch_one = lambda: flask_sio._handle_event(noop, "look", "/chat", sid, {"room": "lobby"})  # noqa: E731
    record = logging.getLogger("realtime.events").makeRecord(
        "realtime.events", logging.INFO, "", 0, "/chat send ok", (), None,
        extra={"event": "send", "namespace": "/chat", "outcome": "ok", "room": "lobby", "duration_ms": 0.12,
               "instance": "bench-1", "request_id": None, "sid": sid, "user": "ana"})
    pieces = {"dispatch to a no-op handler": (dispatch_one, dispatch.uninstall, dispatch.install),
              "JSON event log line (format)": ((lambda: ours.format(record)), lambda: None, lambda: None)}
    for name, (call, to_stock, to_ours) in pieces.items():
        best = {"stock": float("inf"), "ours": float("inf")}
        for _ in range(80):
            for label, switch in (("stock", to_stock), ("ours", to_ours)):
                switch()
                fn = call if name.startswith("dispatch") or label == "ours" else (lambda: stock.format(record))
                best[label] = min(best[label], timeit.timeit(fn, number=500) / 500 * 1e6)
        print(f"{name}: stock {best['stock']:.2f} µs, this tree {best['ours']:.2f} µs, "
              f"{best['ours'] / best['stock']:.2f}x")
    dispatch.install()


def main(argv: list[str] | None = None) -> int:
    """Alternate off/on rounds; print medians (or a profile)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--event", default="send", choices=("send", "typing"))
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--parts", default="dispatch,logging",
                        help="what on switches: dispatch (the adapter), logging (the line formatter)")
    parser.add_argument("--components", action="store_true",
                        help="time the two pieces alone (min of alternated repeats) instead")
    parser.add_argument("--profile", choices=("off", "on"), help="cProfile one round of this state")
    args = parser.parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-dispatchcost-"))
    state = transport.install({"FAST_PATHS": "on", "MAX_HTTP_BUFFER_SIZE": 1_000_000})
    app, server, eio_sid, sink = build(workdir)
    print(f"transport layer: {state}", file=sys.stderr)
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "realtime", False))
    stock_formatter = JsonFormatter(logs.FIELDS, rename_fields={"asctime": "time", "levelname": "level",
                                                                "name": "logger"})
    ours = handler.formatter

    def switch_to(state: str) -> None:
        if "dispatch" in args.parts:
            (dispatch.install if state == "on" else dispatch.uninstall)()
        if "logging" in args.parts:
            handler.setFormatter(ours if state == "on" else stock_formatter)
    switch = {"off": lambda: switch_to("off"), "on": lambda: switch_to("on")}
    one_round(server, eio_sid, sink, args.event, 2000, "warm")
    if args.components:
        components(server, eio_sid, handler.formatter, stock_formatter)
        return 0
    if args.profile:
        switch[args.profile]()
        profile = cProfile.Profile()
        profile.enable()
        one_round(server, eio_sid, sink, args.event, args.events, "profile")
        profile.disable()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(45)
        return 0
    results: dict[str, list[float]] = {"off": [], "on": []}
    for n in range(args.rounds):
        for label in (("off", "on") if n % 2 == 0 else ("on", "off")):
            switch[label]()
            results[label].append(one_round(server, eio_sid, sink, args.event, args.events, f"{label}{n}"))
            print(f"  round {n} {label}: {results[label][-1]:.1f} µs/event", file=sys.stderr, flush=True)
    off, on = statistics.median(results["off"]), statistics.median(results["on"])
    low_off, low_on = min(results["off"]), min(results["on"])
    print(f"{args.event} ({args.parts}): {args.rounds} rounds x {args.events} events, alternated; medians: "
          f"off {off:.1f} µs/event, on {on:.1f}, on/off {on / off:.2f}x; minima: off {low_off:.1f}, "
          f"on {low_on:.1f}, on/off {low_on / low_off:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
