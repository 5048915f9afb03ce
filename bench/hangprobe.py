"""How one replica answers while its Redis hangs: `GET /readyz` time and `send` ack time.

Starts its own redis-server and one gunicorn gevent replica on free loopback ports, joins one
client, stops Redis with SIGSTOP (alive, not answering), times a few readyz calls and sends, sends
SIGCONT, and stops both processes by their PIDs. Figures go to stdout as JSON.

    .venv/bin/python bench/hangprobe.py [--probes 3] [--sends 3] [--wait 30]
"""
from __future__ import annotations

import argparse
import json
import secrets
import signal
import sys
import tempfile
import time
from pathlib import Path

import requests
import socketio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from realtime.devcluster import RedisServer, Replica, clean_environ, free_ports  # noqa: E402


def timed(call) -> tuple[float, str]:
    """Seconds `call` took and what it gave (or the exception's name)."""
    started = time.monotonic()
    try:
        outcome = call()
    except Exception as exc:  # a client timeout is a figure, not a failure
        outcome = f"{type(exc).__name__}"
    return round(time.monotonic() - started, 2), outcome


def main() -> None:
    """Measure, print the figures, clean up."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--probes", type=int, default=3)
    parser.add_argument("--sends", type=int, default=3)
    parser.add_argument("--wait", type=float, default=30.0, help="client timeout of each call, seconds")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="hangprobe-"))
    redis_port, port = free_ports(2)
    redis = RedisServer(redis_port, workdir / "redis", log_dir=workdir)
    env = {**clean_environ(), "REALTIME_ENV_FILE": str(workdir / "no.env"), "REALTIME_REDIS_URL": redis.url,
           "REALTIME_JWT_SECRET_KEY": secrets.token_urlsafe(32), "REALTIME_DEMO_LOGIN": "1",
           "REALTIME_UPLOAD_DIR": str(workdir / "uploads")}
    replica = Replica(port, env, workdir, instance_id="hang-0")
    figures: dict = {}
    client = socketio.Client(reconnection=False)
    try:
        redis.start()
        replica.start()
        token = requests.post(replica.url + "/api/auth/token", json={"username": "probe"},
                              timeout=10).json()["access_token"]
        client.connect(replica.url, namespaces=["/chat"], auth={"token": token}, transports=["websocket"])
        assert client.call("join", {"room": "hang"}, namespace="/chat", timeout=10)["ok"]
        redis.signal(signal.SIGSTOP)
        try:
            figures["readyz"] = [timed(lambda: requests.get(replica.url + "/readyz", timeout=args.wait).status_code)
                                 for _ in range(args.probes)]
            figures["send"] = [
                timed(lambda n=n: json.dumps(client.call(
                    "send", {"room": "hang", "type": "text", "body": f"hang {n}", "client_id": f"hang-{n}"},
                    namespace="/chat", timeout=args.wait).get("error")))
                for n in range(args.sends)]
        finally:
            redis.signal(signal.SIGCONT)
        time.sleep(1)
        figures["readyz_after"] = timed(lambda: requests.get(replica.url + "/readyz", timeout=5).status_code)
        figures["send_after"] = timed(lambda: client.call(
            "send", {"room": "hang", "type": "text", "body": "after", "client_id": "hang-0"},
            namespace="/chat", timeout=10)["ok"])
    finally:
        client.disconnect()
        replica.stop()
        redis.stop()
    print(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
