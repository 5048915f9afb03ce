"""realtime against plain Flask-SocketIO and Socket.IO 4 on Node, in the same run, on this machine.

Starts a redis-server (AOF everysec) and, one stack at a time, 3 replicas of it on free 127.0.0.1
ports (bench/stacks.py); bench/node/loadgen.js holds C subscribers in one room spread over the
replicas (directly, or through nginx) and publishers sending ~150-byte messages at a total rate.
Each run reports deliveries/s, loss, latency, server and Redis CPU per delivery (/proc), RSS per idle
connection and the generator's own CPU; stacks alternate order across repetitions; the external
emitter path, the nginx path and a saturation search come after; then bench/chatload.py's
chat-shaped workloads (many small rooms, a connect-and-join storm, a failover storm) for realtime,
plain, node and node-streams (Socket.IO 4 with @socket.io/redis-streams-adapter and connection
state recovery); last bench/shards.py's cell, where Redis is the limit: a send's Redis calls on one
Redis against a 3-shard Redis Cluster. Prints markdown tables, writes JSON. Every process it starts is stopped by PID. No figure is checked against a threshold.

    .venv/bin/python bench/compare.py            # full run, ~15 minutes (make bench)
    .venv/bin/python bench/compare.py --smoke    # all three stacks once, tiny (make bench-smoke)
"""
from __future__ import annotations

import argparse
import json
import signal
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import chatload  # noqa: E402
import report  # noqa: E402
import shards  # noqa: E402
from measure import (BenchError, LoadGen, pids, raise_fd_limit, rss_bytes,  # noqa: E402
                     settle, snapshot)
from stacks import (STACKS, RealtimeStack, Stack, describe, ensure_node_modules, loadgen_config,  # noqa: E402
                    redis_with_aof)
from realtime.devcluster import StartupError, free_port, stop_all  # noqa: E402

REPLICAS = 3
CONNECT_TIMEOUT = 300.0
PASS_P99_MS = 100.0  # the saturation search's bar: no loss and p99 under this
SATURATION_ATTEMPTS = 4
CONTENDED_PCT = 50.0  # others used more than half a core: a failure then says little about us


@dataclass(frozen=True)
class Run:
    """One measured window: our publishers at `rate`, or the stack's external emitter."""

    rate: float
    duration: float
    emitter: bool = False


@dataclass(frozen=True)
class Saturation:
    """Raise the rate from `start` by `factor` until loss or p99 > PASS_P99_MS (or `steps` runs)."""

    clients: int
    start: float
    factor: float
    steps: int
    duration: float


@dataclass
class Plan:
    """Everything one invocation measures."""

    cells: dict[int, tuple[float, ...]]   # clients -> publisher rates (msg/s, total)
    duration: float
    repetitions: int
    publishers: int
    users: int                            # distinct identities the subscribers share (realtime)
    emitter: tuple[int, float] | None     # (clients, rate): also an external-emitter run there
    nginx: tuple[int, float] | None       # (clients, rate): the same through nginx, once per stack
    saturation: Saturation | None
    stacks: tuple[str, ...] = ("realtime", "plain", "node")
    subscriber_client: str = "lite"       # or "socket.io" (see bench/node/loadgen.js)
    chat: chatload.ChatPlan | None = None  # many rooms, storm, failover (bench/chatload.py)
    shards: shards.ShardsPlan | None = None  # one Redis against a Redis Cluster (bench/shards.py)


FULL = Plan(cells={300: (50, 100), 1000: (20, 50), 3000: (10, 20)}, duration=10, repetitions=2,
            publishers=4, users=50, emitter=(1000, 20), nginx=(1000, 20),
            saturation=Saturation(1000, 20, 1.5, 10, 6), chat=chatload.CHAT_FULL, shards=shards.SHARDS_FULL)
SMOKE = Plan(cells={50: (10,)}, duration=2, repetitions=1, publishers=2, users=10,
             emitter=(50, 10), nginx=(50, 10), saturation=None, chat=chatload.CHAT_SMOKE,
             shards=shards.SHARDS_SMOKE)


@dataclass
class Bench:
    """The shared state of one invocation: Redis, where logs go, the rows so far."""

    plan: Plan
    workdir: Path
    redis: Any = None
    rows: list[dict] = field(default_factory=list)
    saturation: list[dict] = field(default_factory=list)
    chat: list[dict] = field(default_factory=list)
    shards: list[dict] = field(default_factory=list)
    started: list[Stack] = field(default_factory=list)
    runs: int = 0

    def flush_redis(self) -> None:
        """Empty Redis between sessions, so no stack sees another's (or an earlier run's) keys."""
        import redis
        client = redis.Redis.from_url(self.redis.url)
        client.flushall()
        client.close()


# ---------------------------------------------------------------------------------------------
# one session: a stack up, C clients connected, one or more runs


RSS_STEPS = 4  # RSS is read with a quarter, a half, three quarters and all of the clients connected


def rss_slope(points: list[tuple[int, int]]) -> float:
    """Bytes per connection: the least-squares slope of RSS over clients connected."""
    counts, sizes = zip(*points)
    return statistics.linear_regression(counts, sizes).slope if len(set(counts)) > 1 else float("nan")


class Session:
    """One stack with `clients` subscribers connected (directly or through nginx)."""

    def __init__(self, bench: Bench, name: str, clients: int, nginx: bool, repetition: int):
        self.bench, self.clients, self.repetition = bench, clients, repetition
        self.room = f"bench-{uuid.uuid4().hex[:8]}"
        self.path = "nginx" if nginx else "direct"
        self.stack = STACKS[name](name, bench.redis.url, bench.workdir / "logs")
        self.loadgen: LoadGen | None = None
        self.rss_per_conn_kb = self.rss_from_zero_kb = float("nan")
        self.connected: dict[str, Any] = {}

    def __enter__(self) -> "Session":
        try:
            return self.start()
        except BaseException:
            self.__exit__()  # `with` calls __exit__ only after __enter__ returned
            raise

    def start(self) -> "Session":
        """Fresh Redis, the stack, the clients connected in two halves (RSS measured at each)."""
        self.bench.flush_redis()
        self.bench.started.append(self.stack)
        other_tree = isinstance(self.stack, RealtimeStack) and RealtimeStack.root
        self.code = f"tree {RealtimeStack.root}" if other_tree else report.code_fingerprint()
        self.stack.start(REPLICAS, self.path == "nginx")
        # The PIDs, for py-spy (docs/performance.md): `py-spy record --pid <worker pid>`.
        print(f"bench: {json.dumps(describe(self.stack))}", file=sys.stderr, flush=True)
        servers = self.server_pids()
        settle(servers)
        before = self.rss(servers)
        plan = self.bench.plan
        config = loadgen_config(self.stack, self.room, self.clients, plan.publishers, plan.users,
                                self.bench.workdir, plan.subscriber_client)
        self.loadgen = LoadGen(config, self.bench.workdir / "logs" / f"loadgen-{self.stack.name}.log")
        # RSS per connection is the least-squares slope over the clients connected in quarters:
        # what a runtime reserves once (first-use buffers) cancels out, and a heap growth step
        # between two readings moves it less than it moved a slope between half and all.
        points = [(count, self.rss(servers)) for count in
                  (self.connect(self.clients * step // RSS_STEPS) for step in range(1, RSS_STEPS + 1))]
        self.rss_per_conn_kb = rss_slope(points) / 1024
        total, full_rss = points[-1]
        self.rss_from_zero_kb = (full_rss - before) / total / 1024
        return self

    def rss(self, servers: list[int]) -> int:
        """The replicas' RSS after a garbage collection where the runtime defers it (node)."""
        self.stack.collect_garbage()
        return rss_bytes(servers)

    def connect(self, subscribers: int) -> int:
        """Connect (and join) subscribers up to `subscribers`, wait for quiet; clients connected."""
        self.loadgen.send(cmd="connect", subscribers=subscribers)
        answer = self.loadgen.expect("connected", CONNECT_TIMEOUT)
        if answer["failed"]:
            raise BenchError(f"{self.stack.name}: {answer['failed']} clients could not connect "
                             f"and join: {answer['errors']}\n{report.evidence(self.stack)}")
        self.connected = {**answer, "seconds": self.connected.get("seconds", 0) + answer["seconds"]}
        settle(self.server_pids())
        return answer["subscribers"] + answer["publishers"]

    def __exit__(self, *exc: Any) -> None:
        if self.loadgen:
            self.loadgen.close()
        stop_all(self.stack.processes())

    def server_pids(self) -> list[int]:
        """The replicas' processes (without nginx)."""
        return pids(self.stack.replicas)

    def groups(self) -> dict[str, list[int]]:
        """The PIDs whose CPU each run bills: replicas, Redis, nginx, the generator."""
        return {"server": self.server_pids(), "redis": [self.bench.redis.pid],
                "nginx": pids([self.stack.nginx]) if self.stack.nginx else [],
                "generator": [self.loadgen.pid]}

    def measure(self, run: Run) -> dict[str, Any]:
        """One run: wait for quiet, snapshot CPU, drive the load, snapshot again, make the row."""
        self.bench.runs += 1
        run_id = f"r{self.bench.runs}"
        settle(self.server_pids() + [self.bench.redis.pid])
        groups = self.groups()
        before = snapshot(groups)
        emitted = None
        if run.emitter:
            self.loadgen.send(cmd="run", run=run_id, rate=run.rate, duration=run.duration,
                              mode="external")
            self.loadgen.expect("ready", 30)
            emitted = self.emit(run_id, run)
            self.loadgen.send(cmd="expect", sent=emitted["sent"])
        else:
            self.loadgen.send(cmd="run", run=run_id, rate=run.rate, duration=run.duration,
                              mode="publishers")
        result = self.loadgen.expect("result", run.duration + 120)
        after = snapshot(groups)
        row = report.row(self, run, result, before, after, emitted)
        if row["lost"] or row["failures"]:
            row["evidence"] = report.evidence(self.stack)
        self.bench.rows.append(row)
        report.progress(row)
        return row

    def emit(self, run_id: str, run: Run) -> dict[str, Any]:
        """Run the stack's external emitter to the room; its JSON answer."""
        argv = self.stack.emitter_argv(self.room, run_id, run.rate, run.duration)
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                              timeout=run.duration + 60, start_new_session=True)
        if done.returncode != 0:
            raise BenchError(f"{self.stack.name} emitter failed: {done.stderr[-2000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------------------
# the plan


def stack_order(stacks: tuple[str, ...], repetition: int) -> tuple[str, ...]:
    """A/B order: each repetition runs the stacks in the opposite order of the one before."""
    return stacks if repetition % 2 == 0 else stacks[::-1]


def run_cells(bench: Bench) -> None:
    """Every C and rate, per stack, `repetitions` times; the emitter run where the plan says."""
    plan = bench.plan
    for repetition in range(plan.repetitions):
        for clients, rates in plan.cells.items():
            for name in stack_order(plan.stacks, repetition):
                with Session(bench, name, clients, nginx=False, repetition=repetition) as session:
                    for rate in rates:
                        session.measure(Run(rate, plan.duration))
                    if plan.emitter and plan.emitter[0] == clients:
                        session.measure(Run(plan.emitter[1], plan.duration, emitter=True))


def run_nginx(bench: Bench) -> None:
    """The same workload through nginx (sticky hash on the client address), once per stack."""
    plan = bench.plan
    clients, rate = plan.nginx
    for name in plan.stacks:
        with Session(bench, name, clients, nginx=True, repetition=0) as session:
            session.measure(Run(rate, plan.duration))
            if plan.emitter and not plan.cells:  # the smoke plan: the emitter path rides along
                session.measure(Run(plan.emitter[1], plan.duration, emitter=True))


def run_saturation(bench: Bench) -> None:
    """Per stack, the highest rate with no loss and p99 under PASS_P99_MS."""
    search = bench.plan.saturation
    for name in bench.plan.stacks:
        steps = []
        with Session(bench, name, search.clients, nginx=False, repetition=0) as session:
            rate = search.start
            for _ in range(search.steps):
                row = saturation_step(session, Run(round(rate, 1), search.duration))
                steps.append(row)
                if not row["passed"]:
                    break
                rate *= search.factor
        bench.saturation.append(report.saturation_summary(name, search.clients, steps))


def saturation_step(session: Session, run: Run) -> dict:
    """One rate of the search. The machine is shared: a failure is tried again, and again after a
    pause while other people's processes used over CONTENDED_PCT of a core during the attempt."""
    for attempt in range(SATURATION_ATTEMPTS):
        row = session.measure(run)
        contended = row["other_cpu_pct"] > CONTENDED_PCT
        row.update(path="saturation", attempt=attempt, passed=passed(row), contended=contended)
        if row["passed"] or (attempt >= 1 and not contended):
            break
        time.sleep(5 if contended else 0)
    return row


def run_chat(bench: Bench) -> None:
    """bench/chatload.py's workloads, each on fresh replicas and a flushed Redis, stacks alternating."""
    chat = bench.plan.chat
    workloads = [(name, run) for name, run in (
        ("rooms", lambda stack: chatload.rooms_search(stack, bench.redis.pid, chat.rooms)),
        ("storm", lambda stack: chatload.storm(stack, chat.storm)),
        ("failover", lambda stack: chatload.failover(stack, bench.redis.pid, chat.rooms, chat.failover)),
    ) if name in chat.workloads]
    for repetition in range(chat.repetitions):
        for what, run in workloads:
            for name in stack_order(chat.stacks, repetition):
                bench.flush_redis()
                stack = STACKS[name](name, bench.redis.url, bench.workdir / "logs")
                bench.started.append(stack)
                try:
                    stack.start(REPLICAS, with_nginx=False)
                    print(f"bench: {json.dumps(describe(stack))}", file=sys.stderr, flush=True)
                    settle(pids(stack.replicas))
                    row = run(stack)
                except (ConnectionError, OSError) as error:
                    raise BenchError(f"{what} {name}: {error}\n{report.evidence(stack)}") from error
                finally:
                    stop_all(stack.processes())
                bench.chat.append({"workload": what, "repetition": repetition, **row})


def passed(row: dict) -> bool:
    """The saturation bar: nothing lost or refused, p99 under PASS_P99_MS."""
    return not row["lost"] and not row["failures"] and (row["p99_ms"] or 0) <= PASS_P99_MS


# ---------------------------------------------------------------------------------------------
# main


def parse_cells(text: str) -> dict[int, tuple[float, ...]]:
    """`300:50,1000:20/50` as {300: (50,), 1000: (20, 50)}."""
    cells = {}
    for part in filter(None, text.split(",")):
        clients, _, rates = part.partition(":")
        cells[int(clients)] = tuple(float(r) for r in rates.split("/"))
    return cells


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="all three stacks once, tiny (< 1 min)")
    parser.add_argument("--cells", type=parse_cells, help="clients:rate[/rate],... e.g. 300:50,1000:20/50")
    parser.add_argument("--duration", type=float, help="seconds of sending per run")
    parser.add_argument("--repetitions", type=int, help="runs per stack and cell (order alternates)")
    parser.add_argument("--publishers", type=int, help="publishing connections (they are room members)")
    parser.add_argument("--users", type=int, help="distinct identities the subscribers share (realtime)")
    parser.add_argument("--stacks", help="comma-separated subset of realtime,plain,node")
    parser.add_argument("--subscriber-client", choices=["lite", "socket.io"],
                        help="subscribers as bare websockets (default) or socket.io-client sockets")
    parser.add_argument("--no-emitter", action="store_true", help="skip the external-emitter runs")
    parser.add_argument("--no-nginx", action="store_true", help="skip the runs through nginx")
    parser.add_argument("--no-saturation", action="store_true", help="skip the saturation search")
    parser.add_argument("--no-chat", action="store_true",
                        help="skip the many-rooms, storm and failover workloads (bench/chatload.py)")
    parser.add_argument("--chat-only", action="store_true",
                        help="only the many-rooms, storm and failover workloads")
    parser.add_argument("--chat", help="comma-separated subset of rooms,storm,failover")
    parser.add_argument("--chat-stacks", help="comma-separated subset of realtime,plain,node,node-streams")
    parser.add_argument("--chat-repetitions", type=int, help="runs per stack of each chat workload")
    parser.add_argument("--no-shards", action="store_true",
                        help="skip the one Redis against a Redis Cluster cell (bench/shards.py)")
    parser.add_argument("--shards-only", action="store_true",
                        help="only the one Redis against a Redis Cluster cell")
    parser.add_argument("--realtime-root", type=Path,
                        help="run realtime from this tree instead of the checkout (e.g. an older "
                             "commit: git archive COMMIT | tar -x -C DIR)")
    parser.add_argument("--json", type=Path, help="where to write the results (default: under run/bench/)")
    return parser.parse_args(argv)


def chosen_plan(args: argparse.Namespace) -> Plan:
    """The full or smoke plan with the command line's overrides."""
    base = SMOKE if args.smoke else FULL
    chat = None if args.no_chat else base.chat
    if chat is not None:
        chat = chatload.ChatPlan(
            chat.rooms, chat.storm, chat.failover,
            repetitions=args.chat_repetitions or chat.repetitions,
            stacks=tuple(args.chat_stacks.split(",")) if args.chat_stacks else chat.stacks,
            workloads=tuple(args.chat.split(",")) if args.chat else chat.workloads)
    sharding = None if args.no_shards else base.shards
    if args.shards_only:
        return Plan(cells={}, duration=base.duration, repetitions=1, publishers=base.publishers,
                    users=base.users, emitter=None, nginx=None, saturation=None, chat=None,
                    shards=base.shards)
    if args.chat_only:
        return Plan(cells={}, duration=base.duration, repetitions=1, publishers=base.publishers,
                    users=base.users, emitter=None, nginx=None, saturation=None, chat=chat)
    return Plan(cells=args.cells if args.cells is not None else base.cells,
                duration=args.duration or base.duration,
                repetitions=args.repetitions or base.repetitions,
                publishers=args.publishers or base.publishers, users=args.users or base.users,
                emitter=None if args.no_emitter else base.emitter,
                nginx=None if args.no_nginx else base.nginx,
                saturation=None if args.no_saturation else base.saturation,
                stacks=tuple(args.stacks.split(",")) if args.stacks else base.stacks,
                subscriber_client=args.subscriber_client or base.subscriber_client, chat=chat,
                shards=sharding)


def start_redis(bench: Bench) -> None:
    """The one redis-server every stack uses in turn (flushed between sessions)."""
    bench.redis = redis_with_aof(free_port(), bench.workdir)
    bench.redis.start(timeout=30)


def main(argv: list[str] | None = None) -> int:
    """Start Redis, run the plan stack by stack, print the tables, write the JSON, stop everything."""
    args = parse_args(argv)
    plan = chosen_plan(args)
    RealtimeStack.root = args.realtime_root.resolve() if args.realtime_root else None
    # SIGTERM (a CI timeout, a kill) unwinds through the finally below, which stops what we started.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    stamp = time.strftime("%Y%m%d-%H%M%S")
    bench = Bench(plan, ROOT / "run" / "bench" / stamp)
    (bench.workdir / "logs").mkdir(parents=True, exist_ok=True)
    json_path = args.json or bench.workdir / "results.json"
    started = time.time()
    try:
        fds = raise_fd_limit()
        ensure_node_modules()
        start_redis(bench)
        print(f"bench: logs in {bench.workdir / 'logs'}; open files limit {fds}", file=sys.stderr)
        run_cells(bench)
        if plan.nginx:
            run_nginx(bench)
        if plan.saturation:
            run_saturation(bench)
        if plan.chat:
            run_chat(bench)
        if plan.shards:
            bench.shards = shards.run(plan.shards, bench.workdir / "shards")
    except (StartupError, BenchError, subprocess.SubprocessError) as error:
        print(f"bench failed: {error}\n(logs in {bench.workdir / 'logs'})", file=sys.stderr)
        return 1
    finally:
        for stack in bench.started:
            stop_all(stack.processes())
        if bench.redis:
            stop_all([bench.redis])
    results = report.results(bench, argv, time.time() - started)
    results["chat"] = {"runs": bench.chat, "summaries": chatload.summarize(bench.chat)}
    results["shards"] = {"plan": vars(plan.shards) if plan.shards else None, "runs": bench.shards,
                         "summaries": shards.summarize(bench.shards)}
    json_path.write_text(json.dumps(results, indent=2))
    if bench.rows or bench.saturation:
        print(report.render(results))
    if bench.chat:
        print("\n" + chatload.render(results["chat"]["summaries"]))
    if bench.shards:
        print("\n" + shards.render(results["shards"]["summaries"], plan.shards))
    print(f"\nJSON: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
