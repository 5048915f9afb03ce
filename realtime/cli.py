"""`realtime serve | cluster | emit | webhooks | smoke`, and `realtime --version`."""
from __future__ import annotations

import argparse
import json
import os
import sys

from .settings import PROJECT_ROOT


def serve(args: argparse.Namespace) -> int:
    """Run one replica under gunicorn with the project's gunicorn.conf.py (replaces this process)."""
    from .settings import load_settings
    from .transport import decide
    try:
        decide(load_settings()["FAST_PATHS"])  # the worker checks again; refuse before exec
    except RuntimeError as exc:
        print(f"realtime serve: {exc}", file=sys.stderr)
        return 2
    os.environ["REALTIME_HOST"] = args.host
    os.environ["REALTIME_PORT"] = str(args.port)
    conf = os.environ.get("REALTIME_GUNICORN_CONF", str(PROJECT_ROOT / "config" / "gunicorn.conf.py"))
    argv = [sys.executable, "-m", "gunicorn", "--config", conf, "--chdir", str(PROJECT_ROOT), "wsgi:app"]
    os.execv(sys.executable, argv)
    return 0  # not reached


def redis_url(args: argparse.Namespace, command: str) -> str | None:
    """--redis-url or REALTIME_REDIS_URL; says so on stderr when neither is given."""
    url = args.redis_url or os.environ.get("REALTIME_REDIS_URL")
    if not url:
        print(f"realtime {command}: --redis-url or REALTIME_REDIS_URL is required", file=sys.stderr)
    return url


def emit(args: argparse.Namespace) -> int:
    """Send one message into a room through Redis."""
    from .emitter import Emitter
    from .errors import AppError
    url = redis_url(args, "emit")
    if not url:
        return 2
    emitter = Emitter(url)
    try:
        sender = {"id": args.sender.lower(), "name": args.sender}
        message = emitter.send(args.room, args.text, sender=sender, client_id=args.client_id)
    except AppError as exc:
        print(json.dumps({"error": exc.to_dict()}), file=sys.stderr)
        return 1
    finally:
        emitter.close()
    print(json.dumps(message))
    return 0


def cluster(args: argparse.Namespace) -> int:
    """Start, stop or inspect the local cluster (redis, 3 replicas, nginx, webhook)."""
    from . import devcluster
    return devcluster.main([args.action])


def webhooks(args: argparse.Namespace) -> int:
    """Inspect the webhook queue, list dead letters, or replay them."""
    from .store import create_store
    url = redis_url(args, "webhooks")
    if not url:
        return 2
    store = create_store(url)
    if args.action == "replay":
        print(json.dumps({"replayed": store.replay_dead_letters(args.limit)}))
    elif args.action == "dead":
        for record in store.dead_letters(args.limit):
            print(json.dumps(record))
    else:
        print(json.dumps(store.webhook_backlog()))
    return 0


def parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    from .version import VERSION
    root = argparse.ArgumentParser(prog="realtime", description=__doc__)
    root.add_argument("--version", action="version", version=f"realtime {VERSION}")
    commands = root.add_subparsers(dest="command", required=True)
    run = commands.add_parser("serve", help="run one replica (gunicorn, gevent-websocket worker)")
    run.add_argument("--host", default=os.environ.get("REALTIME_HOST", "127.0.0.1"))
    run.add_argument("--port", type=int, default=int(os.environ.get("REALTIME_PORT", "8000")))
    run.set_defaults(func=serve)
    send = commands.add_parser("emit", help="send a message to a room through Redis")
    send.add_argument("--room", required=True)
    send.add_argument("--redis-url")
    send.add_argument("--from", dest="sender", default="system")
    send.add_argument("--client-id")
    send.add_argument("text")
    send.set_defaults(func=emit)
    hooks = commands.add_parser("webhooks", help="webhook queue: backlog, dead letters, replay")
    hooks.add_argument("action", choices=["backlog", "dead", "replay"])
    hooks.add_argument("--redis-url")
    hooks.add_argument("--limit", type=int, default=1000)
    hooks.set_defaults(func=webhooks)
    local = commands.add_parser("cluster", help="local cluster without Docker")
    local.add_argument("action", choices=["start", "stop", "status"])
    local.set_defaults(func=cluster)
    from .smoke import add_parser as add_smoke
    add_smoke(commands)
    return root


def main(argv: list[str] | None = None) -> int:
    """Entry point of the `realtime` console script."""
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
