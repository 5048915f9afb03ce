"""Where chat apps live: many small rooms, connection storms and a replica failing, for every stack.

bench/compare.py runs these after its one-room cells (same Redis, same stacks; `make bench`), with
one generator for every stack: this module's raw-websocket clients (bench/loadgen.py's WsClient),
connected by a pool of threads and then read by one selector loop. Three workloads:

- **rooms**: R rooms of 2-10 members (members spread round-robin over the 3 replicas, sharing
  `users` identities), S senders (each a member of R/S rooms, on replicas 1 and 2) sending
  round-robin over the rooms at a total rate; a saturation search on messages per second (pass:
  every acked message delivered to every member, nothing refused, p99 <= 100 ms). Server CPU per
  message.
- **storm**: N clients connect and join one room at once (`concurrency` at a time, spread over the
  replicas): connections per second, connect and join p50/p99.
- **failover**: the rooms workload at a fixed rate; the replica holding a third of the members is
  SIGKILLed; its clients reconnect at once to the others, rejoin (realtime with `join {since,
  epoch}`; node-streams with its connection-state-recovery `pid`/`offset`) and the time until
  every one of them has rejoined and holds every message acked before its rejoin is measured;
  at the end every member must hold every acked message of its room (the `lost` column).
"""
from __future__ import annotations

import json
import os
import queue
import selectors
import signal
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from loadgen import ACK, CONNECTED, EVENT, REFUSED, Closed, WsClient
from measure import pids, settle, snapshot
from realtime.devcluster import HOST
from stacks import RealtimeStack, Stack, mint_tokens

MESSAGE = EVENT + '["message",'
BODY_CHARS = 150
PASS_P99_MS = 100.0
DRAIN_TIMEOUT = 10.0
RECOVERY_TIMEOUT = 60.0
CATCH_UP_GRACE = 5.0


@dataclass(frozen=True)
class RoomsPlan:
    """The many-rooms workload and its saturation search."""

    rooms: int = 300
    senders: int = 20
    users: int = 200
    start_rate: float = 450.0
    factor: float = 1.5
    steps: int = 8
    duration: float = 6.0


@dataclass(frozen=True)
class StormPlan:
    """The connect-and-join storm."""

    clients: int = 3000
    concurrency: int = 200
    users: int = 200


@dataclass(frozen=True)
class FailoverPlan:
    """The failover storm: the rooms workload at `rate`, one replica killed after `kill_after` s."""

    rate: float = 200.0
    duration: float = 12.0
    kill_after: float = 3.0
    grace: float = CATCH_UP_GRACE  # how long a rejoined client may take to catch up


def room_size(room: int) -> int:
    """Members of room `room`: 2 to 10, cycling (6 on average)."""
    return 2 + room % 9


def room_name(room: int) -> str:
    """A valid room name for every stack."""
    return f"chat-{room:04d}"


def body(room: int, seq: int) -> str:
    """A ~150-character text: room, sequence number and send time, padded (no quotes)."""
    head = f"{room}:{seq}:{time.time():.6f}:"
    return head + "x" * max(0, BODY_CHARS - len(head))


def body_of(text: str) -> str | None:
    """The body of a `message` frame without decoding the whole frame."""
    at = text.find('"body":"')
    if at < 0:
        return None
    start = at + 8
    return text[start:text.index('"', start)]


# ---------------------------------------------------------------------------------------------
# one client


@dataclass
class Member:
    """One connection: the rooms it is in, what it received, how to recover."""

    index: int
    rooms: tuple[int, ...]
    replica: int
    token: str | None
    sends: bool = False
    client: WsClient | None = None
    got: set[int] = field(default_factory=set)
    last_id: dict[int, int] = field(default_factory=dict)   # room -> realtime message id
    epoch: dict[int, str] = field(default_factory=dict)
    pid: str | None = None                                  # Socket.IO connection state recovery
    offset: str | None = None
    connect_ms: float = 0.0
    join_ms: float = 0.0
    lost_connection_at: float | None = None
    rejoined_at: float | None = None
    recovered_at: float | None = None


def open_client(member: Member, port: int, stack_name: str, since: bool = False) -> list[str]:
    """Connect, open /chat, join every room of the member (with recovery data when `since`);
    the `message` frames that arrived meanwhile (recovered packets, `missed` of join acks)."""
    started = time.monotonic()
    client = WsClient(HOST, port)
    client.wait_for("0{")
    auth: dict[str, Any] = {"token": member.token} if member.token else {}
    if since and member.pid and member.offset:
        auth.update(pid=member.pid, offset=member.offset)
    client.send(CONNECTED + json.dumps(auth))
    early: list[str] = []
    backlog: list[str] = []
    while True:
        reply = next_packet(client, early, backlog)
        if reply.startswith((CONNECTED, REFUSED)):
            break
    if reply.startswith(REFUSED):
        raise ConnectionError(f"connection refused: {reply[len(REFUSED):]}")
    answer = json.loads(reply[len(CONNECTED):] or "{}")
    member.pid = answer.get("pid", member.pid)
    member.connect_ms = (time.monotonic() - started) * 1000
    joined = time.monotonic()
    for n, room in enumerate(member.rooms, start=1):
        payload: dict[str, Any] = {"room": room_name(room)}
        if since and stack_name == "realtime":
            # Nothing seen yet in the room: since 0 asks for all of it (at most the recovery bound).
            payload["since"] = member.last_id.get(room, 0)
            if room in member.epoch:
                payload["epoch"] = member.epoch[room]
        client.send(EVENT + str(n) + json.dumps(["join", payload]))
        prefix = f"{ACK}{n}["
        while not (text := next_packet(client, early, backlog)).startswith(prefix):
            pass
        ack = json.loads(text[len(prefix) - 1:])[0]
        if not isinstance(ack, dict) or not ack.get("ok"):
            raise ConnectionError(f"join refused: {ack}")
        for message in ack.get("missed") or []:
            early.append(MESSAGE + json.dumps(message, separators=(",", ":")) + "]")
    member.join_ms = (time.monotonic() - joined) * 1000
    early.extend(text for text in backlog if text.startswith(MESSAGE))
    member.client = client
    return early


def next_packet(client: WsClient, early: list[str], backlog: list[str]) -> str:
    """The next packet that is not a `message` (those go to `early`); the rest of a read batch
    waits in `backlog` (realtime sends `welcome` before the namespace's connect answer)."""
    while True:
        while backlog:
            text = backlog.pop(0)
            if text.startswith(MESSAGE):
                early.append(text)
            else:
                return text
        backlog.extend(client.packets())
        if not backlog:
            client.fill()


# ---------------------------------------------------------------------------------------------
# the rooms topology


def make_members(stack: Stack, plan: RoomsPlan, replicas: int) -> list[Member]:
    """Room members (one room each, round-robin over the replicas) and the senders."""
    count = sum(room_size(r) for r in range(plan.rooms))
    is_realtime = isinstance(stack, RealtimeStack)
    tokens = mint_tokens(stack.secret, "user", count + plan.senders, plan.users) if is_realtime else None
    members, n = [], 0
    for room in range(plan.rooms):
        for _ in range(room_size(room)):
            members.append(Member(n, (room,), n % replicas, tokens[n] if tokens else None))
            n += 1
    for s in range(plan.senders):
        rooms = tuple(range(s, plan.rooms, plan.senders))
        # Senders stay off replica 0 (the failover kills it): their acks define what must arrive.
        members.append(Member(n, rooms, 1 + s % (replicas - 1), tokens[n] if tokens else None,
                              sends=True))
        n += 1
    return members


def connect_all(stack: Stack, members: list[Member], concurrency: int) -> tuple[float, list[str]]:
    """Connect and join every member, `concurrency` at a time; (seconds, errors)."""
    errors: list[str] = []
    started = time.monotonic()

    def one(member: Member) -> None:
        try:
            open_client(member, stack.replicas[member.replica].port, stack.name)
        except (OSError, ConnectionError, ValueError) as error:
            errors.append(f"{type(error).__name__}: {error}")

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, members))
    return time.monotonic() - started, errors


class Drive:
    """Send at a fixed rate round-robin over the rooms; count deliveries, acks and latency."""

    def __init__(self, stack_name: str, members: list[Member], rooms: int, track: bool = False):
        self.stack_name, self.members, self.track = stack_name, members, track
        self.senders = {room: m for m in members if m.sends for room in m.rooms}
        self.rooms = rooms
        self.selector = selectors.DefaultSelector()
        for member in members:
            if member.client:
                member.client.sock.setblocking(False)
                self.selector.register(member.client.sock, selectors.EVENT_READ, member)
        self.acked: dict[int, set[int]] = {r: set() for r in range(rooms)}
        self.ack_time: dict[int, float] = {}
        self.pending: dict[tuple[int, int], tuple[int, int]] = {}  # (member, ack id) -> (room, key)
        self.latencies: list[float] = []
        self.frames = self.duplicates = self.refused = self.sent = 0
        self.returned: queue.Queue = queue.Queue()  # members reconnected by another thread
        self.recovering: set[int] = set()  # returned members not caught up yet (by index)
        self.drain_timeout = DRAIN_TIMEOUT
        # client_id is an idempotency key: a Redis kept from an earlier run must not see repeats.
        self.token = os.urandom(4).hex()

    def run(self, rate: float, duration: float, during: Any = None) -> dict[str, Any]:
        """One measured window (and `during(drive, elapsed)` called as it runs); the figures."""
        self.latencies, self.frames, self.duplicates, self.refused = [], 0, 0, 0
        first_key = self.sent
        start = time.monotonic()
        for k in range(int(rate * duration)):
            due = start + k / rate
            while (wait := due - time.monotonic()) > 0:
                self.pump(min(wait, 0.05))
                if during:
                    during(self, time.monotonic() - start)
            self.send(k % self.rooms)
        deadline = time.monotonic() + self.drain_timeout
        while (self.pending or self.missing(first_key)) and time.monotonic() < deadline:
            self.pump(0.05)
            if during:
                during(self, time.monotonic() - start)
        return self.figures(first_key)

    def send(self, room: int) -> None:
        """One `send` to `room` from its sender, with an ack id."""
        sender = self.senders[room]
        if sender.client is None:
            return
        self.sent += 1
        key = room * 10_000_000 + self.sent
        self.pending[(sender.index, self.sent)] = (room, key)
        payload = {"room": room_name(room), "type": "text", "body": body(room, self.sent),
                   "client_id": f"bench-{self.token}-{self.sent}"}
        try:
            sender.client.send(f"{EVENT}{self.sent}" + json.dumps(["send", payload], separators=(",", ":")))
        except OSError:
            self.pending.pop((sender.index, self.sent), None)

    def pump(self, timeout: float) -> None:
        """Read what arrived within `timeout` seconds."""
        while not self.returned.empty():
            member, early = self.returned.get()
            member.client.sock.setblocking(False)
            self.selector.register(member.client.sock, selectors.EVENT_READ, member)
            now = time.time()
            for text in early:
                self.delivered(member, text, now)
            self.recovering.add(member.index)
        for index in list(self.recovering):
            self.check_recovered(self.members[index])
        for key, _ in self.selector.select(max(0.0, timeout)):
            member = key.data
            try:
                member.client.fill()
                texts = member.client.packets()
            except BlockingIOError:
                continue
            except (Closed, OSError):
                self.lost_connection(member)
                continue
            now = time.time()
            for text in texts:
                if text.startswith(MESSAGE):
                    self.delivered(member, text, now)
                elif text.startswith(ACK):
                    self.ack(member, text)

    def lost_connection(self, member: Member) -> None:
        """The member's replica went away: unregister it (the failover reconnects it)."""
        self.selector.unregister(member.client.sock)
        member.client.close()
        member.client = None
        member.lost_connection_at = time.monotonic()

    def delivered(self, member: Member, text: str, now: float) -> None:
        """A `message` frame: count it, once per member and message."""
        text_body = body_of(text)
        if text_body is None:
            return
        room, seq, sent, _ = text_body.split(":", 3)
        room, seq = int(room), int(seq)
        self.frames += 1
        if self.track:
            self.track_position(member, room, text)
        key = room * 10_000_000 + seq
        if key in member.got:
            self.duplicates += 1
            return
        member.got.add(key)
        self.latencies.append((now - float(sent)) * 1000)

    def track_position(self, member: Member, room: int, text: str) -> None:
        """Where the member is in the room's history (realtime ids, Socket.IO offsets)."""
        frame = json.loads(text[len(EVENT):])
        message = frame[1]
        if isinstance(message.get("id"), int):
            member.last_id[room] = max(member.last_id.get(room, 0), message["id"])
            if message.get("epoch"):
                member.epoch[room] = message["epoch"]
        if len(frame) > 2 and isinstance(frame[-1], str):
            member.offset = frame[-1]

    def ack(self, member: Member, text: str) -> None:
        """A `send` ack: the message counts as expected for every member of its room."""
        digits = text[len(ACK):text.index("[")]
        entry = self.pending.pop((member.index, int(digits)), None)
        if entry is None:
            return
        if '"ok":true' in text[:200].replace(" ", ""):
            self.acked[entry[0]].add(entry[1])
            self.ack_time[entry[1]] = time.monotonic()
        else:
            self.refused += 1

    def check_recovered(self, member: Member) -> None:
        """After a rejoin: recovered if it holds every message of its room acked before it."""
        room = member.rooms[0]
        if self.acked[room] <= member.got:
            member.recovered_at = time.monotonic()
            self.recovering.discard(member.index)

    def missing(self, first_key: int = 0) -> int:
        """Expected deliveries (of messages sent since `first_key`) not received yet."""
        return sum(len({k for k in self.acked[r] if k % 10_000_000 > first_key} - m.got)
                   for m in self.members for r in m.rooms if not m.sends)

    def figures(self, first_key: int) -> dict[str, Any]:
        """Deliveries, loss, duplicates, latency percentiles of the window."""
        ordered = sorted(self.latencies)
        pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")
        acked = sum(1 for r in self.acked.values() for k in r if k % 10_000_000 > first_key)
        return {"sent": self.sent - first_key, "acked": acked, "refused": self.refused,
                "unacked": len(self.pending), "lost": self.missing(first_key),
                "duplicates": self.duplicates, "frames": self.frames, "p50_ms": pick(0.5),
                "p99_ms": pick(0.99), "max_ms": ordered[-1] if ordered else float("nan")}

    def close(self) -> None:
        """Close every connection."""
        for member in self.members:
            if member.client:
                member.client.close()


# ---------------------------------------------------------------------------------------------
# the three workloads, each on a started stack


def server_pids(stack: Stack) -> list[int]:
    """The replicas' processes."""
    return pids(stack.replicas)


def rooms_search(stack: Stack, redis_pid: int, plan: RoomsPlan) -> dict[str, Any]:
    """Connect the rooms, then raise the rate until a step fails; every step's row."""
    members = make_members(stack, plan, len(stack.replicas))
    seconds, errors = connect_all(stack, members, 50)
    if errors:
        raise ConnectionError(f"{stack.name}: {len(errors)} rooms clients failed: {errors[:3]}")
    drive = Drive(stack.name, members, plan.rooms)
    steps, rate = [], plan.start_rate
    try:
        for _ in range(plan.steps):
            settle(server_pids(stack) + [redis_pid])
            groups = {"server": server_pids(stack), "redis": [redis_pid], "generator": [os.getpid()]}
            before = snapshot(groups)
            result = drive.run(rate, plan.duration)
            after = snapshot(groups)
            wall = after["wall"] - before["wall"]
            cpu = {k: after[k] - before[k] for k in ("server", "redis", "generator", "machine")}
            ours = cpu["server"] + cpu["redis"] + cpu["generator"]
            row = {"rate": rate, **result, "msg_per_s": result["acked"] / plan.duration,
                   "server_us_per_msg": cpu["server"] / max(1, result["acked"]) * 1e6,
                   "redis_us_per_msg": cpu["redis"] / max(1, result["acked"]) * 1e6,
                   "generator_cpu_pct": cpu["generator"] / wall * 100,
                   "other_cpu_pct": max(0.0, cpu["machine"] - ours) / wall * 100}
            row["passed"] = (not row["lost"] and not row["refused"] and not row["unacked"]
                             and row["p99_ms"] <= PASS_P99_MS)
            steps.append(row)
            progress(stack.name, "rooms", row)
            if not row["passed"]:
                break
            rate = round(rate * plan.factor, 1)
    finally:
        drive.close()
    passing = [s for s in steps if s["passed"]]
    best = passing[-1] if passing else None
    return {"stack": stack.name, "clients": len(members), "rooms": plan.rooms, "connect_s": seconds,
            "highest_msg_per_s": best["rate"] if best else 0.0,
            "server_us_per_msg": best["server_us_per_msg"] if best else steps[0]["server_us_per_msg"],
            "redis_us_per_msg": best["redis_us_per_msg"] if best else steps[0]["redis_us_per_msg"],
            "p99_ms": best["p99_ms"] if best else steps[0]["p99_ms"],
            "failed_at": None if steps[-1]["passed"] else steps[-1]["rate"],
            "failed_because": None if steps[-1]["passed"] else failure(steps[-1]), "steps": steps}


def failure(row: dict) -> str:
    """Why a step failed, in a few words."""
    if row["lost"] or row["unacked"] or row["refused"]:
        return f"lost {row['lost']}, unacked {row['unacked']}, refused {row['refused']}"
    return f"p99 {row['p99_ms']:.0f} ms"


def storm(stack: Stack, plan: StormPlan) -> dict[str, Any]:
    """`clients` clients connecting and joining one room at once; rate and latencies."""
    is_realtime = isinstance(stack, RealtimeStack)
    tokens = mint_tokens(stack.secret, "storm", plan.clients, plan.users) if is_realtime else None
    members = [Member(n, (9999,), n % len(stack.replicas), tokens[n] if tokens else None)
               for n in range(plan.clients)]
    groups = {"server": server_pids(stack), "generator": [os.getpid()]}
    before = snapshot(groups)
    seconds, errors = connect_all(stack, members, plan.concurrency)
    after = snapshot(groups)
    for member in members:
        if member.client:
            member.client.close()
    connected = [m for m in members if m.client]
    pick = lambda values, q: sorted(values)[min(len(values) - 1, int(q * len(values)))] if values else float("nan")
    total = [m.connect_ms + m.join_ms for m in connected]
    row = {"stack": stack.name, "clients": plan.clients, "concurrency": plan.concurrency,
           "failed": len(errors), "errors": errors[:3], "seconds": seconds,
           "conn_per_s": len(connected) / seconds,
           "connect_p50_ms": pick([m.connect_ms for m in connected], 0.5),
           "connect_p99_ms": pick([m.connect_ms for m in connected], 0.99),
           "join_p50_ms": pick([m.join_ms for m in connected], 0.5),
           "join_p99_ms": pick([m.join_ms for m in connected], 0.99),
           "total_p99_ms": pick(total, 0.99),
           "server_ms_per_conn": (after["server"] - before["server"]) / max(1, len(connected)) * 1000,
           "generator_cpu_pct": (after["generator"] - before["generator"]) / seconds * 100}
    progress(stack.name, "storm", row)
    return row


def failover(stack: Stack, redis_pid: int, rooms: RoomsPlan, plan: FailoverPlan) -> dict[str, Any]:
    """Kill replica 0 under load; how long until its clients are back, rejoined and caught up."""
    members = make_members(stack, rooms, len(stack.replicas))
    _, errors = connect_all(stack, members, 50)
    if errors:
        raise ConnectionError(f"{stack.name}: {len(errors)} failover clients failed: {errors[:3]}")
    drive = Drive(stack.name, members, rooms.rooms, track=True)
    drive.drain_timeout = 2.0  # the catch-up wait below takes over
    victim = stack.replicas[0]
    state: dict[str, Any] = {"killed_at": None}
    pool = ThreadPoolExecutor(200)

    def reconnect(member: Member) -> None:
        """Back on another replica at once, rejoined with what it knows; retried until it works."""
        for attempt in range(50):
            port = stack.replicas[1 + (member.index + attempt) % (len(stack.replicas) - 1)].port
            try:
                early = open_client(member, port, stack.name, since=True)
            except (OSError, ConnectionError, ValueError):
                time.sleep(0.1)
                continue
            member.rejoined_at = time.monotonic()
            drive.returned.put((member, early))
            return

    def during(drive: Drive, elapsed: float) -> None:
        if state["killed_at"] is None and elapsed >= plan.kill_after:
            state["killed_at"] = time.monotonic()
            victim.signal(signal.SIGKILL)  # its whole process group, like a crash
        for member in members:
            if member.lost_connection_at is not None and not getattr(member, "reconnecting", False):
                member.reconnecting = True
                pool.submit(reconnect, member)

    try:
        result = drive.run(plan.rate, plan.duration, during)
        victims = [m for m in members if m.replica == 0]
        # Until every victim caught up, or CATCH_UP_GRACE after the last one rejoined (a stack
        # without recovery never delivers what was sent while a client was away).
        deadline = time.monotonic() + RECOVERY_TIMEOUT
        while any(m.recovered_at is None for m in victims) and time.monotonic() < deadline:
            drive.pump(0.05)
            during(drive, plan.duration)
            if all(m.rejoined_at for m in victims):
                deadline = min(deadline, max(m.rejoined_at for m in victims) + plan.grace)
        result = drive.figures(0)
        for m in [m for m in victims if m.recovered_at is None][:3]:  # a sample, for the log
            if m.recovered_at is None:
                room = m.rooms[0]
                print(f"  failover {stack.name}: member {m.index} room {room} not caught up: "
                      f"connected={m.client is not None} lost_at={m.lost_connection_at} "
                      f"missing={sorted(drive.acked[room] - m.got)[:5]} last_id={m.last_id}",
                      file=__import__("sys").stderr, flush=True)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)
        drive.close()
    killed = state["killed_at"]
    recovered = [m.recovered_at for m in victims if m.recovered_at is not None]
    rejoined = [m.rejoined_at for m in victims if m.rejoined_at is not None]
    row = {"stack": stack.name, "clients": len(members), "victims": len(victims),
           "rejoined": len(rejoined), "recovered": len(recovered), "lost": result["lost"],
           "acked": result["acked"],
           "rejoined_s": (max(rejoined) - killed) if rejoined and len(rejoined) == len(victims) else float("nan"),
           "duplicates": result["duplicates"],
           "recovery_s": (max(recovered) - killed) if recovered and len(recovered) == len(victims) else float("nan"),
           "recovery_p50_s": statistics.median(r - killed for r in recovered) if recovered else float("nan")}
    progress(stack.name, "failover", row)
    return row


def progress(name: str, what: str, row: dict) -> None:
    """One line per step on stderr."""
    import sys
    shown = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()
             if k not in ("steps", "errors")}
    print(f"  {what} {name}: {json.dumps(shown)}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# the plan bench/compare.py runs, and its tables


@dataclass(frozen=True)
class ChatPlan:
    """The three workloads, per stack, `repetitions` times (stack order alternating)."""

    rooms: RoomsPlan
    storm: StormPlan
    failover: FailoverPlan
    repetitions: int = 2
    stacks: tuple[str, ...] = ("realtime", "plain", "node", "node-streams")
    workloads: tuple[str, ...] = ("rooms", "storm", "failover")


CHAT_FULL = ChatPlan(RoomsPlan(), StormPlan(), FailoverPlan())
CHAT_SMOKE = ChatPlan(RoomsPlan(rooms=12, senders=3, users=10, start_rate=20, steps=1, duration=2),
                      StormPlan(clients=60, concurrency=20, users=10),
                      FailoverPlan(rate=20, duration=3, kill_after=1.0, grace=1.0), repetitions=1)
REFERENCES = ("plain", "node", "node-streams")


def summarize(rows: list[dict]) -> dict[str, list[dict]]:
    """Medians per workload and stack (losses and failures summed, not medianed)."""
    out: dict[str, list[dict]] = {}
    for what in ("rooms", "storm", "failover"):
        group = [r for r in rows if r["workload"] == what]
        summaries = []
        for stack in dict.fromkeys(r["stack"] for r in group):
            mine = [r for r in group if r["stack"] == stack]
            numeric = {k for k, v in mine[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)}
            summary = {"stack": stack, "runs": len(mine)}
            for key in numeric:
                values = [r[key] for r in mine if isinstance(r.get(key), (int, float))]
                if key in ("lost", "failed", "duplicates"):
                    summary[key] = sum(values)
                elif values:
                    summary[key] = statistics.median(values)
            summaries.append(summary)
        out[what] = summaries
    return out


def ratio(mine: float | None, theirs: float | None) -> str:
    """`mine / theirs` as `0.52x`, or `-`."""
    if not mine or not theirs or mine != mine or theirs != theirs:
        return "-"
    return f"{mine / theirs:.2f}x"


def render(summaries: dict[str, list[dict]]) -> str:
    """The three tables and realtime's ratios against each reference."""
    import report
    fmt = report.fmt
    parts = []
    rooms = summaries.get("rooms") or []
    if rooms:
        lines = [[s["stack"], fmt(s.get("clients"), ".0f"), fmt(s.get("rooms"), ".0f"),
                  fmt(s.get("highest_msg_per_s"), "g"), fmt(s.get("p99_ms")),
                  fmt(s.get("server_us_per_msg"), ".0f"), fmt(s.get("redis_us_per_msg"), ".0f"),
                  fmt(s.get("failed_at"), "g")] for s in rooms]
        parts.append("many small rooms (saturation: highest rate with every acked message delivered "
                     "and p99 <= 100 ms):\n\n" + report.markdown(
                         ["stack", "clients", "rooms", "highest passing msg/s", "p99 ms",
                          "server µs/msg", "redis µs/msg", "failed at"], lines, left=1))
    storms = summaries.get("storm") or []
    if storms:
        lines = [[s["stack"], fmt(s.get("clients"), ".0f"), fmt(s.get("conn_per_s"), ".0f"),
                  fmt(s.get("connect_p50_ms")), fmt(s.get("connect_p99_ms")), fmt(s.get("join_p50_ms")),
                  fmt(s.get("join_p99_ms")), fmt(s.get("server_ms_per_conn"), ".2f"),
                  fmt(s.get("failed"), ".0f")] for s in storms]
        parts.append("connect-and-join storm (one room):\n\n" + report.markdown(
            ["stack", "clients", "conn/s", "connect p50 ms", "connect p99 ms", "join p50 ms",
             "join p99 ms", "server ms/conn", "failed"], lines, left=1))
    fails = summaries.get("failover") or []
    if fails:
        lines = [[s["stack"], fmt(s.get("victims"), ".0f"), fmt(s.get("rejoined_s"), ".2f"),
                  fmt(s.get("recovered"), ".0f"),
                  fmt(s.get("recovery_p50_s"), ".2f"), fmt(s.get("recovery_s"), ".2f"),
                  f"{s.get('lost', 0)}", fmt(s.get("acked"), ".0f")] for s in fails]
        parts.append("failover storm (replica with a third of the clients SIGKILLed):\n\n" + report.markdown(
            ["stack", "clients cut off", "all rejoined s", "caught up", "catch-up p50 s",
             "all caught up s", "lost",
             "acked"], lines, left=1))
    by = {what: {s["stack"]: s for s in summaries.get(what) or []} for what in summaries}
    mine = {what: by[what].get("realtime") for what in by}
    lines = []
    for ref in REFERENCES:
        get = lambda what, key: (by.get(what, {}).get(ref) or {}).get(key)
        own = lambda what, key: (mine.get(what) or {}).get(key)
        if not any(by.get(what, {}).get(ref) for what in by):
            continue
        lines.append([ref, ratio(own("rooms", "highest_msg_per_s"), get("rooms", "highest_msg_per_s")),
                      ratio(own("rooms", "server_us_per_msg"), get("rooms", "server_us_per_msg")),
                      ratio(own("storm", "conn_per_s"), get("storm", "conn_per_s")),
                      ratio(own("storm", "join_p99_ms"), get("storm", "join_p99_ms")),
                      ratio(own("failover", "recovery_s"), get("failover", "recovery_s"))])
    if lines:
        parts.append("realtime / reference (saturation and conn/s: above 1.00x is better; CPU, p99 "
                     "and catch-up time: below):\n\n" + report.markdown(
                         ["reference", "rooms msg/s", "rooms server µs/msg", "storm conn/s",
                          "storm join p99", "failover all caught up"], lines, left=1))
    return "\n\n".join(parts)
