"""What persisting every message costs on the delivery path: realtime vs plain Flask-SocketIO.

Starts, on free 127.0.0.1 ports: a redis-server (AOF everysec, as docker-compose runs it), one
realtime replica (`realtime serve`) and bench/plain_app.py under gunicorn with the same
config/gunicorn.conf.py, both on that Redis as message queue. Then it drives the same fan-out
workload through each (N receivers in one room, a few senders at a fixed total rate, ~150-char
bodies, websocket transport), alternating which stack goes first, and prints a table. Every
process it starts is stopped by PID before it exits. No figure is checked against a threshold.

    .venv/bin/python bench/persistence.py            # full run, several minutes
    .venv/bin/python bench/persistence.py --smoke    # a few seconds, for CI
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]  # realtime.devcluster, and loadgen next to us

import loadgen  # noqa: E402
from measure import cpu_seconds, machine_busy_seconds  # noqa: E402
from report import git  # noqa: E402
from stacks import PlainApp, redis_with_aof  # noqa: E402
from realtime.devcluster import (HOST, RedisServer, Replica, Server, StartupError,  # noqa: E402
                                   clean_environ, free_ports, group_members,
                                   start_all, stop_all)

# High enough never to refuse the benchmark, so the limiter still runs on every event as in
# production (--no-rate-limits turns it off to isolate persistence further).
RATE_LIMITS = "connect=1000000/minute; join=1000000/minute; send=1000000/second"
READY_TIMEOUT = 120.0
STARTED: list[Server] = []  # every server process this run started, stopped in main's finally


@dataclass(frozen=True)
class Workload:
    """One cell of the table: receivers in one room, senders, total send rate, seconds of sending."""

    clients: int
    rate: float
    senders: int
    duration: float


@dataclass(frozen=True)
class Plan:
    """The cells, how many times each runs per stack, and an unreported warm-up run."""

    workloads: tuple[Workload, ...]
    repetitions: int
    warmup: Workload | None


FULL = Plan((Workload(50, 20, 2, 10), Workload(50, 100, 2, 10),
             Workload(200, 20, 2, 10), Workload(200, 50, 2, 10)),
            repetitions=3, warmup=Workload(20, 20, 1, 2))
SMOKE = Plan((Workload(10, 20, 1, 1.5),), repetitions=1, warmup=None)


class BenchError(RuntimeError):
    """A run could not complete (a process failed, refused or hung)."""


# ---------------------------------------------------------------------------------------------
# the two stacks


def ours_env(redis_url: str, workdir: Path, rate_limits: bool) -> dict[str, str]:
    """The replica's environment: the bench's Redis, demo login, nothing from the developer's shell."""
    return {**clean_environ(), "REALTIME_REDIS_URL": redis_url,
            "REALTIME_JWT_SECRET_KEY": secrets.token_urlsafe(48), "REALTIME_DEMO_LOGIN": "1",
            "REALTIME_ENV_FILE": str(workdir / "none.env"), "REALTIME_LOG_LEVEL": "WARNING",
            "REALTIME_RATE_LIMITS": RATE_LIMITS if rate_limits else "",
            "REALTIME_LOGIN_RATE_LIMIT": "1000000/minute",
            "REALTIME_HTTP_RATE_LIMIT": "1000000/minute"}


@dataclass
class Stack:
    """A server under test and how its clients get their tokens."""

    name: str
    server: Server
    tokens: Callable[[list[str]], list[str | None]]


def demo_tokens(base_url: str) -> Callable[[list[str]], list[str | None]]:
    """Tokens from the replica's demo login (POST /api/auth/token), one per user, cached."""
    cache: dict[str, str] = {}

    def tokens(names: list[str]) -> list[str | None]:
        """The access token of each user name."""
        for name in names:
            if name not in cache:
                request = urllib.request.Request(
                    base_url + "/api/auth/token", data=json.dumps({"username": name}).encode(),
                    headers={"Content-Type": "application/json"}, method="POST")
                with urllib.request.urlopen(request, timeout=10) as response:
                    cache[name] = json.load(response)["access_token"]
        return [cache[name] for name in names]
    return tokens


def snapshot(server: Server, redis: RedisServer, generators: list[int]) -> dict[str, Any]:
    """CPU seconds so far of the server (gunicorn master + worker), redis, each generator, and
    the whole machine (the rest is other people's work competing for the same cores)."""
    return {"server": cpu_seconds(group_members(server.pid)), "redis": cpu_seconds([redis.pid]),
            "generators": [cpu_seconds([pid]) for pid in generators],
            "machine": machine_busy_seconds(), "wall": time.monotonic()}


def settle(server: Server, redis: RedisServer, timeout: float = 15.0) -> None:
    """Wait until the server and redis are idle, so one run's tail is not billed to the next."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = snapshot(server, redis, [])
        time.sleep(0.3)
        after = snapshot(server, redis, [])
        busy = after["server"] - before["server"] + after["redis"] - before["redis"]
        if busy / (after["wall"] - before["wall"]) < 0.03:
            return


# ---------------------------------------------------------------------------------------------
# one run


def expect(end: Any, timeout: float, what: str) -> Any:
    """The payload of the next `(kind, payload)` from a generator; raise on error or silence."""
    if not end.poll(timeout):
        raise BenchError(f"{what}: no answer within {timeout:.0f}s")
    kind, payload = end.recv()
    if kind == "error":
        raise BenchError(f"{what}: {payload}")
    return payload


def generator(target: Callable, *args: Any) -> None:
    """A generator process's entry: SIGTERM kills it outright (not our orchestrator's handler)."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    target(*args)


def spawn(target: Callable, stack: Stack, room: str, names: list[str]) -> tuple[Any, Any]:
    """Start a generator process for `names`; it reports ready once its clients have joined."""
    tokens = stack.tokens(names)
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe()
    process = context.Process(target=generator, daemon=True,
                              args=(target, HOST, stack.server.port, room, tokens, child))
    process.start()
    return process, parent


def finish(processes: list[Any], ends: list[Any]) -> None:
    """Tell the generators to disconnect, then make sure they are gone (by their own PIDs)."""
    for end in ends:
        try:
            end.send(("close",))
        except OSError:
            pass
    for process in processes:
        process.join(10)
        if process.is_alive():
            process.terminate()
            process.join(5)


def run_once(stack: Stack, redis: RedisServer, load: Workload) -> dict[str, Any]:
    """Drive one workload through one stack; the figures of that run."""
    room = f"bench-{uuid.uuid4().hex[:8]}"
    processes, ends = [], []
    try:
        names = [f"r{n:03d}" for n in range(load.clients)]
        receivers, r_end = spawn(loadgen.receive, stack, room, names)
        processes.append(receivers)
        ends.append(r_end)
        expect(r_end, READY_TIMEOUT, f"{stack.name} receivers")
        senders, s_end = spawn(loadgen.send, stack, room, [f"s{n}" for n in range(load.senders)])
        processes.append(senders)
        ends.append(s_end)
        expect(s_end, READY_TIMEOUT, f"{stack.name} senders")
        settle(stack.server, redis)
        before = snapshot(stack.server, redis, [receivers.pid, senders.pid])
        s_end.send(("go", load.rate, load.duration))
        sent = expect(s_end, load.duration + 60, f"{stack.name} senders")
        r_end.send(("expect", sent["acked"]))
        got = expect(r_end, 60, f"{stack.name} receivers")
        after = snapshot(stack.server, redis, [receivers.pid, senders.pid])
    finally:
        finish(processes, ends)
    return figures(stack.name, load, sent, got, before, after)


def figures(name: str, load: Workload, sent: dict, got: dict, before: dict, after: dict) -> dict:
    """The row of one run: delivery, loss, latency, CPU per delivery."""
    wall = after["wall"] - before["wall"]
    frames = got["frames"] + sent["echoes"]  # every `message` frame the server wrote
    per_frame = lambda key: (after[key] - before[key]) / frames * 1e6 if frames else float("nan")
    generators = [(a - b) / wall * 100 for a, b in zip(after["generators"], before["generators"])]
    ours = sum(after[k] - before[k] for k in ("server", "redis")) + sum(generators) * wall / 100
    return {"stack": name, **asdict(load), "sent": sent["sent"], "acked": len(sent["acked"]),
            "unacked": sent["unacked"], "errors": sent["errors"],
            "send_lag_max_ms": sent["lag_max"] * 1000,
            "deliveries_per_s": got["received"] / load.duration, "expected": got["expected"],
            "lost": got["missing"], "duplicates": got["duplicates"], "unexpected": got["unexpected"],
            "reorders": got["reorders"], "p50_ms": got["p50"], "p99_ms": got["p99"],
            "max_ms": got["max"],
            "frames": frames, "server_us": per_frame("server"), "redis_us": per_frame("redis"),
            "server_cpu_pct": (after["server"] - before["server"]) / wall * 100,
            "redis_cpu_pct": (after["redis"] - before["redis"]) / wall * 100,
            "generator_cpu_pct": max(generators), "window_s": wall,
            "other_cpu_pct": max(0.0, after["machine"] - before["machine"] - ours) / wall * 100}


# ---------------------------------------------------------------------------------------------
# the plan, the table


def run_plan(plan: Plan, stacks: list[Stack], redis: RedisServer) -> list[dict]:
    """Every workload `repetitions` times per stack, alternating which stack goes first."""
    if plan.warmup:
        for stack in stacks:
            run_once(stack, redis, plan.warmup)
    rows = []
    for load in plan.workloads:
        for repetition in range(plan.repetitions):
            order = stacks if repetition % 2 == 0 else stacks[::-1]
            for stack in order:
                row = run_once(stack, redis, load)
                row["repetition"] = repetition
                rows.append(row)
                progress(row)
    return rows


def progress(row: dict) -> None:
    """One line per run on stderr, so a long run shows it is alive."""
    print(f"  {row['stack']:<6} clients={row['clients']} rate={row['rate']:g}/s "
          f"rep={row['repetition']}: lost={row['lost']} p99={row['p99_ms']:.1f}ms "
          f"server={row['server_us']:.1f}us/delivery generator={row['generator_cpu_pct']:.0f}%",
          file=sys.stderr, flush=True)


def summarize(rows: list[dict], name: str, load: Workload) -> dict:
    """Medians over the repetitions of one stack and workload (max: the maximum; losses: summed)."""
    runs = [r for r in rows if r["stack"] == name and Workload(r["clients"], r["rate"], r["senders"],
                                                               r["duration"]) == load]
    median = lambda key: statistics.median(r[key] for r in runs)
    total = lambda key: sum(r[key] for r in runs)
    return {"stack": name, **asdict(load), "runs": len(runs),
            "deliveries_per_s": median("deliveries_per_s"), "lost": total("lost"),
            "expected": total("expected"), "duplicates": total("duplicates"),
            "unacked": total("unacked"), "reorders": total("reorders"),
            "errors": sum(sum(r["errors"].values()) for r in runs),
            "p50_ms": median("p50_ms"), "p99_ms": median("p99_ms"),
            "max_ms": max(r["max_ms"] for r in runs), "server_us": median("server_us"),
            "redis_us": median("redis_us"), "server_cpu_pct": median("server_cpu_pct"),
            "redis_cpu_pct": median("redis_cpu_pct"),
            "send_lag_max_ms": max(r["send_lag_max_ms"] for r in runs),
            "other_cpu_pct": median("other_cpu_pct"),
            "generator_cpu_pct": max(r["generator_cpu_pct"] for r in runs)}


# (heading, width, format of the value); the first column is left-aligned, the others right.
COLUMNS = [("stack", 6, ""), ("clients", 7, ""), ("rate/s", 6, "g"), ("deliveries/s", 12, ".0f"),
           ("lost", 13, ""), ("dup", 4, ""), ("p50 ms", 7, ".1f"), ("p99 ms", 7, ".1f"),
           ("max ms", 7, ".1f"), ("server us/dlv", 13, ".1f"), ("redis us/dlv", 12, ".1f"),
           ("server cpu%", 11, ".0f"), ("redis cpu%", 10, ".1f"), ("gen cpu%", 8, ".0f"),
           ("other cpu%", 10, ".0f"), ("reordered", 9, "")]


def table(summaries: list[dict]) -> str:
    """The result table: one line per stack and workload."""
    align = lambda n: "<" if n == 0 else ">"
    lines = ["  ".join(f"{head:{align(n)}{width}}" for n, (head, width, _) in enumerate(COLUMNS))]
    for s in summaries:
        values = [s["stack"], s["clients"], s["rate"], s["deliveries_per_s"],
                  f"{s['lost']}/{s['expected']}", s["duplicates"], s["p50_ms"], s["p99_ms"],
                  s["max_ms"], s["server_us"], s["redis_us"], s["server_cpu_pct"],
                  s["redis_cpu_pct"], s["generator_cpu_pct"], s["other_cpu_pct"],
                  s["reorders"] if s["stack"] == "ours" else "-"]
        lines.append("  ".join(f"{value:{align(n)}{width}{fmt}}"
                               for n, ((_, width, fmt), value) in enumerate(zip(COLUMNS, values))))
    return "\n".join(lines)


def ratios(summaries: list[dict], workloads: tuple[Workload, ...]) -> str:
    """ours/plain per workload (server CPU per delivery, with redis, p99), and ours' extra CPU
    per message: what persisting (and the rest of our send path) adds before the fan-out."""
    lines = ["ours/plain  clients  rate/s  server cpu/dlv  server+redis cpu/dlv  p99 latency"
             "  extra server us/msg  extra redis us/msg"]
    for load in workloads:
        ours, plain = (next(s for s in summaries if s["stack"] == name and s["clients"] == load.clients
                            and s["rate"] == load.rate) for name in ("ours", "plain"))
        both = lambda s: s["server_us"] + s["redis_us"]
        per_message = load.clients + load.senders  # senders are room members: they get it too
        extra = lambda key: (ours[key] - plain[key]) * per_message
        server = ours["server_us"] / plain["server_us"]
        lines.append(f"{'':<10}  {load.clients:>7}  {load.rate:>6g}  {server:>13.2f}x"
                     f"  {both(ours) / both(plain):>19.2f}x  {ours['p99_ms'] / plain['p99_ms']:>10.2f}x"
                     f"  {extra('server_us'):>19.0f}  {extra('redis_us'):>18.0f}")
    return "\n".join(lines)


def notes(summaries: list[dict]) -> list[str]:
    """Things a reader must not miss: losses, duplicates, refusals, a saturated generator."""
    out = []
    for s in summaries:
        where = f"{s['stack']} clients={s['clients']} rate={s['rate']:g}"
        for key in ("lost", "duplicates", "unacked", "errors"):
            if s[key]:
                out.append(f"{where}: {key}={s[key]}")
        if s["reorders"]:
            out.append(f"{where}: {s['reorders']} deliveries arrived after a higher id of the room "
                       "(a client rejoining with since = highest id seen would never get them)")
        if s["send_lag_max_ms"] > 100:
            out.append(f"{where}: the senders fell {s['send_lag_max_ms']:.0f} ms behind schedule")
        if s["generator_cpu_pct"] > 80:
            out.append(f"{where}: a generator process used {s['generator_cpu_pct']:.0f}% of a core; "
                       "latency may include its own delay")
    return out


def code_version() -> str:
    """The commit measured, and whether the working tree differed from it."""
    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", "realtime", "config", "wsgi.py")
    return f"{commit}{' + uncommitted changes under realtime/ or config/' if dirty else ''}"


def machine() -> str:
    """One line about where this ran (the figures mean little without it)."""
    cpuinfo = Path("/proc/cpuinfo").read_text().splitlines()
    model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")),
                 platform.processor())
    load = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return (f"{os.cpu_count()} cpus ({model}), load {load}, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


# ---------------------------------------------------------------------------------------------
# main


def start_servers(workdir: Path, rate_limits: bool) -> tuple[RedisServer, list[Stack]]:
    """Redis first, then both stacks (booting together); raise StartupError with the log tail."""
    redis_port, ours_port, plain_port = free_ports(3)
    redis = redis_with_aof(redis_port, workdir)
    ours = Replica(ours_port, ours_env(redis.url, workdir, rate_limits), workdir / "logs",
                   instance_id="bench-ours")
    plain = PlainApp(plain_port, redis.url, workdir / "logs")
    STARTED.extend([redis, ours, plain])
    start_all([redis], timeout=30)
    start_all([ours, plain], timeout=READY_TIMEOUT)
    return redis, [Stack("ours", ours, demo_tokens(ours.url)),
                   Stack("plain", plain, lambda names: [None] * len(names))]


def stop_servers() -> None:
    """Stop every server this run started, by PID: the stacks first, then Redis."""
    stop_all([p for p in STARTED if not isinstance(p, RedisServer)])
    stop_all([p for p in STARTED if isinstance(p, RedisServer)])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="one tiny workload, a few seconds")
    parser.add_argument("--repetitions", type=int, help="runs per stack and workload")
    parser.add_argument("--duration", type=float, help="seconds of sending per run")
    parser.add_argument("--no-rate-limits", action="store_true",
                        help="turn realtime's event rate limiter off (isolates persistence further)")
    parser.add_argument("--json", type=Path, help="also write every run and summary as JSON here")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs directory")
    return parser.parse_args(argv)


def chosen_plan(args: argparse.Namespace) -> Plan:
    """The full or smoke plan, with the command line's overrides."""
    plan = SMOKE if args.smoke else FULL
    loads = tuple(Workload(w.clients, w.rate, w.senders, args.duration or w.duration)
                  for w in plan.workloads)
    return Plan(loads, args.repetitions or plan.repetitions, plan.warmup)


def report(plan: Plan, rows: list[dict], args: argparse.Namespace) -> None:
    """Print the table and the ratios; write the JSON if asked."""
    summaries = [summarize(rows, name, load) for load in plan.workloads for name in ("ours", "plain")]
    print(f"\nmachine: {machine()}\ncode: {code_version()}")
    print(f"workload: one room, {plan.repetitions} run(s) per stack and row (medians; max is the "
          f"maximum, lost/dup summed), ~{loadgen.BODY_CHARS}-char bodies, websocket; "
          f"rate limiter {'off' if args.no_rate_limits else 'on (limits raised)'}\n")
    print(table(summaries))
    print()
    print(ratios(summaries, plan.workloads))
    for line in notes(summaries):
        print(f"note: {line}")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine(), "code": code_version(), "runs": rows,
                                         "summaries": summaries}, indent=2))


def main(argv: list[str] | None = None) -> int:
    """Start everything, run the plan, print the table, stop everything."""
    args = parse_args(argv)
    plan = chosen_plan(args)
    # SIGTERM (a CI timeout, a kill) unwinds through the finally below, which stops the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="realtime-bench-"))
    try:
        redis, stacks = start_servers(workdir, not args.no_rate_limits)
        print(f"servers up (logs in {workdir / 'logs'}); running "
              f"{len(plan.workloads) * plan.repetitions * 2} runs", file=sys.stderr, flush=True)
        rows = run_plan(plan, stacks, redis)
    except (StartupError, BenchError) as error:
        print(f"bench failed: {error}\n(logs kept in {workdir / 'logs'})", file=sys.stderr)
        args.keep_logs = True
        return 1
    finally:
        stop_servers()
        if not args.keep_logs:
            shutil.rmtree(workdir, ignore_errors=True)
    report(plan, rows, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
