"""The three stacks bench/compare.py measures, each as 3 replicas on one Redis, and nginx in front.

realtime: `realtime serve` (gunicorn, config/gunicorn.conf.py) with every feature on; plain:
bench/plain_app.py under the same gunicorn config with a Redis message queue; node: Socket.IO 4
with @socket.io/redis-adapter (bench/node/server.js). All on 127.0.0.1, stopped by PID.
"""
from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
NODE_DIR = ROOT / "bench" / "node"
sys.path.insert(0, str(ROOT))

from realtime.devcluster import (HOST, TEMPLATE, Nginx, Process, RedisServer, Replica,  # noqa: E402
                                   Server, clean_environ, find_executable, free_ports,
                                   group_members, http_ok)

# High enough never to refuse the benchmark, so the limiter still runs on every event as in
# production.
RATE_LIMITS = "connect=1000000/minute; join=1000000/minute; send=1000000/second"
TOKEN_LIFETIME = 6 * 3600
# nginx holds two connections per websocket; the project template's 4096 is too few for 3000.
NGINX_CONNECTIONS = 16384
PLAIN_WORKER = "geventwebsocket.gunicorn.workers.GeventWebSocketWorker"


class PlainApp(Server):
    """bench/plain_app.py under gunicorn + gevent-websocket: ready once Socket.IO answers."""

    def __init__(self, port: int, redis_url: str, log_dir: Path):
        # The deployment the Flask-SocketIO docs show, on the command line: realtime's own
        # config/gunicorn.conf.py carries realtime's worker and logging, which plain must not get.
        argv = [sys.executable, "-m", "gunicorn", "--worker-class", PLAIN_WORKER, "--workers", "1",
                "--worker-connections", "10000", "--no-control-socket", "--bind", f"{HOST}:{port}",
                "--name", f"plain-{port}", "--chdir", str(ROOT / "bench"), "plain_app:app"]
        env = {**clean_environ(), "PLAIN_REDIS_URL": redis_url}
        super().__init__(f"plain-{port}", argv, Path(log_dir) / f"plain-{port}.log", HOST, port,
                         env=env, cwd=ROOT / "bench")

    def ready(self) -> bool:
        """True once the worker answers an Engine.IO handshake (the master binds before it boots)."""
        return http_ok(f"{self.url}/socket.io/?EIO=4&transport=polling")


class NodeReplica(Server):
    """bench/node/server.js: ready once /healthz answers (after its Redis clients connected)."""

    def __init__(self, port: int, redis_url: str, log_dir: Path, adapter: str = "redis"):
        env = {**clean_environ(), "HOST": HOST, "PORT": str(port), "REDIS_URL": redis_url,
               "NODE_ENV": "production", "ADAPTER": adapter}
        argv = [find_executable("node"), "--expose-gc", str(NODE_DIR / "server.js")]
        super().__init__(f"node-{port}", argv, Path(log_dir) / f"node-{port}.log", HOST, port,
                         env=env, cwd=NODE_DIR)

    def ready(self) -> bool:
        """True once the HTTP server answers."""
        return http_ok(f"{self.url}/healthz")


def ensure_node_modules() -> None:
    """`npm ci` in bench/node when node_modules is missing or older than the lock file."""
    marker = NODE_DIR / "node_modules" / ".package-lock.json"
    lock = NODE_DIR / "package-lock.json"
    if marker.exists() and marker.stat().st_mtime >= lock.stat().st_mtime:
        return
    print("bench: npm ci in bench/node", file=sys.stderr, flush=True)
    subprocess.run([find_executable("npm"), "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR,
                   check=True, timeout=600, stdout=sys.stderr)


def redis_with_aof(port: int, workdir: Path) -> RedisServer:
    """A throwaway redis-server that appends to an AOF fsynced every second, like docker-compose's."""
    return aof_on(RedisServer(port, workdir / "redis", log_dir=workdir / "logs"))


def aof_on(server: RedisServer) -> RedisServer:
    """Turn a (not started) redis-server's AOF on, fsynced every second."""
    flag = server.argv.index("--appendonly")
    server.argv[flag + 1] = "yes"
    server.argv += ["--appendfsync", "everysec"]
    return server


def mint_tokens(secret: str, prefix: str, count: int, users: int) -> list[str]:
    """`count` HS256 access tokens for `users` distinct users (connections share identities)."""
    import jwt
    exp = int(time.time()) + TOKEN_LIFETIME
    return [jwt.encode({"sub": f"{prefix}{n % users}", "name": f"{prefix} {n % users}", "exp": exp,
                        "type": "access", "jti": uuid.uuid4().hex}, secret, algorithm="HS256")
            for n in range(count)]


@dataclass
class Stack:
    """One stack's replicas (and nginx when asked), and what its clients need to talk to it."""

    name: str
    redis_url: str
    log_dir: Path
    replicas: list[Server] = field(default_factory=list)
    nginx: Nginx | None = None
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(48))

    def make_replicas(self, ports: list[int]) -> list[Server]:
        """The replica processes (not started)."""
        raise NotImplementedError

    def start(self, count: int, with_nginx: bool, timeout: float = 120.0) -> None:
        """Start `count` replicas on free ports (booting together), then nginx in front if asked."""
        ports = free_ports(count + 1)
        self.replicas = self.make_replicas(ports[:count])
        for replica in self.replicas:
            replica.start(wait=False)
        for replica in self.replicas:
            replica.wait_ready(timeout)
        if with_nginx:
            self.nginx = Nginx(self.log_dir / f"nginx-{self.name}", ports[count],
                               [r.port for r in self.replicas], log_dir=self.log_dir,
                               template=nginx_template(self.log_dir))
            self.nginx.start(timeout=30)

    def processes(self) -> list[Process]:
        """Everything this stack runs now."""
        return [*self.replicas, *([self.nginx] if self.nginx else [])]

    def urls(self) -> list[str]:
        """Where the load generator connects: nginx if it runs, else every replica."""
        return [self.nginx.url] if self.nginx else [r.url for r in self.replicas]

    def tokens(self, subscribers: int, publishers: int, users: int) -> dict[str, list[str]] | None:
        """The clients' JWTs, or None for a stack without auth."""
        return None

    def emitter_argv(self, room: str, run: str, rate: float, duration: float) -> list[str]:
        """The external emitter's command line."""
        return [sys.executable, str(ROOT / "bench" / "emit.py"), "--stack", self.name,
                "--redis-url", self.redis_url, "--room", room, "--run", run,
                "--rate", str(rate), "--duration", str(duration)]

    def log_files(self) -> list[Path]:
        """Every log file the replicas write (for evidence when something is lost)."""
        return [r.log_path for r in self.replicas]

    def collect_garbage(self) -> None:
        """Before an RSS reading: nothing to do for CPython (reference counting frees at once)."""


class RealtimeStack(Stack):
    """realtime with auth, persistence, per-event logging to a file, rate limits and metrics on."""

    # Another tree of realtime to run instead of this checkout (e.g. an older commit unpacked with
    # `git archive`), to measure before/after in one run; None: this checkout.
    root: Path | None = None

    def env(self) -> dict[str, str]:
        """The replicas' environment: nothing from the developer's shell."""
        return {**clean_environ(), "REALTIME_REDIS_URL": self.redis_url,
                "REALTIME_JWT_SECRET_KEY": self.secret, "REALTIME_DEMO_LOGIN": "0",
                "REALTIME_ENV_FILE": str(self.log_dir / "none.env"), "REALTIME_LOG_LEVEL": "INFO",
                "REALTIME_RATE_LIMITS": RATE_LIMITS, "REALTIME_LOGIN_RATE_LIMIT": "1000000/minute",
                "REALTIME_HTTP_RATE_LIMIT": "1000000/minute", "REALTIME_PROXY_COUNT": "1"}

    def make_replicas(self, ports: list[int]) -> list[Server]:
        """`realtime serve` per port, each logging to its own rotated file."""
        replicas = []
        for n, port in enumerate(ports, start=1):
            env = {**self.env(), "REALTIME_LOG_FILE": str(self.log_dir / f"realtime-{port}.app.log")}
            replica = Replica(port, env, self.log_dir, instance_id=f"realtime-{port}")
            if self.root is not None:
                # `-m` from that tree's root imports its package (cwd comes first on sys.path,
                # before the editable install of this checkout), and `serve` uses its config.
                replica.argv = [sys.executable, "-m", "realtime.cli", *replica.argv[1:]]
                replica.cwd = self.root
            replicas.append(replica)
        return replicas

    def emitter_argv(self, room: str, run: str, rate: float, duration: float) -> list[str]:
        """realtime's Emitter, from the same tree as the replicas."""
        argv = super().emitter_argv(room, run, rate, duration)
        return argv + ["--realtime-root", str(self.root)] if self.root else argv

    def tokens(self, subscribers: int, publishers: int, users: int) -> dict[str, list[str]]:
        """Subscribers share `users` identities; each publisher is its own user."""
        return {"subscribers": mint_tokens(self.secret, "sub", subscribers, max(1, users)),
                "publishers": mint_tokens(self.secret, "pub", publishers, max(1, publishers))}

    def log_files(self) -> list[Path]:
        """gunicorn's output and the app's own log file, per replica."""
        return [path for r in self.replicas
                for path in (r.log_path, self.log_dir / f"realtime-{r.port}.app.log")]


class PlainStack(Stack):
    """The shortest idiomatic Flask-SocketIO app, its replicas sharing a Redis message queue."""

    def make_replicas(self, ports: list[int]) -> list[Server]:
        """bench/plain_app.py under gunicorn per port."""
        return [PlainApp(port, self.redis_url, self.log_dir) for port in ports]


class NodeStack(Stack):
    """Socket.IO 4 on Node with the Redis adapter."""

    adapter = "redis"

    def collect_garbage(self) -> None:
        """A full V8 collection in every replica (GET /gc), so RSS shows what is kept alive."""
        for replica in self.replicas:
            http_ok(f"{replica.url}/gc", timeout=10)
        time.sleep(0.2)

    def make_replicas(self, ports: list[int]) -> list[Server]:
        """bench/node/server.js per port."""
        return [NodeReplica(port, self.redis_url, self.log_dir, self.adapter) for port in ports]

    def emitter_argv(self, room: str, run: str, rate: float, duration: float) -> list[str]:
        """@socket.io/redis-emitter (bench/node/emitter.js)."""
        return [find_executable("node"), str(NODE_DIR / "emitter.js"), "--redis-url", self.redis_url,
                "--room", room, "--run", run, "--rate", str(rate), "--duration", str(duration)]


class NodeStreamsStack(NodeStack):
    """Socket.IO 4 on Node with @socket.io/redis-streams-adapter and connection state recovery:
    every broadcast is appended to a Redis stream, as realtime persists every message."""

    adapter = "streams"


STACKS = {"realtime": RealtimeStack, "plain": PlainStack, "node": NodeStack,
          "node-streams": NodeStreamsStack}


def nginx_template(workdir: Path) -> Path:
    """The project's nginx template with room for thousands of websockets (two connections each)."""
    text = TEMPLATE.read_text()
    path = Path(workdir) / "nginx-bench.conf.template"
    path.write_text(text.replace("worker_connections 4096;",
                                 f"worker_connections {NGINX_CONNECTIONS};"))
    return path


def loadgen_config(stack: Stack, room: str, subscribers: int, publishers: int, users: int,
                   workdir: Path, subscriber_client: str = "lite") -> Path:
    """The load generator's config file (and the tokens file next to it)."""
    tokens = stack.tokens(subscribers, publishers, users)
    tokens_path = None
    if tokens is not None:
        tokens_path = Path(workdir) / f"tokens-{stack.name}.json"
        tokens_path.write_text(json.dumps(tokens))
    # Through nginx, clients come from many loopback addresses: its `hash $remote_addr` then
    # spreads them over the replicas (from 127.0.0.1 alone they would all land on one).
    addresses = [f"127.0.0.{n}" for n in range(2, 66)] if stack.nginx else None
    config = {"urls": stack.urls(), "namespace": "/chat", "path": "/socket.io/", "room": room,
              "subscribers": subscribers, "publishers": publishers,
              "tokens": str(tokens_path) if tokens_path else None,
              "events": {"join": "join", "send": "send", "message": "message"},
              "localAddresses": addresses, "connectConcurrency": 100,
              "subscriberClient": subscriber_client}
    path = Path(workdir) / f"loadgen-{stack.name}.json"
    path.write_text(json.dumps(config))
    return path


def have(executable: str) -> bool:
    """True if `executable` is on PATH (or in sbin)."""
    return bool(shutil.which(executable) or shutil.which(executable, path="/usr/local/sbin:/usr/sbin:/sbin"))


def describe(stack: Stack) -> dict[str, Any]:
    """Where the stack's processes are (for the JSON and for py-spy)."""
    return {"name": stack.name, "replicas": [{"pids": group_members(r.pid), "port": r.port,
                                              "log": str(r.log_path)} for r in stack.replicas],
            "nginx": {"pid": stack.nginx.pid, "port": stack.nginx.port} if stack.nginx else None}
