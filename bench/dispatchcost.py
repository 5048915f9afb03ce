"""CPU per /chat event dispatched in one gevent-patched process, and the pieces of it around the handler.

One app from the factory on the memory store (INFO JSON logging to a file, metrics, rate limits
evaluated, the transport layer on: as bench/compare.py runs a replica, without Redis), one client
connected and joined through Flask-SocketIO's test client, its environ then kept as a served
websocket's (the Socket.IO path, realtime.transport.wsdirect's KEPT_ENVIRON, a KeptEnvirons).
Encoded Socket.IO packets of one event are handed to python-socketio's `_handle_eio_message` as
a websocket message would be; every packet the server sends back (the ack, the sender's own copy)
is encoded and dropped. Prints µs of this process's CPU per event (time.process_time; median and
minimum of the rounds), then the pieces around the handler timed alone (the minimum of many short
repeats: other work on the machine only ever adds). `--profile` prints cProfile's top functions of
one round instead. No figure is checked against a threshold.

    .venv/bin/python bench/dispatchcost.py                          # send, 12 rounds x 5 000
    .venv/bin/python bench/dispatchcost.py --event typing
    .venv/bin/python bench/dispatchcost.py --profile                # where a send's time goes
    .venv/bin/python bench/dispatchcost.py --smoke                  # seconds, for CI
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
from realtime.extensions import socketio  # noqa: E402
from realtime.transport import wsdirect  # noqa: E402
from realtime.transport.keptenviron import KeptEnvirons  # noqa: E402

BODY = "x" * 150


def build(workdir: Path) -> tuple:
    """The app, its python-socketio server, one connected, joined client's engine.io sid, the sink."""
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
    sink: list = []
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


def fastest(call, number: int = 500, repeat: int = 80) -> float:
    """µs per call: the minimum over `repeat` runs of `number` calls."""
    return min(timeit.repeat(call, number=number, repeat=repeat)) / number * 1e6


def components(app, server, eio_sid: str, repeat: int = 80) -> dict[str, float]:
    """µs per call of the pieces around a handler, each alone."""
    sid = server.manager.sid_from_eio_sid(eio_sid, "/chat")
    log = logging.getLogger("realtime.events")
    handler = next(h for h in logging.getLogger().handlers if getattr(h, "realtime", False))
    extra = {"event": "send", "namespace": "/chat", "outcome": "ok", "room": "lobby", "duration_ms": 0.12}
    record = log.makeRecord(log.name, logging.INFO, "", 0, "%s %s %s", ("/chat", "send", "ok"), None, extra=extra)
    handler.filter(record)

    encoded = packets("send", 1, "c")[0]

    def context() -> None:
        with app.request_context(server.environ[eio_sid]):
            pass

    def best_of(call) -> float:
        return fastest(call, repeat=repeat)
    return {
        "packet decode (python-socketio)": best_of(lambda: server.packet_class(encoded_packet=encoded)),
        "Flask-SocketIO dispatch to a no-op handler": best_of(
            lambda: socketio._handle_event(lambda payload: None, "look", "/chat", sid, {"room": "lobby"})),
        "of it: request context push + pop": best_of(context),
        "event log line, whole (Logger.log)": best_of(lambda: log.log(logging.INFO, "%s %s %s", "/chat", "send",
                                                                       "ok", extra=extra)),
        "of it: JSON format": best_of(lambda: handler.format(record)),
        "of it: context filter (outside a request context)": best_of(lambda: handler.filter(record)),
    }


def main(argv: list[str] | None = None) -> int:
    """Rounds of one event, then its pieces (or a profile)."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--event", default="send", choices=("send", "typing"))
    parser.add_argument("--events", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--profile", action="store_true", help="cProfile one round instead")
    parser.add_argument("--smoke", action="store_true", help="one short round, few repeats (CI)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.events = 1, 200
    workdir = Path(tempfile.mkdtemp(prefix="bench-dispatchcost-"))
    state = transport.install({"FAST_PATHS": "on", "MAX_HTTP_BUFFER_SIZE": 1_000_000})
    app, server, eio_sid, sink = build(workdir)
    one_round(server, eio_sid, sink, args.event, 2000, "warm")
    if args.profile:
        profile = cProfile.Profile()
        profile.enable()
        one_round(server, eio_sid, sink, args.event, args.events, "profile")
        profile.disable()
        pstats.Stats(profile).sort_stats("cumulative").print_stats(45)
        return 0
    spent = [one_round(server, eio_sid, sink, args.event, args.events, f"r{n}") for n in range(args.rounds)]
    print(f"{args.event}, transport layer {state}: {args.rounds} rounds x {args.events} events; "
          f"median {statistics.median(spent):.1f} µs/event, minimum {min(spent):.1f}")
    for name, micros in components(app, server, eio_sid, repeat=2 if args.smoke else 80).items():
        print(f"  {name}: {micros:.2f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
