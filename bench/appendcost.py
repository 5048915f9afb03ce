"""CPU per message append, group commit on against off, in one gevent-patched process on one Redis.

The store alone (realtime.store.RedisStore.append_message with an idempotency key, the rate
limit's quota and an announcement, as a `send` makes it), called by C greenlets at once, each
appending one message after another to its own room: this process's CPU per append
(time.process_time) and redis-server's (INFO cpu), alternating on/off per round. What the full
server gains is smaller (the append is a part of a send); bench/compare.py's chat workloads
measure that. No figure is checked; the redis-server it starts is stopped by PID.

    .venv/bin/python bench/appendcost.py                       # C = 1, 4, 20; ~30 s
    .venv/bin/python bench/appendcost.py --concurrency 20 --appends 20000 --rounds 5
"""
from gevent import monkey

monkey.patch_all()

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import gevent  # noqa: E402
import redis  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

from realtime.devcluster import RedisServer, free_port  # noqa: E402
from realtime.store import Announcement, Quota, Retention, create_redis  # noqa: E402
from realtime.store.redis import RedisStore  # noqa: E402

KEEP = Retention(max_messages=1000, max_age=3600, idempotency_ttl=60)
BODY = "x" * 150


def redis_cpu(client: redis.Redis) -> float:
    """redis-server's CPU seconds so far."""
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def one_run(store: RedisStore, client: redis.Redis, concurrency: int, appends: int, tag: str) -> tuple[float, float]:
    """(our µs, redis µs) per append of `appends` spread over `concurrency` greenlets."""
    each = appends // concurrency
    announce = Announcement("bench-channel", "[", "]")

    def sender(n: int) -> None:
        room = f"{tag}-{n}"
        for i in range(each):
            message = {"from": {"id": f"u{n}", "name": "u"}, "type": "text", "body": BODY,
                       "ts": int(time.time() * 1000), "client_id": f"{tag}-{n}-{i}"}
            store.append_message(room, message, f"u{n}:{tag}-{i}", KEEP, (), announce,
                                 Quota("send", f"u{n}", 1_000_000, 60))

    cpu, redis_before = time.process_time(), redis_cpu(client)
    gevent.joinall([gevent.spawn(sender, n) for n in range(concurrency)], raise_error=True)
    done = each * concurrency
    return ((time.process_time() - cpu) / done * 1e6, (redis_cpu(client) - redis_before) / done * 1e6)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", default="1,4,20", help="comma-separated greenlet counts")
    parser.add_argument("--appends", type=int, default=6000, help="appends per run")
    parser.add_argument("--rounds", type=int, default=3, help="on/off pairs per concurrency (order alternates)")
    args = parser.parse_args()
    server = RedisServer(free_port(), Path(tempfile.mkdtemp(prefix="appendcost-")))
    server.start(timeout=30)
    try:
        client = redis.Redis.from_url(server.url)
        stores = {mode: RedisStore(create_redis(server.url), group_commit=mode == "on") for mode in ("on", "off")}
        print("| C | group commit | our µs/append | redis µs/append | appends per pipeline |")
        print("|--:|---|--:|--:|--:|")
        for concurrency in (int(c) for c in args.concurrency.split(",")):
            figures: dict[str, list[tuple[float, float]]] = {"on": [], "off": []}
            one_run(stores["on"], client, concurrency, min(args.appends, 500), "warm")  # scripts loaded, pools filled
            one_run(stores["off"], client, concurrency, min(args.appends, 500), "warm")
            batches_before = (stores["on"].group_commit.batches, stores["on"].group_commit.calls)
            for round_ in range(args.rounds):
                for mode in (("on", "off") if round_ % 2 == 0 else ("off", "on")):
                    client.flushall()
                    figures[mode].append(one_run(stores[mode], client, concurrency, args.appends, f"r{round_}{mode}"))
            gc = stores["on"].group_commit
            per_batch = (gc.calls - batches_before[1]) / max(1, gc.batches - batches_before[0])
            for mode in ("off", "on"):
                ours = statistics.median(f[0] for f in figures[mode])
                theirs = statistics.median(f[1] for f in figures[mode])
                merged = f"{per_batch:.1f}" if mode == "on" else "1"
                print(f"| {concurrency} | {mode} | {ours:.1f} | {theirs:.1f} | {merged} |", flush=True)
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
