"""The external-emitter path of the Python stacks: send to a room through Redis at a fixed rate.

`--stack realtime` uses realtime's own Emitter (persists, then publishes); `--stack plain` uses
Flask-SocketIO's write-only `SocketIO(message_queue=...)`, as the Flask-SocketIO docs show. Prints
one JSON line: {sent, errors, send_lag_max_ms, cpu_s}. Bodies are what bench/node/loadgen.js expects.

    python bench/emit.py --stack plain --redis-url URL --room R --run ID --rate 20 --duration 10
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
BODY_CHARS = 150


def body(run: str, index: int) -> str:
    """The loadgen's body format: run, index, send time (epoch ms), padding."""
    head = f"{run}|{index}|{time.time() * 1000:.3f}|"
    return head + "x" * (BODY_CHARS - len(head))


def realtime_sender(redis_url: str, room: str, root: Path) -> Callable[[str, str], None]:
    """Send through realtime.emitter.Emitter (persisted, then published to every replica)."""
    sys.path.insert(0, str(root))
    from realtime.emitter import Emitter
    emitter = Emitter(redis_url)
    return lambda text, key: emitter.send(room=room, body=text, client_id=key)


def plain_sender(redis_url: str, room: str, _root: Path) -> Callable[[str, str], None]:
    """Send through Flask-SocketIO's external-process emitter on bench/plain_app.py's channel."""
    from flask_socketio import SocketIO
    socketio = SocketIO(message_queue=redis_url, channel="plain-bench")
    return lambda text, key: socketio.emit("message", {"room": room, "type": "text", "body": text},
                                           to=room, namespace="/chat")


def main(argv: list[str] | None = None) -> int:
    """Send `rate` messages per second for `duration` seconds; print what happened as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", choices=["realtime", "plain"], required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--room", required=True)
    parser.add_argument("--run", required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--realtime-root", type=Path, default=ROOT, help="the tree of realtime to import")
    args = parser.parse_args(argv)
    sender = realtime_sender if args.stack == "realtime" else plain_sender
    send = sender(args.redis_url, args.room, args.realtime_root)
    total, errors, lag_max = int(args.rate * args.duration), 0, 0.0
    started = time.monotonic()
    for index in range(total):
        due = started + index / args.rate
        time.sleep(max(0.0, due - time.monotonic()))
        lag_max = max(lag_max, time.monotonic() - due)
        try:
            send(body(args.run, index), f"{args.run}-{index}")
        except Exception as error:  # counted and reported: the bench shows it, it must not stop
            errors += 1
            print(f"emit {index}: {error!r}", file=sys.stderr)
    usage = time.process_time()
    print(json.dumps({"sent": total, "errors": errors, "send_lag_max_ms": lag_max * 1000,
                      "cpu_s": usage}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
