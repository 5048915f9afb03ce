"""What one message costs the replica it is sent to, and a replica that only delivers it.

The fixed cost of a message, apart from its deliveries, is what decides small rooms. This bench
isolates it: two replicas of a stack on one Redis, a sender connected to replica A and one room
member on replica B, and N messages sent one after another, each acked before the next. It
prints, per stack, the CPU (/proc) of A per message (the handler's whole path: the event read,
auth'd session, rate limit, persistence, logging, the ack, the delivery to the sender itself and
its own copy back from Redis) and of B per message (a message from the queue, delivered to one
client). realtime runs with every feature on, as in bench/compare.py (INFO logging to a file,
rate limits evaluated on every event, persistence, auth); the references are bench/plain_app.py
and bench/node/server.js. Stacks alternate order each round; medians are printed with the ratios
against Node and plain. No figure is checked against a threshold; every process it starts is
stopped by PID before it exits.

    .venv/bin/python bench/sendcost.py                    # ~3 minutes
    .venv/bin/python bench/sendcost.py --smoke            # a few seconds, for CI
    .venv/bin/python bench/sendcost.py --stacks realtime --realtime-root /tmp/rt-before,/tmp/rt-after
    .venv/bin/python bench/sendcost.py --stacks realtime,node \
        --realtime-root ".,.|REALTIME_LOG_LEVEL=WARNING,.|REALTIME_RATE_LIMITS="   # an ablation

A tree may carry `|NAME=value` settings for its replicas (the last word wins over the defaults).
"""
from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
import socketio

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from measure import cpu_seconds  # noqa: E402
from stacks import NodeReplica, PlainApp, RealtimeStack, ensure_node_modules, mint_tokens  # noqa: E402
from realtime.devcluster import RedisServer, Server, free_ports, group_members, stop_all  # noqa: E402

BODY = "x" * 150
WARMUP = 100


def realtime_replica(spec: str, port: int, redis_url: str, secret: str, workdir: Path) -> Server:
    """A replica exactly as bench/compare.py runs it (auth, persistence, INFO logs to a file, rate
    limits), from this checkout or the tree `spec` names, with `spec`'s `|NAME=value` settings."""
    root, *settings = spec.split("|")
    stack = RealtimeStack("realtime", redis_url, workdir, secret=secret)
    stack.root = Path(root).resolve() if root else None
    replica = stack.make_replicas([port])[0]
    replica.env = {**replica.env, **dict(setting.split("=", 1) for setting in settings)}
    return replica


def connect(port: int, token: str | None) -> socketio.Client:
    """A websocket client on /chat, joined to the room."""
    client = socketio.Client(reconnection=False)
    client.connect(f"http://127.0.0.1:{port}", namespaces=["/chat"], transports=["websocket"],
                   auth={"token": token} if token else None, wait_timeout=10)
    if not client.call("join", {"room": "lobby"}, namespace="/chat", timeout=10).get("ok"):
        raise RuntimeError("join refused")
    return client


def send(client: socketio.Client, key: str) -> None:
    """One acked message."""
    ack = client.call("send", {"room": "lobby", "type": "text", "body": BODY, "client_id": key},
                      namespace="/chat", timeout=10)
    if not ack.get("ok"):
        raise RuntimeError(f"send refused: {ack}")


def run_once(label: str, make: Any, redis_server: RedisServer, ports: tuple[int, int], count: int,
             secret: str, workdir: Path, round_number: int) -> dict[str, Any]:
    """Start the two replicas, measure `count` messages, stop them."""
    redis.Redis.from_url(redis_server.url).flushall()
    a, b = make(ports[0], "A"), make(ports[1], "B")
    try:
        for server in (a, b):
            server.start(timeout=120)
        tokens = mint_tokens(secret, "u", 2, 2) if label.startswith("realtime") else [None, None]
        sender, member = connect(ports[0], tokens[0]), connect(ports[1], tokens[1])
        received: list[int] = []
        member.on("message", lambda _m: received.append(1), namespace="/chat")
        for n in range(WARMUP):
            send(sender, f"w{round_number}-{n}")
        time.sleep(0.5)
        pids_a, pids_b = group_members(a.pid), group_members(b.pid)
        before_a, before_b = cpu_seconds(pids_a), cpu_seconds(pids_b)
        started = time.monotonic()
        for n in range(count):
            send(sender, f"m{round_number}-{n}")
        seconds = time.monotonic() - started
        deadline = time.monotonic() + 10
        while len(received) < WARMUP + count and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.3)
        row = {"stack": label, "round": round_number, "messages": count,
               "sender_us": (cpu_seconds(pids_a) - before_a) / count * 1e6,
               "member_us": (cpu_seconds(pids_b) - before_b) / count * 1e6,
               "acked_per_s": count / seconds, "lost": WARMUP + count - len(received)}
        for client in (sender, member):
            client.disconnect()
        return row
    finally:
        stop_all([a, b])


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="one short round (CI)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--messages", type=int, default=1000)
    parser.add_argument("--stacks", default="realtime,plain,node")
    parser.add_argument("--realtime-root", default="",
                        help="comma-separated trees to run realtime from (each is a stack; "
                             "`tree|NAME=value|...` adds settings)")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.messages = 1, 50
    workdir = Path(tempfile.mkdtemp(prefix="bench-sendcost-"))
    redis_port, *ports = free_ports(3)
    redis_server = RedisServer(redis_port, workdir / "redis", log_dir=workdir)
    secret = secrets.token_urlsafe(48)
    trees = [t for t in args.realtime_root.split(",") if t]
    makers: dict[str, Any] = {}
    for stack in args.stacks.split(","):
        if stack == "realtime":
            for tree in trees or [""]:
                label = f"realtime {tree}" if tree else "realtime"
                makers[label] = (lambda t: lambda port, _name: realtime_replica(
                    t, port, redis_server.url, secret, workdir))(tree)
        elif stack == "plain":
            makers["plain"] = lambda port, name: PlainApp(port, redis_server.url, workdir)
        elif stack == "node":
            ensure_node_modules()
            makers["node"] = lambda port, name: NodeReplica(port, redis_server.url, workdir)
        else:
            parser.error(f"unknown stack {stack!r}")
    rows: list[dict[str, Any]] = []
    try:
        redis_server.start(timeout=30)
        for round_number in range(args.rounds):
            labels = list(makers) if round_number % 2 == 0 else list(makers)[::-1]
            for label in labels:
                row = run_once(label, makers[label], redis_server, tuple(ports), args.messages, secret,
                               workdir, round_number)
                rows.append(row)
                print(f"  {label}: sender {row['sender_us']:.0f} µs/msg, member {row['member_us']:.0f} "
                      f"µs/msg, lost {row['lost']}", file=sys.stderr, flush=True)
    finally:
        stop_all([redis_server])
    report(rows, list(makers), args)
    return 0


def report(rows: list[dict[str, Any]], labels: list[str], args: argparse.Namespace) -> None:
    """Medians per stack and the ratios against node and plain."""
    medians = {label: {key: statistics.median(r[key] for r in rows if r["stack"] == label)
                       for key in ("sender_us", "member_us", "acked_per_s")} for label in labels}
    lost = {label: sum(r["lost"] for r in rows if r["stack"] == label) for label in labels}
    print(f"cost of one message: {args.rounds} round(s) x {args.messages} acked messages, one sender "
          f"on replica A, one member on replica B, order alternated; medians")
    width = max(len("stack"), *map(len, labels))
    print(f"{'stack':<{width}} {'sender µs/msg':>14} {'member µs/msg':>14} {'acked msg/s':>12} {'lost':>5}"
          f" {'sender vs node':>15} {'sender vs plain':>16}")
    for label in labels:
        m = medians[label]
        ratio = lambda ref: (f"{m['sender_us'] / medians[ref]['sender_us']:.2f}x"  # noqa: E731
                             if ref in medians and ref != label else "-")
        print(f"{label:<{width}} {m['sender_us']:>14.0f} {m['member_us']:>14.0f} {m['acked_per_s']:>12.0f} "
              f"{lost[label]:>5} {ratio('node'):>15} {ratio('plain'):>16}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "medians": medians, "lost": lost}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
