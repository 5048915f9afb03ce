"""A client that stops reading, next to 100 that read: their latency and the replica's memory.

Starts one embedded replica (gunicorn, loopback, free port), connects RECEIVERS normal clients
(bench/loadgen.py's raw websocket clients, one selector loop in a process of their own) and one
slow reader (a raw websocket with a small receive buffer, or a long-polling client, that joins
the room and never reads again) to one room, and sends RATE messages a second of BODY characters for SECONDS seconds.
Prints the receivers' p50/p99 delivery latency, the replica worker's peak resident memory (its
own /metrics), whether the slow reader was cut off, and the realtime_connections_refused count.

    .venv/bin/python bench/slowreader.py [--seconds 30] [--rate 50] [--body 10000]
                                         [--receivers 100] [--max-send-buffer BYTES]
                                         [--slow websocket|polling|none] [--code DIR]

`--code DIR` runs the replica from another checkout of realtime (e.g. `git archive <commit> |
tar -x -C DIR`), to measure a commit before a change with the same script.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import re
import signal
import socket
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
from loadgen import WsClient, connect_all, readable, selector_for  # noqa: E402

from realtime.devcluster import Replica, clean_environ, free_port, start_all, stop_all  # noqa: E402

ROOM = "slowbench"


def token(url: str, name: str) -> str:
    """A demo token."""
    response = requests.post(url + "/api/auth/token", json={"username": name}, timeout=10)
    response.raise_for_status()
    return response.json()["access_token"]


def metric(url: str, pattern: str) -> float | None:
    """One value of the replica's /metrics (None when absent)."""
    found = re.search(pattern, requests.get(url + "/metrics", timeout=10).text, re.M)
    return float(found.group(1)) if found else None


def receivers(port: int, tokens: list[str], seconds: float, ctl) -> None:
    """Receivers' process: join, report ready, then record latencies for `seconds` (+ 2 s)."""
    clients = connect_all("127.0.0.1", port, tokens, ROOM)
    selector = selector_for(clients)
    ctl.send("ready")
    latencies, end = [], None
    while end is None or time.monotonic() < end:
        if end is None and ctl.poll():
            ctl.recv()
            end = time.monotonic() + seconds + 2
        for _client, packets in readable(selector, 0.2):
            now = time.time()
            for text in packets:
                if text.startswith('42/chat,["message",'):
                    sent = float(json.loads(text[8:])[1]["body"].split(":", 1)[0])
                    latencies.append(now - sent)
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] if latencies else float("nan")
    ctl.send({"deliveries": len(latencies), "p50_ms": pick(0.5) * 1000, "p99_ms": pick(0.99) * 1000})
    for client in clients:
        client.close()


def slow_reader(port: int, tok: str) -> WsClient:
    """A client that joins the room, then never reads again (a 4 KiB receive buffer)."""
    client = WsClient.__new__(WsClient)
    client.sock = socket.socket()
    client.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    client.sock.settimeout(15)
    client.sock.connect(("127.0.0.1", port))
    client.buf, client.fragments = bytearray(), []
    client.upgrade("127.0.0.1", port)
    client.join({"token": tok}, ROOM)
    return client


class PollingSlowReader:
    """A long-polling client that joins the room, then never polls again."""

    def __init__(self, url: str, tok: str):
        self.http = requests.Session()
        base = url + "/socket.io/?EIO=4&transport=polling"
        sid = json.loads(self.http.get(base, timeout=10).text[1:])["sid"]
        self.url = f"{base}&sid={sid}"
        self.http.post(self.url, data="40/chat," + json.dumps({"token": tok}), timeout=10)
        self.http.get(self.url, timeout=10)
        self.http.post(self.url, data='42/chat,1["join",{"room":"%s"}]' % ROOM, timeout=10)
        assert "43/chat,1" in self.http.get(self.url, timeout=10).text

    def cut(self) -> bool:
        """Whether the server ended the session (its next poll is refused or closes it)."""
        answer = self.http.get(self.url, timeout=10)
        return answer.status_code == 400 or answer.text.endswith("1")


def run(args: argparse.Namespace) -> dict:
    """One measured run."""
    workdir = Path(tempfile.mkdtemp(prefix="slowreader-"))
    env = {**clean_environ(), "REALTIME_ENV_FILE": str(workdir / "no.env"), "REALTIME_LOG_LEVEL": "WARNING",
           "REALTIME_ACCESS_LOG": "0", "REALTIME_RATE_LIMITS": "connect=100000/minute; send=100000/minute; "
           "join=100000/minute", "REALTIME_LOGIN_RATE_LIMIT": "100000/minute",
           "REALTIME_HTTP_RATE_LIMIT": "100000/minute", "REALTIME_MESSAGE_MAX_CHARS": "50000"}
    if args.max_send_buffer:
        env["REALTIME_MAX_SEND_BUFFER"] = str(args.max_send_buffer)
    if args.code:
        env["PYTHONPATH"] = str(Path(args.code).resolve())
    replica = Replica(free_port(), env, workdir, instance_id="slowreader")
    if args.code:
        replica.cwd = Path(args.code).resolve()  # `python -m gunicorn` puts its cwd first on sys.path
    start_all([replica])
    try:
        url = replica.url
        tokens = [token(url, f"r{n}") for n in range(args.receivers)]
        parent, child = multiprocessing.Pipe()
        proc = multiprocessing.Process(target=receivers, args=(replica.port, tokens, args.seconds, child))
        proc.start()
        assert parent.recv() == "ready"
        slow = polling = None
        if args.slow == "websocket":
            slow = slow_reader(replica.port, token(url, "slow"))
        elif args.slow == "polling":
            polling = PollingSlowReader(url, token(url, "slow"))
        sender = WsClient("127.0.0.1", replica.port)
        sender.join({"token": token(url, "sender")}, ROOM)
        rss = metric(url, r"^process_resident_memory_bytes (\S+)$")
        before, peak = rss, rss
        parent.send("go")
        started, sent, last_sample = time.monotonic(), 0, 0.0
        while (elapsed := time.monotonic() - started) < args.seconds:
            due = int(elapsed * args.rate) + 1
            while sent < due:
                head = f"{time.time():.6f}:"
                sender.send('42/chat,["send",' + json.dumps({"room": ROOM, "client_id": f"m{sent}",
                            "body": head + "x" * max(0, args.body - len(head))}) + "]")
                sent += 1
            sender.sock.setblocking(False)
            try:
                while True:  # drop acks and our own copies
                    sender.fill()
                    sender.packets()
            except (BlockingIOError, socket.timeout):
                pass
            sender.sock.setblocking(True)
            if elapsed - last_sample >= 1:
                last_sample = elapsed
                peak = max(peak, metric(url, r"^process_resident_memory_bytes (\S+)$"))
            time.sleep(min(1 / args.rate, 0.01))
        result = parent.recv()
        proc.join(10)
        result.update(code=args.code or "this checkout", max_send_buffer=args.max_send_buffer or "default", sent=sent, rss_start_mb=before / 2**20, rss_peak_mb=peak / 2**20,
                      refused_slow_reader=metric(url, r'^realtime_connections_refused_total\{reason="slow_reader"\} (\S+)$'))
        result["slow"] = args.slow
        if polling is not None:
            result["slow_reader_cut"] = polling.cut()
        if slow is not None:
            slow.sock.settimeout(2)
            try:
                while slow.sock.recv(1 << 20):
                    pass
                result["slow_reader_cut"] = True
            except socket.timeout:
                result["slow_reader_cut"] = False
            except OSError:
                result["slow_reader_cut"] = True
        return result
    finally:
        stop_all([replica])


def main() -> None:
    """Parse, run once, print one JSON line."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the replica on the way out
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--body", type=int, default=10000)
    parser.add_argument("--receivers", type=int, default=100)
    parser.add_argument("--max-send-buffer", type=int, default=0)
    parser.add_argument("--slow", choices=("websocket", "polling", "none"), default="websocket")
    parser.add_argument("--code", default="")
    print(json.dumps(run(parser.parse_args())))


if __name__ == "__main__":
    main()
