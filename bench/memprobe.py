"""Memory per idle websocket connection of one realtime replica, and where it goes.

Starts a redis-server and one replica (`realtime serve`, config/gunicorn.conf.py, plus the
bench/memprobe_conf.py hook) on free 127.0.0.1 ports; bench/node/loadgen.js opens N subscribers
(websocket, namespace connect with a JWT, acked `join` of one room, then idle) in two halves.
Prints RSS per connection as bench/compare.py measures it (the slope of the replica's RSS between
N/2 and N clients), live greenlets, the object types that grew, and, in a second session with
tracemalloc on, the allocation sites that grew between N/2 and N, per connection. tracemalloc
inflates RSS, so the RSS figure comes from the first session only. Stops what it starts, by PID.

    .venv/bin/python bench/memprobe.py                    # 1000 clients, ~1 minute
    .venv/bin/python bench/memprobe.py --clients 2000 --by-file     # the breakdown by source file
    .venv/bin/python bench/memprobe.py --realtime-root /tmp/rt-before   # another tree (before/after)
    .venv/bin/python bench/memprobe.py --nginx            # the clients through nginx
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from measure import BenchError, LoadGen, pids, raise_fd_limit, rss_bytes, settle  # noqa: E402
from stacks import RealtimeStack, ensure_node_modules, loadgen_config  # noqa: E402
from realtime.devcluster import RedisServer, free_port, stop_all  # noqa: E402

CONF = ROOT / "bench" / "memprobe_conf.py"


class ProbedStack(RealtimeStack):
    """realtime with the probe's gunicorn hook: snapshots on request, tracemalloc if asked."""

    folder: Path
    frames: int = 0

    def env(self) -> dict[str, str]:
        """The bench's replica environment plus the hook's settings."""
        return {**super().env(), "REALTIME_GUNICORN_CONF": str(CONF),
                "REALTIME_MEMPROBE_DIR": str(self.folder), "REALTIME_MEMPROBE_FRAMES": str(self.frames)}


def snapshot(folder: Path, name: str, timeout: float = 120.0) -> dict[str, Any]:
    """Ask the worker for a snapshot; its JSON (and the tracemalloc snapshot, when on)."""
    (folder / f"{name}.request").write_text("")
    deadline = time.monotonic() + timeout
    while (folder / f"{name}.request").exists():
        if time.monotonic() > deadline:
            raise BenchError(f"the replica wrote no snapshot {name!r} within {timeout:.0f}s")
        time.sleep(0.2)
    data = json.loads((folder / f"{name}.json").read_text())
    path = folder / f"{name}.snapshot"
    data["tracemalloc"] = tracemalloc.Snapshot.load(str(path)) if path.exists() else None
    return data


def session(args: argparse.Namespace, redis_url: str, workdir: Path, frames: int) -> dict[str, Any]:
    """One replica, N/2 then N idle clients; RSS and snapshots at both points."""
    folder = Path(tempfile.mkdtemp(prefix="probe-", dir=workdir))
    stack = ProbedStack("realtime", redis_url, workdir / "logs")
    stack.folder, stack.frames = folder, frames
    loadgen = None
    try:
        stack.start(1, args.nginx)
        servers = pids(stack.replicas)
        settle(servers)
        config = loadgen_config(stack, f"probe-{uuid.uuid4().hex[:8]}", args.clients, 0, args.users,
                                workdir)
        loadgen = LoadGen(config, workdir / "logs" / "loadgen.log")
        points = [{"clients": 0, "rss": rss_bytes(servers)}]
        for count in (args.clients // 2, args.clients):
            loadgen.send(cmd="connect", subscribers=count)
            answer = loadgen.expect("connected", 300)
            if answer["failed"]:
                raise BenchError(f"{answer['failed']} clients failed: {answer['errors']}")
            settle(servers)
            time.sleep(args.idle)  # let every first ping go out and come back
            points.append({"clients": answer["subscribers"], "rss": rss_bytes(servers),
                           **snapshot(folder, f"at{count}")})
        return {"zero": points[0], "half": points[1], "full": points[2]}
    finally:
        if loadgen is not None:
            loadgen.close()
        stop_all(stack.processes())


def per_connection(result: dict[str, Any]) -> float:
    """Connections added between the two points."""
    return max(1, result["full"]["clients"] - result["half"]["clients"])


def report_rss(result: dict[str, Any]) -> None:
    """RSS slope, greenlets and the object types that grew, per connection."""
    zero, half, full = result["zero"], result["half"], result["full"]
    n = per_connection(result)
    print(f"clients {half['clients']} -> {full['clients']}: RSS {half['rss'] / 2**20:.1f} -> "
          f"{full['rss'] / 2**20:.1f} MiB, {(full['rss'] - half['rss']) / n / 1024:.1f} kB/conn "
          f"(from no client: {(full['rss'] - zero['rss']) / full['clients'] / 1024:.1f} kB/conn); "
          f"live greenlets {half['greenlets']} -> {full['greenlets']} "
          f"({(full['greenlets'] - half['greenlets']) / n:.2f}/conn)")
    grew = {t: (full["types"].get(t, 0) - c) / n for t, c in half["types"].items()}
    grew.update({t: c / n for t, c in full["types"].items() if t not in half["types"]})
    print("objects per connection (gc-tracked, by type): " + ", ".join(
        f"{t} {v:.2f}" for t, v in sorted(grew.items(), key=lambda kv: -kv[1]) if v >= 0.5))


def report_tracemalloc(result: dict[str, Any], top: int, frames: int, by_file: bool = False) -> None:
    """Live Python memory that grew between the two points, per connection, by allocation site."""
    half, full = result["half"]["tracemalloc"], result["full"]["tracemalloc"]
    n = per_connection(result)
    key = "filename" if by_file else "traceback" if frames > 1 else "lineno"
    stats = full.compare_to(half, key)
    total = sum(s.size_diff for s in stats)
    print(f"tracemalloc: {total / n / 1024:.1f} kB/conn of live Python memory grew "
          f"({sum(s.count_diff for s in stats) / n:.1f} blocks/conn); top sites:")
    for stat in stats[:top]:
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in reversed(stat.traceback[-frames:]))
        print(f"  {stat.size_diff / n:8.0f} B  {stat.count_diff / n:5.1f} blk  {where}")


def main(argv: list[str] | None = None) -> int:
    """Parse the options, run the sessions, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--users", type=int, default=50, help="identities the clients share")
    parser.add_argument("--idle", type=float, default=2.0, help="seconds idle before each reading")
    parser.add_argument("--frames", type=int, default=1, help="tracemalloc frames (0: no breakdown)")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--by-file", action="store_true", help="group the breakdown by source file")
    parser.add_argument("--realtime-root", type=Path, help="run realtime from another tree")
    parser.add_argument("--nginx", action="store_true", help="clients connect through nginx (the replica is measured)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop what was started on the way out
    raise_fd_limit()
    ensure_node_modules()
    RealtimeStack.root = args.realtime_root.resolve() if args.realtime_root else None
    with tempfile.TemporaryDirectory(prefix="memprobe-") as tmp:
        workdir = Path(tmp)
        redis = RedisServer(free_port(), workdir / "redis", log_dir=workdir / "logs")
        try:
            redis.start(timeout=30)
            report_rss(session(args, redis.url, workdir, 0))
            if args.frames:
                traced = session(args, redis.url, workdir, args.frames)
                report_tracemalloc(traced, args.top, args.frames, args.by_file)
        except BenchError as error:
            print(f"memprobe: {error}", file=sys.stderr)
            logs = sorted((workdir / "logs").glob("*.log"))
            for path in logs:
                print(f"--- {path.name}\n{path.read_text()[-2000:]}", file=sys.stderr)
            return 1
        finally:
            stop_all([redis])
    return 0


if __name__ == "__main__":
    sys.exit(main())
