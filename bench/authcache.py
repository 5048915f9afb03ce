"""What the hot-path auth caches save: one replica with AUTH_CACHE_SIZE on, then off, same run.

Starts a redis-server and, in turn, a realtime replica with the caches on (the default) and with
`REALTIME_AUTH_CACHE_SIZE=0` (every token decoded, every revocation and invitation asked of
Redis), the order reversed on every other round. Each arm runs the same work with 50 users'
tokens, as clients reconnecting and API callers do: socket.io connects that join a private room
the user was invited to, and authenticated HTTP reads. It prints the replica's CPU per operation
(/proc), the Redis lookups per operation (INFO commandstats) and the ratio on/off. No figure is
checked against a threshold; every process it starts is stopped by PID before it exits.

    .venv/bin/python bench/authcache.py            # a minute or two
    .venv/bin/python bench/authcache.py --smoke    # a few seconds, for CI
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
import requests
import socketio

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from measure import cpu_seconds  # noqa: E402
from realtime.devcluster import (RedisServer, Replica, clean_environ, free_ports,  # noqa: E402
                                   group_members, stop_all)

USERS = 50
ROOM = "private-bench"
LOOKUPS = ("exists", "sismember")  # the revocation check and the invitation check


def replica_env(redis_url: str, workdir: Path, cache_size: int) -> dict[str, str]:
    """A production-like replica (auth, persistence, limits that never refuse), demo login on."""
    return {**clean_environ(), "REALTIME_REDIS_URL": redis_url, "REALTIME_DEMO_LOGIN": "1",
            "REALTIME_JWT_SECRET_KEY": secrets.token_urlsafe(48), "REALTIME_DEMO_ADMINS": "boss",
            "REALTIME_DEMO_ADMINS_UNSAFE": "acknowledged",
            "REALTIME_ENV_FILE": str(workdir / "none.env"), "REALTIME_LOG_LEVEL": "WARNING",
            "REALTIME_RATE_LIMITS": "connect=1000000/minute; join=1000000/minute",
            "REALTIME_LOGIN_RATE_LIMIT": "1000000/minute", "REALTIME_HTTP_RATE_LIMIT": "1000000/minute",
            "REALTIME_AUTH_CACHE_SIZE": str(cache_size)}


def lookups(client: redis.Redis) -> int:
    """Revocation and invitation lookups Redis has served so far."""
    stats = client.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in LOOKUPS)


def tokens(url: str, users: int = USERS) -> tuple[list[str], str]:
    """Users' tokens from the demo login, each invited into ROOM by the admin `boss`."""
    login = lambda name: requests.post(url + "/api/auth/token", json={"username": name},  # noqa: E731
                                       timeout=10).json()["access_token"]
    admin = login("boss")
    tokens = [login(f"user{n}") for n in range(users)]
    for n in range(users):
        requests.post(f"{url}/api/admin/rooms/{ROOM}/invitations", json={"user": f"user{n}"},
                      headers={"Authorization": "Bearer " + admin}, timeout=10).raise_for_status()
    return tokens, admin


def connect_and_join(url: str, token: str) -> None:
    """One client's visit: connect with the token, join the private room, leave."""
    client = socketio.Client(reconnection=False)
    client.connect(url, namespaces=["/chat"], auth={"token": token}, transports=["websocket"],
                   wait_timeout=10)
    try:
        ack = client.call("join", {"room": ROOM}, namespace="/chat", timeout=10)
        if not ack.get("ok"):
            raise RuntimeError(f"join refused: {ack}")
    finally:
        client.disconnect()


def measure(replica: Replica, store: redis.Redis, work: Any, count: int) -> dict[str, float]:
    """CPU µs of the replica and Redis lookups, per operation, over `count` operations."""
    pids = group_members(replica.pid)
    time.sleep(0.5)  # let the previous phase's tail (disconnects) settle
    cpu, seen = cpu_seconds(pids), lookups(store)
    for n in range(count):
        work(n)
    time.sleep(0.5)
    return {"server_us": (cpu_seconds(pids) - cpu) / count * 1e6,
            "lookups": (lookups(store) - seen) / count}


def run_arm(cache_size: int, redis_server: RedisServer, port: int, workdir: Path,
            connects: int, reads: int, user_count: int) -> dict[str, Any]:
    """Start a replica with the given cache size, drive both workloads, stop it."""
    store = redis.Redis.from_url(redis_server.url)
    store.flushall()
    replica = Replica(port, replica_env(redis_server.url, workdir, cache_size), workdir,
                      instance_id=f"auth-{cache_size}")
    try:
        replica.start(timeout=120)
        users, _ = tokens(replica.url, user_count)
        http = requests.Session()
        for token in users:  # warm: each token's first use is a miss in either arm
            connect_and_join(replica.url, token)
        connect = measure(replica, store, lambda n: connect_and_join(replica.url, users[n % len(users)]),
                          connects)

        def read(n: int) -> None:
            answer = http.get(replica.url + "/api/rooms/lobby/messages?limit=1", timeout=10,
                              headers={"Authorization": "Bearer " + users[n % len(users)]})
            answer.raise_for_status()
        api = measure(replica, store, read, reads)
        return {"cache_size": cache_size, "connect": connect, "api": api}
    finally:
        stop_all([replica])
        store.close()


def main(argv: list[str] | None = None) -> int:
    """Run the rounds and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="one short round (CI)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connects", type=int, default=300)
    parser.add_argument("--reads", type=int, default=2000)
    parser.add_argument("--users", type=int, default=USERS, help="distinct tokens")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args(argv)
    if args.smoke:
        args.rounds, args.connects, args.reads, args.users = 1, 30, 100, 10
    workdir = Path(tempfile.mkdtemp(prefix="bench-authcache-"))
    redis_port, replica_port = free_ports(2)
    redis_server = RedisServer(redis_port, workdir / "redis", log_dir=workdir)
    results: list[dict[str, Any]] = []
    try:
        redis_server.start(timeout=30)
        for round_number in range(args.rounds):
            order = (10_000, 0) if round_number % 2 == 0 else (0, 10_000)
            for size in order:
                results.append(run_arm(size, redis_server, replica_port, workdir, args.connects, args.reads,
                                       args.users))
    finally:
        stop_all([redis_server])
    report(results, args)
    return 0


def report(results: list[dict[str, Any]], args: argparse.Namespace) -> None:
    """Medians per arm, and on/off ratios."""
    def median(size: int, phase: str, key: str) -> float:
        return statistics.median(r[phase][key] for r in results if r["cache_size"] == size)
    print(f"auth caches: {args.rounds} round(s), {args.connects} connect+join and {args.reads} "
          f"API reads per arm, {args.users} users' tokens, order alternated")
    print(f"{'operation':<16} {'cache':>6} {'server µs/op':>13} {'redis lookups/op':>17}")
    summary: dict[str, Any] = {}
    for phase, label in (("connect", "connect + join"), ("api", "API read")):
        for size, name in ((10_000, "on"), (0, "off")):
            print(f"{label:<16} {name:>6} {median(size, phase, 'server_us'):>13.0f} "
                  f"{median(size, phase, 'lookups'):>17.2f}")
        ratio = median(10_000, phase, "server_us") / median(0, phase, "server_us")
        summary[phase] = {"on": {k: median(10_000, phase, k) for k in ("server_us", "lookups")},
                          "off": {k: median(0, phase, k) for k in ("server_us", "lookups")},
                          "ratio_server_us": ratio}
        print(f"{label:<16} {'on/off':>6} {ratio:>12.2f}x")
    if args.json:
        args.json.write_text(json.dumps({"runs": results, "summary": summary}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
