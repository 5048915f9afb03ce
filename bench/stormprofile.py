"""Where one connect-and-join storm spends Redis: every command MONITOR sees, per connection.

Starts a redis-server (AOF everysec) and 3 realtime replicas (bench/stacks.py's RealtimeStack: every
feature on), runs bench/chatload.py's storm (3 000 clients of 200 users joining one room, 200 at a
time) with `redis-cli MONITOR` attached, and prints the commands per connect + join: those the
replicas sent (a MULTI..EXEC or a pipeline is one round trip of several commands) and, apart,
those scripts ran inside Redis (`lua:`). With py-spy installed (`pip install py-spy`) it also
records replica 0's worker (raw collapsed stacks, 100 Hz) for reading with any flame-graph tool.
MONITOR slows Redis, so the storm's own figures here are not the bench's: use compare.py for those.
Stops everything it started by PID. Hold /work/wt/bench.lock (or your machine's equivalent) while
it runs.

    .venv/bin/python bench/stormprofile.py [--realtime-root DIR] [--out DIR] [--clients N]
"""
from __future__ import annotations

import argparse
import collections
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import chatload  # noqa: E402
from measure import pids, raise_fd_limit, settle  # noqa: E402
from stacks import RealtimeStack, redis_with_aof  # noqa: E402

from realtime.devcluster import free_port, group_members, stop_all  # noqa: E402

MONITOR_LINE = re.compile(r'\[\d+ ([^\]]+)\] "([^"]+)"')


def command_counts(path: Path) -> collections.Counter:
    """Commands in a MONITOR transcript, those run by scripts prefixed `lua:`."""
    counts: collections.Counter = collections.Counter()
    with path.open(errors="replace") as transcript:
        for line in transcript:
            match = MONITOR_LINE.search(line)
            if match:
                counts[("lua:" if match[1] == "lua" else "") + match[2].upper()] += 1
    return counts


def main() -> int:
    """Run one storm under MONITOR (and py-spy), print the commands per connection."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--realtime-root", type=Path, help="run realtime from this tree")
    parser.add_argument("--out", type=Path, help="where the transcript and profile go (default: a temp dir)")
    parser.add_argument("--clients", type=int, default=chatload.StormPlan.clients)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="stormprofile-"))
    (out / "logs").mkdir(parents=True, exist_ok=True)
    raise_fd_limit()
    redis = redis_with_aof(free_port(), out)
    RealtimeStack.root = args.realtime_root.resolve() if args.realtime_root else None
    stack = RealtimeStack("realtime", redis.url, out / "logs")
    watchers: list[subprocess.Popen] = []
    try:
        redis.start(timeout=30)
        stack.start(3, with_nginx=False)
        settle(pids(stack.replicas))
        port = redis.url.rsplit(":", 1)[1].split("/")[0]
        with (out / "monitor.txt").open("w") as transcript:
            watchers.append(subprocess.Popen(["redis-cli", "-p", port, "monitor"], stdout=transcript))
        spy = shutil.which("py-spy") or (Path(sys.executable).parent / "py-spy")
        if Path(spy).exists():
            worker = [p for p in group_members(stack.replicas[0].pid) if p != stack.replicas[0].pid][-1]
            watchers.append(subprocess.Popen([str(spy), "record", "-r", "100", "-f", "raw", "-o", str(out / "spy.txt"),
                                              "--pid", str(worker), "--nonblocking"],
                                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(1.0)
        row = chatload.storm(stack, chatload.StormPlan(clients=args.clients))
    finally:
        for watcher in reversed(watchers):
            watcher.send_signal(2)  # py-spy writes its profile on SIGINT
            watcher.wait(30)
        stop_all(stack.processes())
        stop_all([redis])
    counts = command_counts(out / "monitor.txt")
    print(f"storm: {row['clients']} clients, {row['conn_per_s']:.0f} conn/s under MONITOR, failed {row['failed']}")
    print(f"{'command':<24} {'total':>8} {'per connection':>15}")
    for command, total in counts.most_common():
        print(f"{command:<24} {total:>8} {total / max(1, row['clients']):>15.2f}")
    print(f"transcript and profile: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
