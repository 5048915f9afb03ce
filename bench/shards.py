"""Redis as the limit: what a send costs Redis on one Redis against a 3-shard Redis Cluster, same run.

On this 2-core machine the Python replicas run out of CPU long before one Redis does, so the
product-level many-rooms cell (bench/chatload.py) cannot show a Redis limit. This cell first takes
the replicas out: driver processes make exactly the Redis calls a send makes (the store's append
script with a send's keys and arguments: per-user quota, idempotency key, history with trimming,
epoch, the announcement PUBLISH on one Redis / SPUBLISH on the room's shard; on a cluster the
quota is its own call on the user's slot, as RedisClusterStore makes it), pipelined, over many
rooms, as fast as Redis answers (closed loop). The drivers speak the Redis protocol themselves
(a few µs per call, where redis-py spends more CPU per call than Redis spends on the script).
Both targets run with AOF (`appendfsync everysec`) and no automatic AOF rewrite (a rewrite's
forked child would escape the CPU accounting); the cluster has no replicas (neither has the one
Redis).

Per run: acknowledged appends per second, each Redis process's CPU (% of one core, /proc), Redis
CPU per message (µs, all shards, and the busiest's), Redis's own time in EVALSHA (INFO
commandstats), the share of the EVALSHA calls each shard served, the drivers' CPU and everyone
else's. `ceiling` is the rate at which the busiest Redis would use a whole core, extrapolated
linearly from the run: what the shards could take on machines with a core each, not a
measurement. Afterwards every room's counter is read back: the stored messages must equal the
acknowledged ones (`lost`).

Then realtime itself runs on each target (3 replicas, bench/chatload.py's many rooms at a fixed
rate): the same accounting with the room channels' fan-out to the replicas included.

    .venv/bin/python bench/shards.py            # ~5 minutes; compare.py runs it too (make bench)
    .venv/bin/python bench/shards.py --smoke    # ~25 seconds
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from measure import BenchError, cpu_seconds, machine_busy_seconds, settle  # noqa: E402
from stacks import aof_on, redis_with_aof  # noqa: E402
from realtime.store.base import Retention  # noqa: E402
from realtime.devcluster import (RedisClusterNodes, StartupError, free_cluster_ports,  # noqa: E402
                                   free_port, stop_all)

CHANNEL = "realtime"  # the default REALTIME_MQ_CHANNEL
QUOTA_LIMIT = 10**9   # never refuses, still counted on every append
QUOTA_WINDOW = 60
KEEP = Retention()  # the default history and idempotency settings
IDLE_WINDOW = 3.0  # seconds of realtime connected and quiet, before its run
PREFIX = '{"method":"emit","event":"message","data":'  # the emit around the message, as the queue builds it


@dataclass(frozen=True)
class ShardsPlan:
    """One Redis against `shards` masters; `workers` driver processes of `threads` pipelines each;
    then realtime itself on each, bench/chatload.py's many rooms at `product_rate` msg/s."""

    rooms: int = 3000
    users: int = 200
    shards: int = 3
    workers: int = 2
    threads: int = 3
    batch: int = 50
    duration: float = 8.0
    repetitions: int = 3
    body: int = 150
    product_rooms: int = 300
    product_senders: int = 20
    product_rate: float = 300.0
    product_duration: float = 8.0
    product_repetitions: int = 2


SHARDS_FULL = ShardsPlan()
SHARDS_SMOKE = ShardsPlan(rooms=30, users=5, workers=1, threads=2, batch=5, duration=1.0, repetitions=1,
                          product_rooms=12, product_senders=3, product_rate=20.0, product_duration=2.0,
                          product_repetitions=1)


# ---------------------------------------------------------------------------------------------
# the driver (a child process per worker)


@functools.lru_cache(maxsize=None)
def room_parts(cluster: bool, room: str) -> tuple[str, ...]:
    """What a send to `room` repeats: its keys, channel and the announcement's suffix."""
    from realtime.mq.roomchannels import room_channel
    from realtime.store.redis import RedisStore, room_key
    suffix = f',"namespace":"/chat","room":{json.dumps(room)},"skip_sid":null,"callback":null,"host_id":"bench"}}'
    return (room_key(room, "messages"), room_key(room, "seq"), room_key(room, "idem:"),
            room_key(room, "unused") if cluster else RedisStore.WEBHOOKS, room_key(room, "epoch"),
            room_channel(CHANNEL, "/chat", room, tagged=cluster), suffix, json.dumps(room))


@functools.lru_cache(maxsize=None)
def quota_key(cluster: bool, user: str) -> str:
    """The key of `user`'s send quota (on the user's slot on a cluster)."""
    from realtime.store.base import Quota
    from realtime.store.redis import limit_key
    from realtime.store.rediscluster import RedisClusterStore
    quota = Quota("send", user, QUOTA_LIMIT, QUOTA_WINDOW)
    return RedisClusterStore.limit_key(quota) if cluster else limit_key(quota)


def send_commands(shas: tuple[str, str], cluster: bool, room: str, user: str, n: int, body: str) -> list[tuple]:
    """The Redis calls of one send to `room` by `user`, as RedisStore / RedisClusterStore.append_message
    makes them: [(routing key, whether it is the append, the EVALSHA in the protocol)]. `shas`: the
    append and quota scripts'."""
    from realtime.store.base import new_epoch
    messages, seq, idem, fourth, epoch, channel, suffix, room_json = room_parts(cluster, room)
    now = int(time.time() * 1000)
    message = f'{{"type":"text","body":"{body}","user":{{"id":"{user}"}},"ts":{now},"client_id":{n}}}'
    args = [message, now, KEEP.max_messages, now - int(KEEP.max_age * 1000), int(KEEP.idempotency_ttl * 1000),
            "1", "[]", room, channel, PREFIX, suffix, room_json, new_epoch()]
    keys = [messages, seq, f"{idem}{user}:{os.getpid()}-{n}", fourth, epoch]
    quota = quota_key(cluster, user)
    if cluster:  # the quota first, on the user's slot; then the append
        return [(quota, False, resp(["EVALSHA", shas[1], 1, quota, QUOTA_LIMIT, QUOTA_WINDOW, 1])),
                (seq, True, resp(["EVALSHA", shas[0], 5, *keys, *args]))]
    return [(seq, True, resp(["EVALSHA", shas[0], 6, *keys, quota, *args, QUOTA_LIMIT, QUOTA_WINDOW]))]


class Incomplete(Exception):
    """The buffer ends inside a reply."""


def resp(args: list[Any]) -> bytes:
    """One command in the Redis protocol (every argument ASCII: JSON escapes the rest)."""
    return "".join([f"*{len(args)}\r\n", *(f"${len(a)}\r\n{a}\r\n" for a in map(str, args))]).encode()


def status(buffer: bytes, at: int) -> tuple[Any, int]:
    """The first integer of the reply at `at` (an append's status, a quota's wait), an Exception for an
    error reply; and where the next reply starts."""
    if buffer.startswith(b"*4\r\n:", at):  # an append's {status, id, body, epoch}: skip the rest
        end = buffer.find(b"\r\n", at + 5)
        after = buffer.find(b"\r\n", end + 2)  # the id
        if end < 0 or after < 0:
            raise Incomplete
        for _ in range(2):  # body and epoch: bulk strings
            line = buffer.find(b"\r\n", after + 2)
            if line < 0:
                raise Incomplete
            after = line + 2 + int(buffer[after + 3:line])
            if len(buffer) < after + 2:
                raise Incomplete
        return int(buffer[at + 5:end]), after + 2
    value, at = parse(buffer, at)
    return (value if isinstance(value, Exception) else value[0]), at


def parse(buffer: bytes, at: int) -> tuple[Any, int]:
    """One reply starting at `at`: (value, where the next starts); an error reply is an Exception."""
    end = buffer.find(b"\r\n", at)
    if end < 0:
        raise Incomplete
    kind, line = buffer[at], buffer[at + 1:end]
    if kind == 42:  # '*'
        items, at = [], end + 2
        for _ in range(int(line)):
            item, at = parse(buffer, at)
            items.append(item)
        return items, at
    if kind == 36:  # '$'
        size = int(line)
        if size < 0:
            return None, end + 2
        if len(buffer) < end + 4 + size:
            raise Incomplete
        return buffer[end + 2:end + 2 + size], end + 4 + size
    if kind == 58:  # ':'
        return int(line), end + 2
    return (Exception(line.decode()) if kind == 45 else line), end + 2


class Link:
    """A raw connection to one Redis node: a batch of commands out, their replies counted.

    The load generator speaks the protocol itself, as bench/loadgen.py speaks websockets: redis-py
    spends more CPU per call than Redis spends running the script, and on two cores the generator
    would then be the limit, not Redis.
    """

    def __init__(self, host: str, port: int):
        import socket
        self.sock = socket.create_connection((host, port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer, self.at = b"", 0

    def replies(self, count: int) -> list[Any]:
        """The first integer (or the error) of each of the next `count` replies."""
        out = []
        while len(out) < count:
            try:
                value, self.at = status(self.buffer, self.at)
                out.append(value)
            except Incomplete:
                self.buffer, self.at = self.buffer[self.at:] + self.sock.recv(1 << 20), 0
        return out


def drive(links: dict[Any, Link], route: Any, shas: tuple[str, str], cluster: bool, rooms: list[str],
          users: int, batch: int, duration: float, body_chars: int, out: dict[str, int]) -> None:
    """Batches of `batch` sends over `rooms` until `duration` is over, each node's commands in one
    write and their replies read after all were written; counts into `out`."""
    body = "x" * body_chars
    rng = random.Random()
    deadline = time.monotonic() + duration
    n = 0
    while time.monotonic() < deadline:
        commands: dict[Any, list[bytes]] = {}
        for _ in range(batch):
            n += 1
            room = rooms[rng.randrange(len(rooms))]
            for key, is_append, command in send_commands(shas, cluster, room, f"u{rng.randrange(users)}", n, body):
                commands.setdefault(route(key), []).append((is_append, command))
        for node, sent in commands.items():
            links[node].sock.sendall(b"".join(command for _, command in sent))
        for node, sent in commands.items():
            for (is_append, _), answer in zip(sent, links[node].replies(len(sent))):
                if isinstance(answer, Exception):
                    out["errors"] += 1
                elif answer != 0:  # refused by a quota (-1 from the append script, a wait from the take)
                    out["refused"] += 1
                elif is_append:
                    out["acked"] += 1


def worker(url: str, rooms: int, users: int, threads: int, batch: int, duration: float, body: int) -> None:
    """A driver process: load the scripts, say ready, wait for `go`, drive, print the counts."""
    import threading

    from redis.crc import key_slot

    from realtime.store import create_redis, is_cluster_client, redis_store
    client = create_redis(url)
    store = redis_store(client)
    names = [f"room-{r:05d}" for r in range(rooms)]
    cluster = is_cluster_client(client)
    if cluster:
        masters = [(node.host, node.port) for node in client.get_primaries()]
        owner = {slot: (nodes[0].host, nodes[0].port) for slot, nodes in client.nodes_manager.slots_cache.items()}
        route = lambda key: owner[key_slot(key.encode())]  # noqa: E731
    else:
        address = client.connection_pool.connection_kwargs
        masters = [(address["host"], address["port"])]
        route = lambda key: masters[0]  # noqa: E731
    for host, port in masters:
        import redis
        node = redis.Redis(host=host, port=port)
        for script in (store._append, store._take):
            node.script_load(script.script)
        node.close()
    # Each thread its own connections to every master and its share of the rooms, as a replica's
    # concurrent sends reach every shard at once.
    links = [{address: Link(*address) for address in masters} for _ in range(threads)]
    groups = [names[t::threads] for t in range(threads)]
    print(json.dumps({"ready": True}), flush=True)
    sys.stdin.readline()
    counts = [{"acked": 0, "refused": 0, "errors": 0} for _ in groups]
    shas = (store._append.sha, store._take.sha)
    runners = [threading.Thread(target=drive, args=(mine, route, shas, cluster, group, users, batch, duration,
                                                    body, out))
               for mine, group, out in zip(links, groups, counts)]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()
    client.close()
    print(json.dumps({key: sum(c[key] for c in counts) for key in counts[0]}), flush=True)


# ---------------------------------------------------------------------------------------------
# the targets and one measured run


@dataclass
class Target:
    """One Redis, or a cluster's masters: the URL the drivers use and the processes to bill."""

    name: str
    url: str
    masters: list[Any]
    client: Any = None

    def clients(self) -> list[Any]:
        """A plain client per master."""
        import redis
        return [redis.Redis(host=m.host, port=m.port) for m in self.masters]

    def reset(self) -> None:
        """Empty every master and shrink its AOF, so no run inherits the one before's data."""
        for client in self.clients():
            client.flushall()
            client.bgrewriteaof()
            deadline = time.monotonic() + 30
            while client.info("persistence")["aof_rewrite_in_progress"] and time.monotonic() < deadline:
                time.sleep(0.1)
            client.close()

    def evalsha_stats(self) -> list[tuple[int, int]]:
        """(calls, µs) of EVALSHA per master so far (INFO commandstats)."""
        stats = []
        for client in self.clients():
            entry = client.info("commandstats").get("cmdstat_evalsha", {})
            stats.append((int(entry.get("calls", 0)), int(entry.get("usec", 0))))
            client.close()
        return stats

    def stored(self, rooms: int) -> int:
        """Messages the rooms' counters say were appended (each append INCRs its room's counter)."""
        from realtime.store import create_redis
        from realtime.store.redis import room_key
        client = create_redis(self.url)
        try:
            keys = [room_key(f"room-{r:05d}", "seq") for r in range(rooms)]
            values = client.mget_nonatomic(keys) if hasattr(client, "mget_nonatomic") else client.mget(keys)
            return sum(int(v) for v in values if v is not None)
        finally:
            client.close()


def start_targets(workdir: Path, shards: int) -> tuple[Target, Target, list[Any]]:
    """One redis-server and a `shards`-master cluster, both with AOF and no automatic rewrite."""
    one = redis_with_aof(free_port(), workdir / "one")
    one.argv += ["--auto-aof-rewrite-percentage", "0"]
    nodes = RedisClusterNodes(free_cluster_ports(shards), workdir / "cluster", replicas=0)
    for node in nodes.nodes:
        aof_on(node)
        node.argv += ["--auto-aof-rewrite-percentage", "0"]
    started = [one, *nodes.nodes]
    try:
        one.start(timeout=30)
        nodes.start()
    except StartupError:
        stop_all(started)
        raise
    return (Target("one Redis", one.url, [one]),
            Target(f"{shards} shards", nodes.url, nodes.nodes),
            started)


def measure(target: Target, plan: ShardsPlan) -> dict[str, Any]:
    """One closed-loop run of the drivers against `target`; its row."""
    target.reset()
    redis_pids = [m.pid for m in target.masters]
    settle(redis_pids)
    argv = [sys.executable, str(Path(__file__).resolve()), "--worker", target.url, "--rooms", str(plan.rooms),
            "--users", str(plan.users), "--threads", str(plan.threads), "--batch", str(plan.batch),
            "--duration", str(plan.duration), "--body", str(plan.body)]
    workers = [subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                start_new_session=True) for _ in range(plan.workers)]
    try:
        for process in workers:
            if not json.loads(process.stdout.readline() or "{}").get("ready"):
                raise BenchError(f"a driver of {target.name} did not start")
        per_master = [cpu_seconds([pid]) for pid in redis_pids]
        drivers, machine, stats = cpu_seconds(p.pid for p in workers), machine_busy_seconds(), target.evalsha_stats()
        started = time.monotonic()
        for process in workers:
            process.stdin.write("go\n")
            process.stdin.flush()
        counts = [json.loads(process.stdout.readline()) for process in workers]
        # The clock stops at the last answer: the drivers' own process exit is not billed.
        wall = time.monotonic() - started
        per_master = [cpu_seconds([pid]) - before for pid, before in zip(redis_pids, per_master)]
        drivers = cpu_seconds(p.pid for p in workers) - drivers
        machine = machine_busy_seconds() - machine
        stats = [(c - c0, u - u0) for (c, u), (c0, u0) in zip(target.evalsha_stats(), stats)]
    finally:
        for process in workers:
            process.stdin.close()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
    acked = sum(c["acked"] for c in counts)
    calls = sum(c for c, _ in stats) or 1
    shard_pct = [cpu / wall * 100 for cpu in per_master]
    busiest = max(shard_pct)
    rate = acked / wall
    return {"target": target.name, "shards": len(target.masters), "msg_per_s": rate, "acked": acked,
            "refused": sum(c["refused"] for c in counts), "errors": sum(c["errors"] for c in counts),
            "lost": acked - target.stored(plan.rooms), "seconds": wall,
            "shard_cpu_pct": shard_pct, "busiest_cpu_pct": busiest,
            "redis_cpu_pct": sum(shard_pct),
            "redis_us_per_msg": sum(per_master) / max(1, acked) * 1e6,
            "busiest_us_per_msg": max(per_master) / max(1, acked) * 1e6,
            "evalsha_us_per_msg": sum(u for _, u in stats) / max(1, acked),
            "evalsha_share_pct": [c / calls * 100 for c, _ in stats],
            "ceiling_msg_per_s": rate / (busiest / 100) if busiest else float("nan"),
            "driver_cpu_pct": drivers / wall * 100,
            "other_cpu_pct": max(0.0, machine - sum(per_master) - drivers) / wall * 100}


def product(target: Target, plan: ShardsPlan, log_dir: Path) -> dict[str, Any]:
    """realtime itself (3 replicas, every feature on, bench/stacks.py) on `target`: the many-rooms
    workload of bench/chatload.py at a fixed rate; each Redis process's CPU, the replicas', loss."""
    import chatload
    from measure import pids, snapshot
    from stacks import RealtimeStack
    target.reset()
    rooms = chatload.RoomsPlan(rooms=plan.product_rooms, senders=plan.product_senders,
                               users=min(200, plan.product_rooms * 2))
    stack = RealtimeStack("realtime", target.url, log_dir)
    try:
        stack.start(3, with_nginx=False)
        members = chatload.make_members(stack, rooms, len(stack.replicas))
        _, errors = chatload.connect_all(stack, members, 50)
        if errors:
            raise BenchError(f"realtime on {target.name}: {len(errors)} clients failed: {errors[:3]}")
        drive = chatload.Drive(stack.name, members, rooms.rooms)
        redis_pids = [m.pid for m in target.masters]
        settle(pids(stack.replicas) + redis_pids)
        groups = {"server": pids(stack.replicas), "generator": [os.getpid()],
                  **{f"redis{n}": [pid] for n, pid in enumerate(redis_pids)}}
        # What Redis spends with everyone connected and nobody sending (heartbeats, the registry,
        # the figures, cluster cron and bus): at a few hundred messages a second it is a large
        # part of the whole, so the row has it apart.
        idle = snapshot(groups)
        time.sleep(IDLE_WINDOW)
        before = snapshot(groups)
        idle = {name: (before[name] - idle[name]) / (before["wall"] - idle["wall"]) for name in groups}
        result = drive.run(plan.product_rate, plan.product_duration)
        after = snapshot(groups)
        drive.close()
    finally:
        stop_all(stack.processes())
    wall = after["wall"] - before["wall"]
    cpu = {name: after[name] - before[name] for name in groups}
    shard = [cpu[f"redis{n}"] for n in range(len(redis_pids))]
    beyond = [max(0.0, used - idle[f"redis{n}"] * wall) for n, used in enumerate(shard)]
    acked = max(1, result["acked"])
    return {"target": target.name, "shards": len(redis_pids), "rate": plan.product_rate,
            "msg_per_s": result["acked"] / plan.product_duration, "acked": result["acked"],
            "lost": result["lost"], "refused": result["refused"], "unacked": result["unacked"],
            "p99_ms": result["p99_ms"], "server_us_per_msg": cpu["server"] / acked * 1e6,
            "shard_cpu_pct": [c / wall * 100 for c in shard], "redis_us_per_msg": sum(shard) / acked * 1e6,
            "busiest_us_per_msg": max(shard) / acked * 1e6,
            "redis_idle_cpu_pct": sum(idle[f"redis{n}"] for n in range(len(redis_pids))) * 100,
            "redis_us_per_msg_beyond_idle": sum(beyond) / acked * 1e6,
            "busiest_us_per_msg_beyond_idle": max(beyond) / acked * 1e6,
            "other_cpu_pct": max(0.0, after["machine"] - before["machine"] - sum(cpu.values())) / wall * 100}


def run(plan: ShardsPlan, workdir: Path) -> list[dict[str, Any]]:
    """Every repetition, the one Redis and the cluster in alternating order, the drivers' runs, then
    realtime's; every run's row (`kind` "redis" or "product")."""
    one, cluster, started = start_targets(workdir, plan.shards)
    rows = []
    try:
        for kind, repetitions in (("redis", plan.repetitions), ("product", plan.product_repetitions)):
            for repetition in range(repetitions):
                for target in ((one, cluster) if repetition % 2 == 0 else (cluster, one)):
                    measured = measure(target, plan) if kind == "redis" else product(target, plan, workdir / "logs")
                    row = {"kind": kind, "repetition": repetition, **measured}
                    rows.append(row)
                    shown = {k: (round(v, 1) if isinstance(v, float) else
                                 [round(x, 1) for x in v] if isinstance(v, list) else v) for k, v in row.items()}
                    print(f"  shards: {json.dumps(shown)}", file=sys.stderr, flush=True)
    finally:
        stop_all(started)
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per kind ("redis", "product") and target: medians (lost, refused, errors summed; the lists
    those of the median run by msg/s)."""
    import statistics
    out: dict[str, list[dict[str, Any]]] = {"redis": [], "product": []}
    for kind in out:
        group = [r for r in rows if r.get("kind", "redis") == kind]
        for name in dict.fromkeys(r["target"] for r in group):
            mine = sorted((r for r in group if r["target"] == name), key=lambda r: r["msg_per_s"])
            middle = mine[(len(mine) - 1) // 2]
            summary = {"target": name, "runs": len(mine), "shards": middle["shards"],
                       **{k: v for k, v in middle.items() if isinstance(v, list)}}
            for key, value in middle.items():
                if key in ("lost", "refused", "errors", "unacked", "acked"):
                    summary[key] = sum(r[key] for r in mine)
                elif isinstance(value, float):
                    summary[key] = statistics.median(r[key] for r in mine)
            out[kind].append(summary)
    return out


def render(summaries: dict[str, list[dict[str, Any]]], plan: ShardsPlan) -> str:
    """The two tables, and the cluster's figures over the one Redis's."""
    import report
    fmt = report.fmt
    per = lambda values: " / ".join(f"{p:.0f}" for p in values)  # noqa: E731
    lines = [[s["target"], fmt(s["msg_per_s"], ".0f"), per(s["shard_cpu_pct"]), fmt(s["redis_us_per_msg"]),
              fmt(s["busiest_us_per_msg"]), fmt(s["evalsha_us_per_msg"]), per(s["evalsha_share_pct"]),
              fmt(s["ceiling_msg_per_s"], ".0f"), fmt(s["driver_cpu_pct"], ".0f"), fmt(s["other_cpu_pct"], ".0f"),
              str(s["lost"]), str(s["refused"] + s["errors"])] for s in summaries["redis"]]
    text = (f"Redis as the limit: a send's Redis calls, pipelined, {plan.rooms} rooms, {plan.users} users, "
            f"{plan.body}-character bodies, AOF everysec ({plan.workers} driver processes x {plan.threads} "
            f"pipelines of {plan.batch}; medians of {plan.repetitions}):\n\n" + report.markdown(
                ["target", "msg/s", "Redis cpu% per process", "redis µs/msg", "busiest Redis µs/msg",
                 "EVALSHA µs/msg", "EVALSHA % per shard", "ceiling msg/s", "driver cpu%", "other cpu%", "lost",
                 "refused+errors"], lines, left=1))
    by = {s["shards"]: s for s in summaries["redis"]}
    one, many = by.get(1), next((s for k, s in by.items() if k > 1), None)
    if one and many:
        text += (f"\n\n{many['target']} / one Redis: msg/s {many['msg_per_s'] / one['msg_per_s']:.2f}x, "
                 f"busiest Redis µs/msg {many['busiest_us_per_msg'] / one['busiest_us_per_msg']:.2f}x, "
                 f"ceiling {many['ceiling_msg_per_s'] / one['ceiling_msg_per_s']:.2f}x (ceiling: the rate "
                 "at which the busiest Redis would use a whole core, extrapolated)")
    if summaries["product"]:
        lines = [[s["target"], fmt(s["msg_per_s"], ".0f"), str(s["lost"]), str(s["refused"] + s["unacked"]),
                  fmt(s["p99_ms"]), fmt(s["server_us_per_msg"], ".0f"), per(s["shard_cpu_pct"]),
                  fmt(s["redis_idle_cpu_pct"]), fmt(s["redis_us_per_msg"], ".0f"),
                  fmt(s["redis_us_per_msg_beyond_idle"], ".0f"), fmt(s["busiest_us_per_msg_beyond_idle"], ".0f"),
                  fmt(s["other_cpu_pct"], ".0f")]
                 for s in summaries["product"]]
        text += (f"\n\nrealtime itself on each (3 replicas, every feature on, {plan.product_rooms} rooms of "
                 f"2-10 members at {plan.product_rate:g} msg/s for {plan.product_duration:g} s; the replicas, "
                 f"not Redis, are this machine's limit; medians of {plan.product_repetitions}):\n\n"
                 + report.markdown(["target", "msg/s", "lost", "refused+unacked", "p99 ms", "server µs/msg",
                                    "Redis cpu% per process", "Redis idle cpu%", "redis µs/msg",
                                    "beyond idle", "busiest Redis beyond idle", "other cpu%"], lines, left=1))
    return text


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command line (`--worker URL` is the driver process's)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="tiny and short (a few seconds)")
    parser.add_argument("--worker", metavar="URL", help=argparse.SUPPRESS)
    for name in ("rooms", "users", "shards", "workers", "threads", "batch", "repetitions", "body"):
        parser.add_argument(f"--{name}", type=int)
    parser.add_argument("--duration", type=float, help="seconds of sending per run")
    parser.add_argument("--json", type=Path, help="where to write the results (default: under run/bench/)")
    return parser.parse_args(argv)


def chosen_plan(args: argparse.Namespace) -> ShardsPlan:
    """The full or smoke plan with the command line's overrides."""
    base = SHARDS_SMOKE if args.smoke else SHARDS_FULL
    overrides = {k: getattr(args, k) for k in asdict(base) if getattr(args, k, None) is not None}
    return replace(base, **overrides)


def main(argv: list[str] | None = None) -> int:
    """Run the plan and print the table (or, with --worker, be one driver)."""
    args = parse_args(argv)
    if args.worker:
        worker(args.worker, args.rooms, args.users, args.threads, args.batch, args.duration, args.body)
        return 0
    import signal

    import report
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    plan = chosen_plan(args)
    workdir = ROOT / "run" / "bench" / time.strftime("%Y%m%d-%H%M%S-shards")
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        rows = run(plan, workdir)
    except (StartupError, BenchError) as error:
        print(f"bench failed: {error}", file=sys.stderr)
        return 1
    summaries = summarize(rows)
    json_path = args.json or workdir / "results.json"
    json_path.write_text(json.dumps({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                     "machine": report.machine(), "code": report.measured_code(),
                                     "plan": asdict(plan), "runs": rows, "summaries": summaries}, indent=2))
    print(render(summaries, plan))
    print(f"\nJSON: {json_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
