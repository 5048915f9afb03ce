"""Start and stop the local processes of the dev cluster and of the integration tests.

Each process runs in its own session (Ctrl-C in a terminal or the end of `make` does not reach
it), writes to a log file, and is stopped through the PID recorded when it was started, never by
name. `realtime cluster start|stop|status` (or `python -m realtime.devcluster ...`) runs the dev
cluster: redis-server, three replicas, nginx in front and the webhook receiver. Its state (the
`cluster.json` process list, the JWT secret, logs, the generated nginx.conf) lives in
`CLUSTER_STATE_DIR` (default `run/cluster/`). Linux only: ownership checks read /proc.
"""
from __future__ import annotations

import argparse
import getpass
import grp
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "nginx" / "local.conf.template"
HOST = "127.0.0.1"
# Addresses nginx lets reach /metrics, /readyz and /api/stats: loopback and private ranges (the
# same list is written out in nginx/nginx.conf; tests/integration/test_compose.py compares them).
INTERNAL_NETWORKS = ("127.0.0.0/8", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "::1", "fc00::/7")


@dataclass(frozen=True)
class EdgeLimits:
    """nginx's per-address limits on /socket.io/: open connections, new sessions a second, burst."""

    connections: int = 200
    sessions_per_second: int = 5
    burst: int = 20

    def directives(self) -> str:
        """The lines for `location /socket.io/`, as nginx/nginx.conf has them."""
        return (f"limit_conn realtime_conns {self.connections};\n"
                f"            limit_req zone=realtime_sessions burst={self.burst} nodelay;\n"
                "            limit_conn_status 429;\n            limit_req_status 429;")
STOP_TIMEOUT = 25.0  # above gunicorn's graceful_timeout (20 s), so a clean stop is never cut short


class StartupError(RuntimeError):
    """A process exited or did not become ready in time."""


# ---------------------------------------------------------------------------------------------
# ports, executables, readiness


def free_ports(count: int, host: str = HOST) -> list[int]:
    """`count` distinct ports the kernel reports free (sockets held together, so no repeats)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((host, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def free_cluster_ports(count: int, host: str = HOST) -> list[int]:
    """`count` ports for Redis Cluster nodes: each free, and its bus port (+10000) free too."""
    import random
    chosen: list[int] = []
    candidates = random.sample(range(20000, 30000), 2000)  # below the ephemeral range, bus port valid
    for port in candidates:
        if len(chosen) == count:
            break
        if not port_in_use(port, host) and not port_in_use(port + 10000, host):
            chosen.append(port)
    if len(chosen) < count:
        raise StartupError(f"found only {len(chosen)} of {count} free Redis Cluster ports")
    return chosen


def free_port(host: str = HOST) -> int:
    """One port the kernel reports free."""
    return free_ports(1, host)[0]


def port_in_use(port: int, host: str = HOST) -> bool:
    """True if a server could not bind `port` now."""
    with socket.socket() as sock:
        # The servers set SO_REUSEADDR too, so sockets in TIME_WAIT do not count as busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def accepts(port: int, host: str = HOST) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    """True if GET `url` answers 200."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError, ValueError):
        return False


def find_executable(name: str) -> str:
    """`name` on PATH, else in the sbin directories a non-root PATH lacks (nginx lives there)."""
    found = shutil.which(name) or shutil.which(name, path="/usr/local/sbin:/usr/sbin:/sbin")
    if not found:
        raise StartupError(f"{name} not found (try `make system-deps`)")
    return found


def venv_script(name: str) -> str:
    """A console script installed next to this interpreter (the venv), else the one on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else find_executable(name)


# ---------------------------------------------------------------------------------------------
# process identity through /proc


def proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of /proc/PID/stat (state first), or None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may contain spaces and parentheses: split after the last ")".
    return text.rpartition(")")[2].split()


def start_time(pid: int) -> int | None:
    """When `pid` started (clock ticks since boot), or None if it is gone or a zombie."""
    fields = proc_stat(pid)
    if fields is None or fields[0] == "Z":
        return None
    return int(fields[19])  # field 22, starttime


def group_members(pgid: int) -> list[int]:
    """Live PIDs in process group `pgid` (kill(pgid, 0) would also count zombies)."""
    members = []
    for entry in Path("/proc").iterdir():
        fields = proc_stat(int(entry.name)) if entry.name.isdigit() else None
        if fields and fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def wait_until(check: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Poll `check` until it is true or `timeout` seconds pass; return the last result."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


# ---------------------------------------------------------------------------------------------
# processes


class Process:
    """A child in its own session, logging to a file, signalled only through its recorded PID."""

    def __init__(self, name: str, argv: list[str], log_path: Path,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None):
        self.name, self.argv, self.log_path = name, list(argv), Path(log_path)
        self.env, self.cwd = env, cwd
        self.pid: int | None = None
        self.start_time: int | None = None
        self._popen: subprocess.Popen | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} pid={self.pid}>"

    def start(self, wait: bool = True, timeout: float = 30.0) -> "Process":
        """Launch the process; with `wait`, block until it is ready."""
        if self.running():
            raise StartupError(f"{self.name} is already running (pid {self.pid})")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        # A fresh log per handle, but a restart appends: the log of a crash stays readable.
        with open(self.log_path, "ab" if self.pid else "wb") as log:
            # New session: its own process group (stopped as one) and no signals from our terminal.
            self._popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=log,
                                           stderr=subprocess.STDOUT, env=self.env, cwd=self.cwd,
                                           start_new_session=True)
        self.pid = self._popen.pid
        # PID + start time name a process for good: a recycled PID gets a new start time, and
        # unlike /proc/PID/cmdline it survives exec (`realtime serve` execs gunicorn).
        self.start_time = start_time(self.pid)
        if wait:
            self.wait_ready(timeout)
        return self

    def ready(self) -> bool:
        """True once the process serves; subclasses check their port."""
        return True

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Block until `ready()`; raise StartupError with the log tail if it dies or times out."""
        settled = wait_until(lambda: self.ready() or not self.running(), timeout)
        if not settled or not self.running():
            state = "exited" if not self.running() else f"not ready after {timeout:.0f}s"
            raise StartupError(f"{self.name} {state}; last lines of {self.log_path}:\n"
                               f"{self.log_tail()}")

    def running(self) -> bool:
        """True while the process we started, or anything left in its group, is alive."""
        if self.pid is None:
            return False
        if self._popen is not None:
            self._popen.poll()  # reap our own child so it does not linger as a zombie
        current = start_time(self.pid)
        if current is not None:
            return current == self.start_time
        # Leader gone: Linux never hands out a PID still used as a group id, so the group is ours.
        return bool(group_members(self.pid))

    def signal(self, signum: int) -> None:
        """Send `signum` to our process group, if it is still ours."""
        if self.running():
            # The group, not just the PID: a wrapper or master may not forward the signal.
            with suppress(ProcessLookupError):
                os.killpg(self.pid, signum)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM (graceful), then SIGKILL whatever is left after `timeout` seconds."""
        self.signal(signal.SIGTERM)
        if not wait_until(lambda: not self.running(), timeout, 0.05):
            self.kill()

    terminate = stop

    def kill(self) -> None:
        """SIGKILL the whole group at once, like a crash: no graceful shutdown."""
        self.signal(signal.SIGKILL)
        wait_until(lambda: not self.running(), 5.0, 0.05)

    def restart(self, timeout: float = 30.0) -> "Process":
        """Stop, then start again with the same command line (so the same port)."""
        self.stop()
        return self.start(timeout=timeout)

    def log_tail(self, lines: int = 40) -> str:
        """The last `lines` lines of the log file."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:])

    def record(self) -> dict:
        """What `realtime cluster stop` needs to find and check this process later."""
        return {"name": self.name, "pid": self.pid, "start_time": self.start_time,
                "argv": self.argv, "log": str(self.log_path), "url": getattr(self, "url", "")}

    @classmethod
    def from_record(cls, record: Mapping) -> "Process":
        """A handle on a process started by another invocation."""
        process = cls(record["name"], record["argv"], Path(record["log"]))
        process.pid, process.start_time = record["pid"], record["start_time"]
        return process


class Server(Process):
    """A process that listens on host:port; ready once it accepts connections."""

    def __init__(self, name: str, argv: list[str], log_path: Path, host: str, port: int,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None):
        self.host, self.port = host, port
        super().__init__(name, argv, log_path, env, cwd)

    @property
    def url(self) -> str:
        """The base URL, without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    def ready(self) -> bool:
        """True once something accepts connections on the port."""
        return accepts(self.port, self.host)


class HealthCheckedServer(Server):
    """A server of ours: ready once GET /healthz answers 200."""

    def ready(self) -> bool:
        """True once /healthz answers 200."""
        return http_ok(self.url + "/healthz")


class RedisServer(Server):
    """A throwaway redis-server on host:port: no RDB, no AOF, its files under `state_dir`.

    `args` are more server options, e.g. `["--replicaof", host, port]` for a replica.
    """

    def __init__(self, port: int, state_dir: Path, host: str = HOST, log_dir: Path | None = None,
                 args: Iterable[str] = ()):
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        argv = [find_executable("redis-server"), "--port", str(port), "--bind", host,
                "--save", "", "--appendonly", "no", "--dir", str(state_dir), "--daemonize", "no",
                *args]
        log_path = Path(log_dir or state_dir) / f"redis-{port}.log"
        super().__init__(f"redis-{port}", argv, log_path, host, port)

    @property
    def url(self) -> str:
        """The redis:// URL of database 0."""
        return f"redis://{self.host}:{self.port}/0"

    def ready(self) -> bool:
        """True if the server answers PING (raw protocol: no client library needed)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False


class RedisClusterNodes:
    """A throwaway Redis Cluster on loopback: `masters` shards, each with `replicas` replicas.

    redis-server processes in cluster mode (no persistence, files under `state_dir`), joined by
    `redis-cli --cluster create`; `.url` is the redis+cluster:// URL with every node as a seed.
    Each node is a RedisServer: stopped (or killed, for a failover) through its own PID.
    """

    def __init__(self, ports: list[int], state_dir: Path, host: str = HOST, replicas: int = 1,
                 node_timeout_ms: int = 1000):
        self.host, self.replicas = host, replicas
        self.state_dir = Path(state_dir)
        self.nodes = [RedisServer(port, self.state_dir / str(port), host, args=[
            "--cluster-enabled", "yes", "--cluster-config-file", f"nodes-{port}.conf",
            "--cluster-node-timeout", str(node_timeout_ms), "--cluster-require-full-coverage", "no",
            "--cluster-allow-reads-when-down", "no"]) for port in ports]

    @property
    def url(self) -> str:
        """redis+cluster://host:port,... (every node a seed)."""
        return "redis+cluster://" + ",".join(f"{n.host}:{n.port}" for n in self.nodes) + "/"

    def start(self, timeout: float = 60.0) -> "RedisClusterNodes":
        """Start the nodes, join them into a cluster, and wait until every slot is served."""
        start_all(self.nodes, timeout)
        create = [find_executable("redis-cli"), "--cluster", "create",
                  *(f"{n.host}:{n.port}" for n in self.nodes),
                  "--cluster-replicas", str(self.replicas), "--cluster-yes"]
        done = subprocess.run(create, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise StartupError(f"redis-cli --cluster create failed:\n{done.stdout}\n{done.stderr}")
        if not wait_until(self.healthy, timeout, 0.2):
            raise StartupError(f"the Redis Cluster on {self.url} did not reach cluster_state:ok")
        return self

    def cli(self, node: RedisServer, *args: str) -> str:
        """redis-cli against one node; its output."""
        done = subprocess.run([find_executable("redis-cli"), "-h", node.host, "-p", str(node.port), *args],
                              capture_output=True, text=True, timeout=10)
        return done.stdout

    def healthy(self) -> bool:
        """Every running node reports cluster_state:ok; every replica is in sync (WAIT can count it)."""
        running = [n for n in self.nodes if n.running()]
        return bool(running) and all(self.node_ok(n) for n in running)

    def node_ok(self, node: RedisServer) -> bool:
        """The node sees the cluster as ok and, if it is a replica, is in sync with its master."""
        if "cluster_state:ok" not in self.cli(node, "cluster", "info"):
            return False
        replication = self.cli(node, "info", "replication")
        return "role:slave" not in replication or "master_link_status:up" in replication

    def master_of(self, key: str) -> RedisServer:
        """The node that serves `key`'s slot now."""
        for node in self.nodes:
            if node.running():
                slot = self.cli(node, "cluster", "keyslot", key).strip()
                for line in self.cli(node, "cluster", "nodes").splitlines():
                    fields = line.split()
                    if "master" in fields[2] and "fail" not in fields[2] and self.serves(fields[8:], int(slot)):
                        port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
                        return next(n for n in self.nodes if n.port == port)
        raise LookupError(f"no master serves {key!r}")

    def masters(self) -> list[RedisServer]:
        """The running nodes that are masters now."""
        return [n for n in self.nodes if n.running() and self.cli(n, "role").startswith("master")]

    def move_slot(self, slot: int, target: RedisServer, batch: int = 100) -> int:
        """Move `slot` and its keys to `target`, as `redis-cli --cluster reshard` does for each slot:
        IMPORTING on the target, MIGRATING on the owner, MIGRATE the keys in batches, then the new
        owner announced to every master. Returns the keys moved; raises StartupError on a refusal."""
        owner = next(n for n in self.masters() if self.serves(self.slot_ranges(n), slot))
        if owner is target:
            return 0
        target_id, owner_id = (self.cli(n, "cluster", "myid").strip() for n in (target, owner))
        self._ok(target, "cluster", "setslot", str(slot), "importing", owner_id)
        self._ok(owner, "cluster", "setslot", str(slot), "migrating", target_id)
        moved = 0
        while keys := self.cli(owner, "cluster", "getkeysinslot", str(slot), str(batch)).split():
            self._ok(owner, "migrate", target.host, str(target.port), "", "0", "10000", "KEYS", *keys)
            moved += len(keys)
        for node in (target, owner, *self.masters()):
            self._ok(node, "cluster", "setslot", str(slot), "node", target_id)
        return moved

    def slot_ranges(self, node: RedisServer) -> list[str]:
        """The slot ranges `node` serves, as its own CLUSTER NODES line says."""
        line = next(line for line in self.cli(node, "cluster", "nodes").splitlines() if "myself" in line)
        return line.split()[8:]

    def _ok(self, node: RedisServer, *args: str) -> str:
        """redis-cli against one node; an error answer raises."""
        answer = self.cli(node, *args)
        if answer.startswith(("ERR", "(error)")) or "ERR" in answer.split("\n", 1)[0]:
            raise StartupError(f"redis-cli {' '.join(args[:4])} on {node.port}: {answer.strip()}")
        return answer

    @staticmethod
    def serves(ranges: list[str], slot: int) -> bool:
        """Whether `slot` is in CLUSTER NODES slot ranges like ['0-5460', '7000']."""
        for item in ranges:
            if item.startswith("["):
                continue  # a slot being migrated or imported
            low, _, high = item.partition("-")
            if int(low) <= slot <= int(high or low):
                return True
        return False

    def stop(self) -> None:
        """Stop every node through its PID."""
        stop_all(self.nodes, timeout=10)


class Replica(HealthCheckedServer):
    """One `realtime serve` replica (gunicorn, one gevent-websocket worker) on host:port."""

    def __init__(self, port: int, env: Mapping[str, str], log_dir: Path,
                 instance_id: str | None = None, host: str = HOST):
        self.instance_id = instance_id or f"replica-{port}"
        argv = [venv_script("realtime"), "serve", "--host", host, "--port", str(port)]
        env = {**env, "REALTIME_INSTANCE_ID": self.instance_id}
        super().__init__(self.instance_id, argv, Path(log_dir) / f"{self.instance_id}.log",
                         host, port, env=env, cwd=ROOT)


class WebhookReceiver(HealthCheckedServer):
    """The webhook testing service (webhook/app.py) on host:port."""

    def __init__(self, port: int, log_dir: Path, host: str = HOST, env: Mapping[str, str] | None = None):
        argv = [sys.executable, "-m", "webhook", "--host", host, "--port", str(port)]
        super().__init__(f"webhook-{port}", argv, Path(log_dir) / f"webhook-{port}.log",
                         host, port, env=env, cwd=ROOT)


def render_nginx_conf(template: str, prefix: Path, log_dir: Path, listen: str,
                      upstream_ports: Iterable[int], host: str = HOST,
                      internal_networks: Iterable[str] = INTERNAL_NETWORKS,
                      edge_limits: EdgeLimits | None = None) -> str:
    """Fill in the double-brace placeholders of nginx/local.conf.template."""
    servers = "\n".join(f"        server {host}:{port};" for port in upstream_ports)
    allow = "\n".join(f"            allow {network};" for network in internal_networks)
    # Only root may switch users; for anyone else nginx ignores the directive with a warning.
    user = f"user {getpass.getuser()} {grp.getgrgid(os.getegid()).gr_name};"
    values = {"PREFIX": str(prefix), "LOG_DIR": str(log_dir), "LISTEN": listen,
              "UPSTREAM_SERVERS": servers.lstrip(), "INTERNAL_ALLOW": allow.lstrip(),
              "SOCKET_LIMITS": edge_limits.directives() if edge_limits else "# (no edge limits)",
              "SESSION_RATE": str(edge_limits.sessions_per_second if edge_limits else 1000),
              "USER_DIRECTIVE": user if os.geteuid() == 0 else "# (not root: no user directive)"}
    for key, value in values.items():
        template = template.replace("{{" + key + "}}", value)
    if "{{" in template:
        unknown = template.split("{{")[1].split("}}")[0]
        raise ValueError(f"nginx template has an unknown placeholder: {unknown}")
    return template


class Nginx(Server):
    """nginx in front of the replicas, from nginx/local.conf.template, its files under `prefix`."""

    def __init__(self, prefix: Path, port: int, upstream_ports: Iterable[int], host: str = HOST,
                 log_dir: Path | None = None, template: Path = TEMPLATE,
                 internal_networks: Iterable[str] = INTERNAL_NETWORKS, edge_limits: EdgeLimits | None = None):
        self.upstream_ports = list(upstream_ports)
        self.internal_networks = list(internal_networks)
        self.edge_limits = edge_limits
        self.prefix, self.template = Path(prefix).resolve(), Path(template)
        self.log_dir = Path(log_dir or self.prefix).resolve()
        self.conf_path = self.prefix / "nginx.conf"
        # -e: the compiled-in error log (/var/log/nginx) is opened before the config is read.
        argv = [find_executable("nginx"), "-p", f"{self.prefix}/",
                "-e", str(self.log_dir / "nginx-error.log"), "-c", str(self.conf_path),
                "-g", "daemon off;"]
        super().__init__(f"nginx-{port}", argv, self.log_dir / f"nginx-{port}.log", host, port)

    def start(self, wait: bool = True, timeout: float = 30.0) -> "Nginx":
        """Write nginx.conf under the prefix, then launch nginx."""
        (self.prefix / "temp").mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        conf = render_nginx_conf(self.template.read_text(), self.prefix, self.log_dir,
                                 f"{self.host}:{self.port}", self.upstream_ports, self.host,
                                 self.internal_networks, self.edge_limits)
        self.conf_path.write_text(conf)
        return super().start(wait, timeout)


def start_all(processes: Iterable[Process], timeout: float = 60.0) -> None:
    """Launch every process, then wait for each, so slow boots overlap."""
    processes = list(processes)
    for process in processes:
        process.start(wait=False)
    for process in processes:
        process.wait_ready(timeout)


def stop_all(processes: Iterable[Process], timeout: float = STOP_TIMEOUT) -> None:
    """SIGTERM every process, wait for all, then SIGKILL what is left (graceful stops overlap)."""
    processes = list(processes)
    for process in processes:
        process.signal(signal.SIGTERM)
    wait_until(lambda: not any(p.running() for p in processes), timeout, 0.05)
    for process in processes:
        process.kill()


def clean_environ(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment without REALTIME_* settings, so a developer's shell cannot leak in."""
    environ = os.environ if environ is None else environ
    return {k: v for k, v in environ.items() if not k.startswith("REALTIME_")}


# ---------------------------------------------------------------------------------------------
# `realtime cluster start|stop|status`


@dataclass
class ClusterConfig:
    """Where the dev cluster listens and keeps its state (from CLUSTER_* environment)."""

    state_dir: Path
    http_port: int
    replica_ports: list[int]
    redis_port: int
    webhook_port: int
    external_redis_url: str | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "ClusterConfig":
        """Read CLUSTER_* and REDIS_URL, with the documented defaults."""
        env = os.environ if environ is None else environ
        ports = env.get("CLUSTER_REPLICA_PORTS", "8001,8002,8003")
        return cls(state_dir=Path(env.get("CLUSTER_STATE_DIR", ROOT / "run" / "cluster")).resolve(),
                   http_port=int(env.get("CLUSTER_HTTP_PORT", "8080")),
                   replica_ports=[int(p) for p in ports.split(",") if p.strip()],
                   redis_port=int(env.get("CLUSTER_REDIS_PORT", "6390")),
                   webhook_port=int(env.get("CLUSTER_WEBHOOK_PORT", "8090")),
                   external_redis_url=env.get("REDIS_URL") or None)

    @property
    def state_file(self) -> Path:
        """The process list of the running cluster."""
        return self.state_dir / "cluster.json"

    @property
    def log_dir(self) -> Path:
        """Every process's log file (kept after `stop`)."""
        return self.state_dir / "logs"

    @property
    def redis_url(self) -> str:
        """The Redis the replicas share: REDIS_URL if set, else the cluster's own."""
        return self.external_redis_url or f"redis://{HOST}:{self.redis_port}/0"

    def ports(self) -> list[int]:
        """Every port the cluster will listen on."""
        own_redis = [] if self.external_redis_url else [self.redis_port]
        return [self.http_port, *self.replica_ports, self.webhook_port, *own_redis]


def state_secret(config: ClusterConfig, name: str) -> str:
    """A secret created once and kept in the state dir (every process of the cluster shares it)."""
    path = config.state_dir / name
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def jwt_secret(config: ClusterConfig) -> str:
    """The cluster's JWT secret (replicas must share it)."""
    return state_secret(config, "jwt_secret")


def cluster_plan(config: ClusterConfig) -> list[list[Process]]:
    """The processes to start, in waves that may boot together."""
    from .services.apikeys import hash_key
    webhook_secret, api_key = state_secret(config, "webhook_secret"), state_secret(config, "api_key")
    env = {**os.environ, "REALTIME_REDIS_URL": config.redis_url,
           "REALTIME_JWT_SECRET_KEY": jwt_secret(config), "REALTIME_DEMO_LOGIN": "1",
           # The dashboard's demo admin: this cluster listens on 127.0.0.1 only (a dev tool).
           "REALTIME_DEMO_ADMINS": "admin", "REALTIME_DEMO_ADMINS_UNSAFE": "acknowledged",
           "REALTIME_PROXY_COUNT": "1", "REALTIME_API_KEYS": f"webhook-tester:{hash_key(api_key)}",
           "REALTIME_WEBHOOK_URLS": f"http://{HOST}:{config.webhook_port}/webhook",
           "REALTIME_WEBHOOK_SECRET": webhook_secret}
    replicas = [Replica(port, env, config.log_dir, instance_id=f"replica-{n}")
                for n, port in enumerate(config.replica_ports, start=1)]
    waves: list[list[Process]] = [] if config.external_redis_url else [
        [RedisServer(config.redis_port, config.state_dir / "redis", log_dir=config.log_dir)]]
    # `make cluster` is what an operator tries first: it has nginx.conf's edge limits.
    nginx = Nginx(config.state_dir / "nginx", config.http_port, config.replica_ports,
                  log_dir=config.log_dir, edge_limits=EdgeLimits())
    tester_env = {**os.environ, "WEBHOOK_SECRET": webhook_secret, "WEBHOOK_REDIS_URL": config.redis_url,
                  "WEBHOOK_REALTIME_URL": f"http://{HOST}:{config.http_port}",
                  "WEBHOOK_REALTIME_API_KEY": api_key,
                  "WEBHOOK_UI_TOKEN": state_secret(config, "webhook_ui_token")}
    tester = WebhookReceiver(config.webhook_port, config.log_dir, env=tester_env)
    return waves + [replicas + [tester], [nginx]]


def load_records(config: ClusterConfig) -> list[dict]:
    """What a previous `start` recorded about its processes (nothing if there is no state)."""
    try:
        return json.loads(config.state_file.read_text())["processes"]
    except (OSError, ValueError, KeyError):
        return []


def load_processes(config: ClusterConfig) -> list[Process]:
    """Handles on the processes a previous `start` recorded."""
    return [Process.from_record(record) for record in load_records(config)]


def save_processes(config: ClusterConfig, processes: list[Process]) -> None:
    """Record the started processes atomically, so `stop` works even if `start` was interrupted."""
    tmp = config.state_file.with_suffix(".tmp")
    tmp.write_text(json.dumps({"processes": [p.record() for p in processes]}, indent=2))
    tmp.replace(config.state_file)


def remove_state(config: ClusterConfig) -> None:
    """Delete everything in the state dir except the logs."""
    if config.state_dir.exists():
        for path in config.state_dir.iterdir():
            if path != config.log_dir:
                shutil.rmtree(path) if path.is_dir() else path.unlink()


def stop_processes(processes: list[Process]) -> None:
    """Stop in reverse start order: everything else first, then Redis, which replicas leave last."""
    redis = [p for p in processes if p.name.startswith("redis-")]
    stop_all([p for p in reversed(processes) if p not in redis])
    stop_all(redis)


def cluster_start(config: ClusterConfig) -> int:
    """Start redis, the replicas, the webhook receiver and nginx; print the URLs."""
    if any(p.running() for p in load_processes(config)):
        print(f"the cluster is already running (state in {config.state_dir}); `realtime cluster "
              "status` shows it, `realtime cluster stop` stops it", file=sys.stderr)
        return 1
    remove_state(config)  # leftovers of a cluster whose processes all died
    busy = [port for port in config.ports() if port_in_use(port)]
    if busy:
        print(f"ports already in use: {busy} (set CLUSTER_*_PORT)", file=sys.stderr)
        return 1
    config.state_dir.mkdir(parents=True, exist_ok=True)
    started: list[Process] = []
    try:
        for wave in cluster_plan(config):
            for process in wave:
                process.start(wait=False)
                started.append(process)
                save_processes(config, started)
            for process in wave:
                process.wait_ready(60)
    except (Exception, KeyboardInterrupt) as error:  # never leave a half-started cluster
        print(f"cluster start failed: {error}\nstopping what was started", file=sys.stderr)
        stop_processes(started)
        remove_state(config)
        return 1
    warn_unready([p for p in started if isinstance(p, Replica)])
    print_urls(config)
    return 0


def warn_unready(replicas: list[Replica]) -> None:
    """Say which replicas are alive but not ready (/readyz not 200: Redis unreachable)."""
    for replica in replicas:
        if not http_ok(replica.url + "/readyz"):
            print(f"warning: {replica.name} answers /healthz but not /readyz (Redis unreachable?)",
                  file=sys.stderr)


def print_urls(config: ClusterConfig) -> None:
    """Tell the developer where everything is."""
    lines = [("demo (nginx, sticky)", f"http://{HOST}:{config.http_port}/")]
    lines += [(f"replica-{n}", f"http://{HOST}:{port}/  (/healthz, /readyz)")
              for n, port in enumerate(config.replica_ports, start=1)]
    lines += [("redis", config.redis_url + ("  (REDIS_URL)" if config.external_redis_url else "")),
              # The token in the fragment: the browser keeps it, the server never sees it in a URL.
              ("webhook", f"http://{HOST}:{config.webhook_port}/#token="
                          f"{state_secret(config, 'webhook_ui_token')}  (testing UI; deliveries: /webhook)"),
              ("state and logs", str(config.state_dir))]
    print("realtime cluster is up:")
    for label, value in lines:
        print(f"  {label:<22}{value}")
    print("stop it with `make cluster-stop` (or `realtime cluster stop`)")


def cluster_stop(config: ClusterConfig) -> int:
    """Stop exactly the processes `start` recorded, then remove the state (logs are kept)."""
    processes = load_processes(config)
    if not processes:
        print(f"no cluster state in {config.state_dir}; nothing to stop")
        return 0
    stop_processes(processes)
    left = [p for p in processes if p.running()]
    if left:
        names = ", ".join(f"{p.name} (pid {p.pid})" for p in left)
        print(f"still running: {names}", file=sys.stderr)
        return 1
    remove_state(config)
    print(f"cluster stopped ({len(processes)} processes); logs kept in {config.log_dir}")
    return 0


def cluster_status(config: ClusterConfig) -> int:
    """Show each recorded process and whether it still runs; exit 0 only if all do."""
    records = load_records(config)
    if not records:
        print(f"no cluster running (state dir {config.state_dir})")
        return 1
    running = [Process.from_record(record).running() for record in records]
    for record, up in zip(records, running):
        state = "running" if up else "STOPPED"
        print(f"  {record['name']:<16} pid {record['pid']:<8} {state:<8} {record.get('url', '')}")
    print(f"logs in {config.log_dir}")
    return 0 if all(running) else 1


def main(argv: list[str] | None = None) -> int:
    """`realtime cluster start|stop|status`."""
    parser = argparse.ArgumentParser(prog="realtime cluster", description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["start", "stop", "status"])
    args = parser.parse_args(argv)
    config = ClusterConfig.from_env()
    actions = {"start": cluster_start, "stop": cluster_stop, "status": cluster_status}
    return actions[args.action](config)


if __name__ == "__main__":
    sys.exit(main())
