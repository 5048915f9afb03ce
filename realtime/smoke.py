"""`realtime smoke URL`: the post-deployment check an operator runs against a live deployment.

One line per check, `ok`, `skip` or `FAIL` and the reason; exit 1 when a check failed. The
clients speak Engine.IO 4 long-polling over `requests` (a runtime dependency already): the smoke
then needs nothing the server does not, and polling goes through any proxy the browsers use.
"""
from __future__ import annotations

import argparse
import json
import re
import secrets
import sys
import time
from collections import deque
from typing import Any, Callable

import requests

NAMESPACE = "/chat"
STICKY_TRIES = 12  # sticky cookies tried to land the second client on another replica


class SmokeError(Exception):
    """A check failed; the message is its reason."""


class PollingClient:
    """A minimal Socket.IO client on `/chat` over Engine.IO 4 long-polling."""

    def __init__(self, base: str, sticky: str, timeout: float):
        self.base = base.rstrip("/")
        self.http = requests.Session()
        # The bundled nginx routes by this cookie (else by address): one replica per cookie.
        self.http.headers["Cookie"] = f"realtime_sticky={sticky}"
        self.timeout = timeout
        self.sid: str | None = None
        self.packets: deque = deque()
        self.acks = 0
        self.welcome: dict[str, Any] = {}

    def url(self) -> str:
        """The polling URL of this session."""
        sid = f"&sid={self.sid}" if self.sid else ""
        return f"{self.base}/socket.io/?EIO=4&transport=polling{sid}"

    def connect(self, token: str) -> dict[str, Any]:
        """Open the session, connect `/chat` with the token; the `welcome` payload."""
        answer = self.http.get(self.url(), timeout=self.timeout)
        if answer.status_code != 200 or not answer.text.startswith("0"):
            raise SmokeError(f"Engine.IO handshake answered {answer.status_code}: {answer.text[:80]!r}")
        self.sid = json.loads(answer.text[1:])["sid"]
        self.post(f"40{NAMESPACE}," + json.dumps({"token": token}))
        kind, _ack, data = self.wait(lambda p: p[0] in "04", "the namespace connect")
        if kind == "4":
            error = (data or {}).get("data") or data
            raise SmokeError(f"connect refused: {json.dumps(error)}")
        self.welcome = self.wait(lambda p: p[0] == "2" and p[2][0] == "welcome", "welcome")[2][1]
        return self.welcome

    def post(self, packet: str) -> None:
        """Send one Engine.IO packet."""
        answer = self.http.post(self.url(), data=packet.encode(), timeout=self.timeout,
                                headers={"Content-Type": "text/plain;charset=UTF-8"})
        if answer.status_code != 200:
            raise SmokeError(f"POST answered {answer.status_code}: {answer.text[:80]!r}")

    def poll(self, timeout: float) -> None:
        """One long-poll: keep the Socket.IO packets of `/chat`, answer pings."""
        answer = self.http.get(self.url(), timeout=max(timeout, 1.0))
        if answer.status_code != 200:
            raise SmokeError(f"poll answered {answer.status_code}: {answer.text[:80]!r}")
        for packet in answer.text.split("\x1e"):
            if packet == "2":
                self.post("3")
            elif packet.startswith("1"):
                raise SmokeError("the server closed the session")
            elif packet.startswith("4"):
                parsed = parse(packet[1:])
                if parsed is not None:
                    self.packets.append(parsed)

    def wait(self, wanted: Callable[[tuple], bool], what: str, timeout: float | None = None) -> tuple:
        """The first received packet `wanted` accepts (others stay queued), within the timeout."""
        end = time.monotonic() + (timeout or self.timeout)
        while True:
            for packet in list(self.packets):
                if wanted(packet):
                    self.packets.remove(packet)
                    return packet
            left = end - time.monotonic()
            if left <= 0:
                raise SmokeError(f"no {what} within {timeout or self.timeout:g} s")
            try:
                self.poll(left)
            except requests.Timeout:
                raise SmokeError(f"no {what} within {timeout or self.timeout:g} s") from None

    def call(self, event: str, data: dict[str, Any]) -> dict[str, Any]:
        """Emit an event and return its ack; a refused event raises with the error."""
        self.acks += 1
        number = self.acks
        self.post(f"42{NAMESPACE},{number}" + json.dumps([event, data]))
        ack = self.wait(lambda p: p[0] == "3" and p[1] == number, f"ack of {event}")[2][0]
        if not ack.get("ok"):
            raise SmokeError(f"{event} refused: {json.dumps(ack.get('error'))}")
        return ack

    def message(self, client_id: str) -> dict[str, Any]:
        """The `message` event carrying this client_id."""
        def wanted(p: tuple) -> bool:
            return p[0] == "2" and p[2][0] == "message" and p[2][1].get("client_id") == client_id
        return self.wait(wanted, f"message {client_id}")[2][1]

    def close(self) -> None:
        """Leave quietly (errors ignored: the server times the session out anyway)."""
        try:
            if self.sid:
                self.post("1")
        except (requests.RequestException, SmokeError):
            pass
        self.http.close()


def parse(packet: str) -> tuple | None:
    """A Socket.IO packet of `/chat` as (type, ack id, data); None for another namespace."""
    kind, rest = packet[:1], packet[1:]
    namespace = "/"
    if rest.startswith("/"):
        namespace, _, rest = rest.partition(",")
    if namespace != NAMESPACE:
        return None
    digits = re.match(r"\d*", rest).group()
    rest = rest[len(digits):]
    return kind, int(digits) if digits else None, json.loads(rest) if rest else None


class Report:
    """The lines printed, one per check, and whether one failed."""

    def __init__(self, out: Any = None):
        self.out = out or sys.stdout
        self.failed = False

    def line(self, status: str, check: str, detail: str) -> None:
        """Print one check's outcome."""
        self.failed |= status == "FAIL"
        print(f"{status:<4} {check}: {detail}", file=self.out, flush=True)

    def run(self, check: str, step: Callable[[], str]) -> bool:
        """Run one check: `ok` and what it found, or `FAIL` and why."""
        try:
            self.line("ok", check, step())
            return True
        except SmokeError as exc:
            self.line("FAIL", check, str(exc))
        except requests.RequestException as exc:
            self.line("FAIL", check, f"{type(exc).__name__}: {exc}")
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            self.line("FAIL", check, f"unexpected answer: {exc!r}")
        return False


def get_json(url: str, timeout: float) -> tuple[int, Any]:
    """Status and JSON body (None when the body is not JSON)."""
    answer = requests.get(url, timeout=timeout)
    try:
        return answer.status_code, answer.json()
    except ValueError:
        return answer.status_code, None


def replica_ready(url: str, timeout: float) -> str:
    """One replica's /readyz answers 200 ready."""
    status, body = get_json(url.rstrip("/") + "/readyz", timeout)
    if status != 200:
        raise SmokeError(f"/readyz answered {status} {json.dumps(body)}")
    return f"ready (store {body.get('store')})"


def balancer_health(url: str, timeout: float) -> str:
    """The load balancer reaches a replica that answers /healthz with its version."""
    status, body = get_json(url + "/healthz", timeout)
    if status != 200 or not isinstance(body, dict):
        raise SmokeError(f"/healthz answered {status}")
    return f"version {body.get('version')} on replica {body.get('instance')}"


def tokens_for(args: argparse.Namespace) -> list[str]:
    """Two tokens: --token (once or twice), else the demo login when asked for."""
    if args.token:
        return (args.token * 2)[:2]
    if not args.demo_login:
        raise SmokeError("no token: pass --token (a user token, twice for two users) or --demo-login")
    tokens = []
    for name in ("smoke-a", "smoke-b"):
        answer = requests.post(args.url + "/api/auth/token", json={"username": name}, timeout=args.timeout)
        if answer.status_code != 200:
            raise SmokeError(f"demo login answered {answer.status_code} (is REALTIME_DEMO_LOGIN on?)")
        tokens.append(answer.json()["access_token"])
    return tokens


def smoke(args: argparse.Namespace, out: Any = None) -> int:
    """Every check in order; 0 when none failed, 1 otherwise."""
    report = Report(out)
    url = args.url.rstrip("/")
    args.url = url
    for replica in args.replica:
        report.run(f"replica {replica} /readyz", lambda r=replica: replica_ready(r, args.timeout))
    report.run("load balancer /healthz", lambda: balancer_health(url, args.timeout))
    try:
        status, _body = get_json(url + "/readyz", args.timeout)
        if status == 403:
            report.line("skip", "load balancer /readyz", "403: the load balancer answers /readyz to internal "
                        "addresses only; check each replica with --replica")
        elif status == 200:
            report.line("ok", "load balancer /readyz", "ready")
        else:
            report.line("FAIL", "load balancer /readyz", f"answered {status}")
    except requests.RequestException as exc:
        report.line("FAIL", "load balancer /readyz", f"{type(exc).__name__}: {exc}")
    tokens: list[str] = []
    if report.run("tokens", lambda: f"{len(set(tokens_for_into(args, tokens)))} distinct token(s)"):
        clients: list[PollingClient] = []
        try:
            messaging(args, report, tokens, clients)
        finally:
            for client in clients:
                client.close()
    return 1 if report.failed else 0


def tokens_for_into(args: argparse.Namespace, tokens: list[str]) -> list[str]:
    """tokens_for, kept in `tokens` for the next checks."""
    tokens.extend(tokens_for(args))
    return tokens


def messaging(args: argparse.Namespace, report: Report, tokens: list[str], clients: list) -> None:
    """Two clients on two replicas: join, a message across, the server API, recovery by `since`."""
    def open_client(token: str, sticky: str) -> PollingClient:
        client = PollingClient(args.url, sticky, args.timeout)
        clients.append(client)
        client.connect(token)
        return client

    first: list[PollingClient] = []
    if not report.run("client A connects", lambda: welcomed(first, open_client(tokens[0], secrets.token_hex(8)))):
        return
    a = first[0]
    second: list[PollingClient] = []

    def spread() -> str:
        for _ in range(STICKY_TRIES):
            client = open_client(tokens[1], secrets.token_hex(8))
            if client.welcome["instance"] != a.welcome["instance"] or len(args.replica) < 2:
                second.append(client)
                break
            client.close()
        else:
            raise SmokeError(f"{STICKY_TRIES} sticky cookies all landed on {a.welcome['instance']}: "
                             "is only one replica behind the load balancer?")
        return welcomed([], second[0])

    if not report.run("client B connects (another replica)", spread):
        return
    b = second[0]
    room = args.room
    if not report.run(f"both join room {room}", lambda: joined(a, b, room)):
        return
    sent: dict[str, Any] = {}

    def across() -> str:
        client_id = "smoke-" + secrets.token_hex(6)
        ack = a.call("send", {"room": room, "type": "text", "body": "smoke test", "client_id": client_id})
        sent.update(ack["message"])
        got = b.message(client_id)
        return (f"message {got['id']} from {a.welcome['instance']} reached {b.welcome['instance']}")

    report.run("message across replicas", across)
    if args.api_key:
        report.run("server API message", lambda: server_api(args, a, b))
    else:
        report.line("skip", "server API message", "no --api-key")
    if sent:
        report.run("recovery join {since}", lambda: recovered(args, tokens[1], sent, open_client))


def welcomed(keep: list, client: PollingClient) -> str:
    """Say which replica and version welcomed the client."""
    keep.append(client)
    server = client.welcome.get("server") or {}
    return f"welcome from {client.welcome.get('instance')} (version {server.get('version')})"


def joined(a: PollingClient, b: PollingClient, room: str) -> str:
    """Both clients join the room."""
    a.call("join", {"room": room})
    b.call("join", {"room": room})
    return "joined"


def server_api(args: argparse.Namespace, a: PollingClient, b: PollingClient) -> str:
    """POST a message with the API key; both clients receive it."""
    client_id = "smoke-" + secrets.token_hex(6)
    answer = requests.post(f"{args.url}/api/rooms/{args.room}/messages", timeout=args.timeout,
                           headers={"X-API-Key": args.api_key},
                           json={"body": "smoke test (server API)", "client_id": client_id, "from": "smoke"})
    if answer.status_code != 201:
        raise SmokeError(f"POST /api/rooms/{args.room}/messages answered {answer.status_code}: {answer.text[:120]}")
    a.message(client_id)
    got = b.message(client_id)
    return f"message {got['id']} posted with the API key reached both clients"


def recovered(args: argparse.Namespace, token: str, sent: dict[str, Any], open_client: Callable) -> str:
    """A new connection joining with `since` just before the message gets it in `missed`."""
    client = open_client(token, secrets.token_hex(8))
    ack = client.call("join", {"room": args.room, "since": sent["id"] - 1, "epoch": sent.get("epoch")})
    ids = [m.get("id") for m in ack.get("missed", [])]
    if sent["id"] not in ids or ack.get("reset"):
        raise SmokeError(f"join {{since: {sent['id'] - 1}}} missed ids {ids}, reset {ack.get('reset')}")
    return f"message {sent['id']} recovered on {client.welcome.get('instance')}"


def add_parser(commands: Any) -> None:
    """The `smoke` subcommand."""
    check = commands.add_parser("smoke", help="post-deployment smoke test of a running deployment",
                                description="Checks a deployment through its load balancer URL: each "
                                "replica's /readyz (--replica), two clients on two replicas, a message "
                                "across them, the server API (--api-key), recovery with join {since}. "
                                "One line per check; exit 1 when one failed.")
    check.add_argument("url", help="the load balancer, e.g. http://127.0.0.1:8080")
    check.add_argument("--replica", action="append", default=[],
                       help="a replica's own URL for /readyz (repeatable)")
    check.add_argument("--token", action="append", default=[],
                       help="a user token (JWT) for the clients; twice for two users")
    check.add_argument("--demo-login", action="store_true",
                       help="get the tokens from POST /api/auth/token (REALTIME_DEMO_LOGIN on)")
    check.add_argument("--api-key", help="an API key (REALTIME_API_KEYS) to post through the server API")
    check.add_argument("--room", default="smoke", help="the room used (default smoke)")
    check.add_argument("--timeout", type=float, default=10.0, help="seconds per step (default 10)")
    check.set_defaults(func=smoke)
