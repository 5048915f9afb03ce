"""Many small rooms, each with its members on one replica: realtime with per-room channels on vs off.

Starts a redis-server (AOF everysec) and, per session, 3 realtime replicas (bench/stacks.py's
RealtimeStack: auth, persistence, per-event logging, rate limits, metrics) with
REALTIME_MQ_ROOM_CHANNELS=on or off. R rooms of M members; room i's members connect to replica
i mod 3. One member per room sends (`--layout local`: on the members' replica; `remote`: on the
next replica, so the room spans two replicas and the third one has nobody there); messages go
round-robin over the rooms at a fixed total rate. With room channels off every replica receives
every message through Redis; on, only replicas with members do. Prints server and Redis CPU per
delivery of each session, the medians and the on/off ratio. The modes alternate order across
repetitions; every process is stopped by PID. No figure is checked against a threshold.

    .venv/bin/python bench/rooms.py            # 2 layouts x 2 modes x 2 repetitions, ~3 minutes
    .venv/bin/python bench/rooms.py --smoke    # a few seconds per session
"""
from __future__ import annotations

import argparse
import json
import os
import selectors
import signal
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import report  # noqa: E402
from loadgen import ACK, MESSAGE, WsClient, body, parse_message  # noqa: E402
from measure import BenchError, pids, raise_fd_limit, settle, snapshot  # noqa: E402
from stacks import RealtimeStack, mint_tokens, redis_with_aof  # noqa: E402
from realtime.devcluster import HOST, StartupError, free_port, stop_all  # noqa: E402

REPLICAS = 3
DRAIN_TIMEOUT = 15.0


@dataclass
class Plan:
    """What one invocation measures."""

    rooms: int
    members: int
    rate: float          # messages per second over all rooms
    duration: float
    repetitions: int
    layouts: tuple[str, ...]
    modes: tuple[str, ...] = ("on", "off")


FULL = Plan(rooms=150, members=3, rate=450, duration=8, repetitions=2, layouts=("local", "remote"))
SMOKE = Plan(rooms=12, members=2, rate=20, duration=2, repetitions=1, layouts=("local", "remote"))


class RoomsStack(RealtimeStack):
    """realtime as bench/compare.py runs it, with the room-channels setting of this session."""

    mode = "on"

    def env(self) -> dict[str, str]:
        """compare.py's environment plus REALTIME_MQ_ROOM_CHANNELS."""
        return {**super().env(), "REALTIME_MQ_ROOM_CHANNELS": self.mode}


@dataclass
class Member:
    """One connection: its room, whether it sends, what it received."""

    client: WsClient
    room: int
    sends: bool
    got: set[int] = field(default_factory=set)


# ---------------------------------------------------------------------------------------------
# the clients


def room_name(index: int) -> str:
    """A valid room name (not 20 characters: that shape rides on the main channel)."""
    return f"room-{index:04d}"


def connect(stack: RoomsStack, plan: Plan, layout: str) -> list[Member]:
    """Connect and join every member (one after the other), then go non-blocking."""
    count = plan.rooms * plan.members
    tokens = mint_tokens(stack.secret, "member", count, count)
    members = []
    for room in range(plan.rooms):
        for n in range(plan.members):
            sends = n == 0
            replica = (room + (1 if sends and layout == "remote" else 0)) % len(stack.replicas)
            client = WsClient(HOST, stack.replicas[replica].port)
            client.join({"token": tokens[len(members)]}, room_name(room))
            members.append(Member(client, room, sends))
    for member in members:
        member.client.sock.setblocking(False)
    return members


class Drive:
    """Send at a fixed rate round-robin over the rooms; count deliveries, acks and latency."""

    def __init__(self, members: list[Member]):
        self.members = members
        self.senders = [m for m in members if m.sends]
        self.selector = selectors.DefaultSelector()
        for member in members:
            self.selector.register(member.client.sock, selectors.EVENT_READ, member)
        self.acked: dict[int, set[int]] = {m.room: set() for m in self.senders}
        self.pending: dict[tuple[int, int], int] = {}  # (room, ack id) -> key
        self.latencies: list[float] = []
        self.frames = self.duplicates = self.refused = 0
        self.sent = 0

    def run(self, rate: float, duration: float) -> dict[str, Any]:
        """The whole run; the figures."""
        start = time.monotonic()
        for k in range(int(rate * duration)):
            due = start + k / rate
            while (wait := due - time.monotonic()) > 0:
                self.pump(wait)
            self.send(self.senders[k % len(self.senders)])
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while (self.pending or self.missing()) and time.monotonic() < deadline:
            self.pump(0.05)
        return self.figures()

    def send(self, member: Member) -> None:
        """One `send` to the member's room, with an ack id."""
        self.sent += 1
        key = member.room * 1_000_000 + self.sent
        ack_id = self.sent
        self.pending[(member.room, ack_id)] = key
        payload = {"room": room_name(member.room), "type": "text", "body": body(member.room, self.sent),
                   "client_id": f"bench-{self.sent}"}
        member.client.send(f'42/chat,{ack_id}' + json.dumps(["send", payload], separators=(",", ":")))

    def pump(self, timeout: float) -> None:
        """Read what arrived within `timeout` seconds."""
        for key, _ in self.selector.select(max(0.0, timeout)):
            member = key.data
            try:
                member.client.fill()
            except BlockingIOError:
                continue
            now = time.time()
            for text in member.client.packets():
                if text.startswith(MESSAGE):
                    self.delivered(member, text, now)
                elif text.startswith(ACK):
                    self.ack(member, text)

    def delivered(self, member: Member, text: str, now: float) -> None:
        """A `message` frame: count it, once per member and message."""
        room, seq, sent, _ = parse_message(text)
        self.frames += 1
        key = room * 1_000_000 + seq
        if key in member.got:
            self.duplicates += 1
            return
        member.got.add(key)
        self.latencies.append((now - sent) * 1000)

    def ack(self, member: Member, text: str) -> None:
        """A `send` ack: the message counts as expected for every member of its room."""
        digits = text[len(ACK):text.index("[")]
        key = self.pending.pop((member.room, int(digits)), None)
        reply = json.loads(text[len(ACK) + len(digits):])[0]
        if key is not None and isinstance(reply, dict) and reply.get("ok"):
            self.acked[member.room].add(key)
        else:
            self.refused += 1

    def missing(self) -> int:
        """Expected deliveries not received yet."""
        return sum(len(self.acked[m.room] - m.got) for m in self.members)

    def figures(self) -> dict[str, Any]:
        """Deliveries, loss, duplicates, latency percentiles."""
        ordered = sorted(self.latencies)
        pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")
        expected = sum(len(self.acked[m.room]) for m in self.members)
        return {"sent": self.sent, "acked": sum(map(len, self.acked.values())), "refused": self.refused,
                "unacked": len(self.pending), "expected": expected, "lost": self.missing(),
                "duplicates": self.duplicates, "frames": self.frames, "p50_ms": pick(0.5),
                "p99_ms": pick(0.99), "max_ms": ordered[-1] if ordered else float("nan")}


# ---------------------------------------------------------------------------------------------
# a session: one mode and layout, 3 fresh replicas


def session(redis: Any, workdir: Path, plan: Plan, mode: str, layout: str, repetition: int) -> dict:
    """Start the replicas in `mode`, connect the rooms, run once, stop; the row."""
    import redis as redis_py
    client = redis_py.Redis.from_url(redis.url)
    client.flushall()
    stack = RoomsStack(f"realtime-{mode}", redis.url, workdir / "logs")
    stack.mode = mode
    members: list[Member] = []
    try:
        stack.start(REPLICAS, with_nginx=False)
        servers = pids(stack.replicas)
        settle(servers)
        connecting = time.monotonic()
        members = connect(stack, plan, layout)
        connect_s = time.monotonic() - connecting
        room_channels = len(client.pubsub_channels("realtime:room:*"))
        settle(servers + [redis.pid])
        groups = {"server": servers, "redis": [redis.pid], "generator": [os.getpid()],
                  **{f"replica{n}": pids([r]) for n, r in enumerate(stack.replicas)}}
        before, out_before = snapshot(groups), redis_output_bytes(client)
        result = Drive(members).run(plan.rate, plan.duration)
        after, out_after = snapshot(groups), redis_output_bytes(client)
    finally:
        for member in members:
            member.client.close()
        stop_all(stack.processes())
        client.close()
    wall = after["wall"] - before["wall"]
    delta = {k: after[k] - before[k] for k in ("server", "redis", "generator", "machine")}
    frames = result["frames"]
    ours = delta["server"] + delta["redis"] + delta["generator"]
    return {"mode": mode, "layout": layout, "repetition": repetition, "rooms": plan.rooms,
            "members": plan.members, "rate": plan.rate, "duration": plan.duration, **result,
            "room_channels": room_channels, "connect_s": connect_s, "deliveries_per_s": frames / wall,
            "redis_out_bytes_per_msg": (out_after - out_before) / max(1, result["sent"]),
            "server_us": delta["server"] / frames * 1e6 if frames else float("nan"),
            "redis_us": delta["redis"] / frames * 1e6 if frames else float("nan"),
            "server_cpu_pct": delta["server"] / wall * 100,
            "replica_cpu_pct": [round((after[f"replica{n}"] - before[f"replica{n}"]) / wall * 100, 1)
                                for n in range(REPLICAS)],
            "generator_cpu_pct": delta["generator"] / wall * 100,
            "other_cpu_pct": max(0.0, delta["machine"] - ours) / wall * 100,
            "code": f"tree {RealtimeStack.root}" if RealtimeStack.root else report.code_fingerprint()}


def redis_output_bytes(client: Any) -> int:
    """Everything Redis has written to its clients so far (pub/sub deliveries included)."""
    return int(client.info("stats")["total_net_output_bytes"])


def progress(row: dict) -> None:
    """One line per session on stderr."""
    print(f"  {row['layout']:<6} room channels {row['mode']:<3} rep={row['repetition']}: "
          f"{row['deliveries_per_s']:.0f} dlv/s lost={row['lost']} dup={row['duplicates']} "
          f"server={row['server_us']:.1f}us/dlv redis={row['redis_us']:.1f}us/dlv "
          f"replicas={row['replica_cpu_pct']}% redis out={row['redis_out_bytes_per_msg']:.0f}B/msg "
          f"channels={row['room_channels']} connect+join={row['connect_s']:.1f}s "
          f"other={row['other_cpu_pct']:.0f}%",
          file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# tables


def summarize(rows: list[dict]) -> list[dict]:
    """Medians per layout and mode (losses summed)."""
    out = []
    for layout in dict.fromkeys(r["layout"] for r in rows):
        for mode in dict.fromkeys(r["mode"] for r in rows):
            group = [r for r in rows if r["layout"] == layout and r["mode"] == mode]
            if not group:
                continue
            median = lambda key: statistics.median(r[key] for r in group)
            out.append({"layout": layout, "mode": mode, "runs": len(group), "rooms": group[0]["rooms"],
                        "members": group[0]["members"], "rate": group[0]["rate"],
                        "lost": sum(r["lost"] for r in group), "expected": sum(r["expected"] for r in group),
                        "duplicates": sum(r["duplicates"] for r in group),
                        **{key: median(key) for key in ("deliveries_per_s", "p50_ms", "p99_ms",
                                                        "server_us", "redis_us", "room_channels",
                                                        "redis_out_bytes_per_msg", "connect_s",
                                                        "generator_cpu_pct", "other_cpu_pct")}})
    return out


def render(summaries: list[dict]) -> str:
    """The medians table and the on/off ratios."""
    fmt = report.fmt
    lines = [[s["layout"], s["mode"], str(s["rooms"]), str(s["members"]), fmt(s["rate"], "g"),
              fmt(s["deliveries_per_s"], ".0f"), f"{s['lost']}/{s['expected']}", str(s["duplicates"]),
              fmt(s["p50_ms"]), fmt(s["p99_ms"]), fmt(s["server_us"]), fmt(s["redis_us"]),
              fmt(s["redis_out_bytes_per_msg"], ".0f"), fmt(s["room_channels"], ".0f"),
              fmt(s["other_cpu_pct"], ".0f")] for s in summaries]
    table = report.markdown(["layout", "room channels", "rooms", "members", "msg/s", "deliveries/s",
                             "lost", "dup", "p50 ms", "p99 ms", "server µs/dlv", "redis µs/dlv",
                             "redis out B/msg", "channels", "other cpu%"], lines, left=2)
    ratios = []
    for layout in dict.fromkeys(s["layout"] for s in summaries):
        by_mode = {s["mode"]: s for s in summaries if s["layout"] == layout}
        if {"on", "off"} <= by_mode.keys():
            on, off = by_mode["on"], by_mode["off"]
            ratios.append([layout, fmt(on["server_us"] / off["server_us"], ".2f") + "x",
                           fmt((on["server_us"] + on["redis_us"]) / (off["server_us"] + off["redis_us"]),
                               ".2f") + "x",
                           fmt(on["redis_out_bytes_per_msg"] / off["redis_out_bytes_per_msg"], ".2f") + "x"])
    return table + "\n\non / off (below 1.00x: room channels save it):\n\n" + report.markdown(
        ["layout", "server µs/dlv", "+redis µs/dlv", "redis out B/msg"], ratios)


# ---------------------------------------------------------------------------------------------
# main


def main(argv: list[str] | None = None) -> int:
    """Run the plan (modes alternating), print the tables, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny, a few seconds per session")
    parser.add_argument("--rooms", type=int)
    parser.add_argument("--members", type=int, help="connections per room (the sender is one)")
    parser.add_argument("--rate", type=float, help="messages per second over all rooms")
    parser.add_argument("--duration", type=float, help="seconds of sending per session")
    parser.add_argument("--repetitions", type=int, help="sessions per layout and mode (order alternates)")
    parser.add_argument("--layouts", help="comma-separated: local (sender with its room), remote")
    parser.add_argument("--realtime-root", type=Path,
                        help="run the replicas from this tree (e.g. `git archive HEAD | tar -x -C DIR`, "
                             "so that edits in the checkout during the run do not reach them)")
    parser.add_argument("--json", type=Path, help="where to write the results (default: under run/bench/)")
    args = parser.parse_args(argv)
    RealtimeStack.root = args.realtime_root.resolve() if args.realtime_root else None
    base = SMOKE if args.smoke else FULL
    plan = Plan(rooms=args.rooms or base.rooms, members=args.members or base.members,
                rate=args.rate or base.rate, duration=args.duration or base.duration,
                repetitions=args.repetitions or base.repetitions,
                layouts=tuple(args.layouts.split(",")) if args.layouts else base.layouts)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = ROOT / "run" / "bench" / ("rooms-" + time.strftime("%Y%m%d-%H%M%S"))
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    redis = None
    started = time.time()
    try:
        raise_fd_limit()
        redis = redis_with_aof(free_port(), workdir)
        redis.start(timeout=30)
        for repetition in range(plan.repetitions):
            modes = plan.modes if repetition % 2 == 0 else plan.modes[::-1]
            for layout in plan.layouts:
                for mode in modes:
                    rows.append(session(redis, workdir, plan, mode, layout, repetition))
                    progress(rows[-1])
    except (StartupError, BenchError, OSError) as error:
        print(f"bench failed: {error!r}\n(logs in {workdir / 'logs'})", file=sys.stderr)
        return 1
    finally:
        if redis is not None:
            stop_all([redis])
    summaries = summarize(rows)
    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": report.machine(),
               "code": f"tree {RealtimeStack.root}" if RealtimeStack.root else report.code_version(),
               "argv": argv if argv is not None else sys.argv[1:],
               "seconds": time.time() - started, "plan": vars(plan), "summaries": summaries,
               "runs": rows}
    json_path = args.json or workdir / "results.json"
    json_path.write_text(json.dumps(results, indent=2))
    print(f"machine: {results['machine']['cpus']} cpus, load {results['machine']['load']}; "
          f"code {results['code']}; {results['seconds']:.0f} s")
    print(render(summaries))
    print(f"\nJSON: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
