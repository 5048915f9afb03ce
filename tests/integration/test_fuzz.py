"""Hostile input against running replicas: every /chat event and every HTTP endpoint.

Arbitrary JSON (hypothesis), wrong types, huge strings (under and over max_http_buffer_size), deep
nesting, binary attachments (which close the connection: docs/api.md), reserved and non-string
event names and hostile auth payloads are
thrown at the real replicas of the `cluster` fixture (3 gunicorn replicas on a real redis-server),
with and without valid auth. Then:

1. every replica is alive, kept its connections (no worker restart) and still delivers messages;
2. every socket call got a contract ack, `{"ok": true, ...}` or
   `{"ok": false, "error": {"code", "message"}}`: never a missing ack, never `internal`; every HTTP
   answer is JSON (`{"error": {"code", "message"}}` with a 4xx status for bad input), never a 5xx;
3. Redis holds only documented keys, with room names and user ids that follow the documented rules,
   and every stored message matches its type's schema;
4. the replicas' logs hold no traceback.

Each test collects every problem it sees and fails once, at the end, with the whole list: one run
reports every distinct bug, and hypothesis never spends the time budget shrinking.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import math
import re
import sys
import threading
import time
import uuid
from typing import Any, Callable
from urllib.parse import quote

import engineio
import jwt
import pytest
import redis
import requests
import socketio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chatclient import ChatClient, wait_until
from realtime.services import validation
from realtime.settings import DEFAULTS

pytestmark = pytest.mark.integration

MAX_BUFFER = DEFAULTS["MAX_HTTP_BUFFER_SIZE"]  # 100 kB: a bigger packet drops its connection
MAX_CHARS = DEFAULTS["MESSAGE_MAX_CHARS"]
UPLOAD_MAX = DEFAULTS["UPLOAD_MAX_BYTES"]
HUGE = "x" * (MAX_BUFFER // 2) + "\u00e9\u2603\x00\U0001f600\\\"<"  # half the buffer: big, but accepted
HUGE_BYTES = b"\x00\xff" * (MAX_BUFFER // 8)
DEPTH = 500
ACK_TIMEOUT = 5.0  # an ack on loopback takes milliseconds; this long means it is not coming
SOCKET_EXAMPLES = 110
HTTP_EXAMPLES = 70
MISSING_ACKS_MAX = 3  # after this many missing acks the fuzz stops sending (each costs ACK_TIMEOUT)
FLOOD_FRAMES = 10
STARVATION_MAX = 1.5  # seconds a replica may be deaf to others while it reads big frames

EVENTS = ("join", "leave", "send", "history", "typing", "read", "conversations", "invite", "refresh")
RESERVED = ("connect", "disconnect")  # handler names of the namespace: see the dedicated test
ROOMS = ("fuzz-a", "fuzz.b_9", "private-fuzz", "dm:fuzz:zed")
ERROR_CODES_ON_CONNECT = {"auth_required", "token_invalid", "token_expired", "forbidden", "rate_limited"}

# The documented rules (docs/api.md "Conventions"), always applied to the whole string (fullmatch):
# a pattern ending in `$` used with `match` also accepts a trailing newline.
ROOM_RULE = validation.ROOM_RE
USER_ID_RULE = validation.USER_ID_RE
CLIENT_ID_RULE = validation.CLIENT_ID_RE
DM_RULE = validation.DM_RE

# Uploads (POST /api/uploads): stored under 256 random bits (52 base32 characters) .<ext>, the type
# detected from the content; <sha256>.<ext> names are legacy ones from before v1.16.
UPLOAD_EXTENSIONS = {"png": "image/png", "jpg": "image/jpeg", "gif": "image/gif", "webp": "image/webp",
                     "pdf": "application/pdf", "zip": "application/zip", "txt": "text/plain"}
UPLOAD_URL = re.compile(r"/uploads/(?:[a-z2-7]{52}|[0-9a-f]{64})\.(%s)" % "|".join(UPLOAD_EXTENSIONS))
PNG = b"\x89PNG\r\n\x1a\n" + bytes(56)


# ---------------------------------------------------------------------------------------------
# small helpers


def short(value: Any, limit: int = 240) -> str:
    """A repr short enough for a failure message."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit - 40]}...<{len(text)} chars>"


def valid_room(name: Any) -> bool:
    """A public room name, or a direct-message room `dm:<smaller id>:<larger id>`."""
    if not isinstance(name, str):
        return False
    if ROOM_RULE.fullmatch(name):
        return True
    pair = DM_RULE.fullmatch(name)
    return bool(pair) and pair.group(1) < pair.group(2)


def valid_user_id(value: Any) -> bool:
    return isinstance(value, str) and bool(USER_ID_RULE.fullmatch(value))


def valid_unicode(text: str) -> bool:
    """No lone surrogates: the string has a UTF-8 encoding (I-JSON, RFC 7493)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def nested(depth: int, leaf: Any) -> Any:
    """`depth` levels of alternating objects and arrays around `leaf`."""
    value = leaf
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def mint(secret: str, sub: str, seconds: int = 3600, **claims: Any) -> str:
    """An HS256 access token the replicas accept (`seconds` < 0: already expired)."""
    now = int(time.time())
    payload = {"sub": sub, "name": sub, "type": "access", "fresh": False, "jti": uuid.uuid4().hex,
               "iat": min(now, now + seconds), "nbf": min(now, now + seconds), "exp": now + seconds,
               **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def url_part(text: str) -> str:
    """Percent-encode any string (lone surrogates included) for a path segment or a query."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


# ---------------------------------------------------------------------------------------------
# acks


MISSING = "<no ack>"


class Pending:
    """The ack of one emitted event, when it comes."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.args: tuple = ()
        self.unsent: Exception | None = None

    def __call__(self, *args: Any) -> None:
        self.args = args
        self.done.set()

    def result(self, timeout: float) -> Any:
        if self.unsent is not None:
            return f"<not sent: {self.unsent!r}>"
        if not self.done.wait(max(0.0, timeout)):
            return MISSING
        return self.args[0] if len(self.args) == 1 else self.args


def emit(client: ChatClient, event: Any, args: tuple) -> Pending:
    """Emit `event` with `args` (one Socket.IO argument each) and an ack callback."""
    pending = Pending()
    try:
        client.sio.emit(event, tuple(args), namespace="/chat", callback=pending)
    except socketio.exceptions.SocketIOError as exc:
        pending.unsent = exc
    return pending


def ask(client: ChatClient, event: Any, *args: Any, timeout: float = ACK_TIMEOUT) -> Any:
    """The ack of one event, or MISSING."""
    return emit(client, event, args).result(timeout)


def ask_all(calls: list[tuple[ChatClient, Any, tuple]], timeout: float = ACK_TIMEOUT) -> list[Any]:
    """Emit every call at once, then collect the acks: missing ones cost one timeout in all."""
    pending = [emit(client, event, args) for client, event, args in calls]
    deadline = time.monotonic() + timeout
    return [p.result(deadline - time.monotonic()) for p in pending]


def ack_problem(ack: Any) -> str | None:
    """What is wrong with an ack, measured against the contract; None if nothing."""
    if ack is MISSING:
        return f"no ack within {ACK_TIMEOUT:.0f}s"
    if not isinstance(ack, dict) or not isinstance(ack.get("ok"), bool):
        return f"not a contract ack: {short(ack)}"
    if ack["ok"]:
        return None
    error = ack.get("error")
    if not (isinstance(error, dict) and isinstance(error.get("code"), str)
            and isinstance(error.get("message"), str)):
        return f"malformed error ack: {short(ack)}"
    retry = error.get("retry_after")
    if retry is not None and (isinstance(retry, bool) or not isinstance(retry, (int, float))):
        return f"retry_after is not a number: {short(ack)}"
    if error["code"] == "internal":
        return f"`internal` ack (an unhandled exception on the server): {short(ack)}"
    return None


def code_of(ack: Any) -> str | None:
    """The error code of a refusal ack, "ok" for a success, None for anything else."""
    if isinstance(ack, dict) and ack.get("ok") is True:
        return "ok"
    if isinstance(ack, dict) and isinstance(ack.get("error"), dict):
        return ack["error"].get("code")
    return None


def http_problem(response: requests.Response, expect: set[int] | None = None) -> str | None:
    """What is wrong with an HTTP answer: a 5xx, a non-JSON answer, a malformed error."""
    status = response.status_code
    where = f"{response.request.method} {short(response.request.url, 120)} -> {status}"
    if status >= 500:
        return f"{where}: {short(response.text)}"
    if expect is not None and status not in expect:
        return f"{where}, expected {sorted(expect)}: {short(response.text)}"
    try:
        body = response.json()
    except ValueError:
        return f"{where}: not JSON: {short(response.text)}"
    if status >= 400:
        error = body.get("error") if isinstance(body, dict) else None
        if not (isinstance(error, dict) and isinstance(error.get("code"), str)
                and isinstance(error.get("message"), str)):
            return f"{where}: not {{error: {{code, message}}}}: {short(body)}"
    elif not 200 <= status < 300:
        return f"{where}: unexpected status"
    return None


def report(problems: list[str], what: str) -> str:
    """One failure message listing each distinct problem once, with how often it was seen."""
    counts = collections.Counter(problems)
    lines = [f"{n}x {p}" if n > 1 else p for p, n in counts.items()]
    return f"{len(counts)} distinct problem(s) {what}:\n  " + "\n  ".join(lines[:60])


# ---------------------------------------------------------------------------------------------
# fixtures


@dataclasses.dataclass
class World:
    """Tokens, uploads and long-lived sentinel connections for the module."""

    cluster: Any
    fuzz: str       # user `fuzz`, with a `rooms` claim for private-fuzz (minted)
    fuzz_demo: str  # user `fuzz`, demo login
    peer: str       # user `zed`, demo login
    admin: str      # user `root` with the admin role (minted)
    expired: str
    forged: str     # signed with another key
    uploads: list[dict[str, Any]]
    sentinels: list[ChatClient]
    sentinel_sids: list[str]
    instance_ids: set[str]

    def url(self, replica: int = 0) -> str:
        return self.cluster.replicas[replica].url


@pytest.fixture(scope="module")
def world(cluster):
    """Tokens, a few uploads, seeded rooms, and one sentinel connection per replica."""
    secret = cluster.secret
    fuzz = mint(secret, "fuzz", rooms=["private-fuzz"])
    uploads = []
    for name, content in (("pixel.png", PNG), ("notes.txt", b"hello fuzz\n")):
        answer = requests.post(cluster.replicas[0].url + "/api/uploads", headers=bearer(fuzz),
                               files={"file": (name, content)}, data={"room": "fuzz-a"}, timeout=10)
        if answer.status_code == 201:  # absent (404) in a build without uploads: no templates then
            uploads.append(answer.json())
    seeder = ChatClient(cluster.replicas[0].url, fuzz).connect()
    try:
        for room in ROOMS:
            assert seeder.call("join", {"room": room})["ok"]
            assert seeder.call("send", {"room": room, "body": f"seed of {room}"})["ok"]
        for upload in uploads:
            seeder.call("send", {"room": "fuzz-a", "type": "file", "body": upload})
        seeder.call("send", {"room": "fuzz-a", "type": "location", "body": {"lat": 48.85, "lng": 2.35}})
    finally:
        seeder.close()
    sentinels = []
    try:
        for index, replica in enumerate(cluster.replicas):
            sentinel = ChatClient(replica.url, cluster.token(f"sentinel-{index}")).connect()
            sentinels.append(sentinel)
            assert sentinel.call("join", {"room": "fuzz-sentinel"})["ok"]
        yield World(cluster=cluster, fuzz=fuzz, fuzz_demo=cluster.token("fuzz"),
                    peer=cluster.token("zed"), admin=mint(secret, "root", roles=["admin"]),
                    expired=mint(secret, "fuzz", seconds=-600),
                    forged=mint("another-secret-key-of-a-sufficient-length-0123456789", "fuzz"),
                    uploads=uploads, sentinels=sentinels,
                    sentinel_sids=[s.sio.get_sid("/chat") for s in sentinels],
                    instance_ids={r.instance_id for r in cluster.replicas})
    finally:
        for sentinel in sentinels:
            sentinel.close()


@pytest.fixture
def clients(world):
    """`open(replica, token, **ChatClient options)`: connected clients, closed after the test."""
    opened: list[ChatClient] = []

    def open_client(replica: int = 0, token: str | None = None, **options: Any) -> ChatClient:
        client = ChatClient(world.url(replica), token or world.fuzz, **options)
        opened.append(client)
        return client.connect()
    yield open_client
    for client in opened:
        client.close()


@pytest.fixture
def deep_recursion():
    """python-socketio's client walks payloads recursively to find binary: 500 levels need room."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(max(previous, 20_000))
    yield
    sys.setrecursionlimit(previous)


# ---------------------------------------------------------------------------------------------
# strategies

# python-engineio parses JSON integers of at most 100 characters (longer ones make the packet
# undecodable: see test_integers_too_long_for_the_packet_parser); the fuzz stays under that.
INTS = st.one_of(st.integers(min_value=-(10**99 - 1), max_value=10**99 - 1),
                 st.sampled_from([0, 1, -1, 2**31, 2**53, 2**53 + 1, 2**63, 2**64, -(2**63)]))
FLOATS = st.one_of(st.floats(), st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324]))
HOSTILE_TEXT = ["", " ", "\t\n", "\x00", "a\x00b", "lobby\n", "lobby\x00", "\ud800", "x\udfff",
                "a" * 64, "a" * 65, "-x", ".x", "dm:fuzz:zed", "dm:zed:fuzz", "dm:fuzz:fuzz",
                "dm:fuzz:zed\n", "dm:a:b", "private-fuzz", "private-other", "{fuzz-a}",
                "rt:room:{x}:seq", "../../etc/passwd", "%00", "\u00e9", "\U0001f600", "\u202e",
                "1e3", "-1", "0x10", "NaN", "null", "[]", "<script>", "fuzz", "ZED", "zed"]
TEXTS = st.one_of(st.text(max_size=40), st.sampled_from(HOSTILE_TEXT), st.just(HUGE))
FIELD_NAMES = ["room", "since", "before", "after", "limit", "to", "type", "body", "client_id",
               "typing", "message_id", "user", "token", "username", "jti", "exp", "from",
               "lat", "lng", "accuracy", "label", "url", "name", "mime", "size"]
KEYS = st.one_of(st.sampled_from(FIELD_NAMES), st.text(max_size=10), st.sampled_from(HOSTILE_TEXT))


def json_values(binary: bool = False) -> st.SearchStrategy:
    """Any JSON value (plus bytes, which Socket.IO carries as binary attachments)."""
    leaves = [st.none(), st.booleans(), INTS, FLOATS, TEXTS]
    if binary:
        leaves.append(st.binary(max_size=64))
    return st.recursive(st.one_of(leaves),
                        lambda kids: st.lists(kids, max_size=4) | st.dictionaries(KEYS, kids, max_size=4),
                        max_leaves=12)


def location_bodies(anything: st.SearchStrategy) -> st.SearchStrategy:
    numbers = st.one_of(st.floats(-200, 200), st.integers(-200, 200), FLOATS, anything)
    return st.fixed_dictionaries({"lat": numbers, "lng": numbers},
                                 optional={"accuracy": numbers, "label": TEXTS, "altitude": anything})


def attachment_bodies(uploads: list[dict[str, Any]], anything: st.SearchStrategy) -> st.SearchStrategy:
    """Real upload bodies, as they are, with one field changed, or with one missing."""
    if not uploads:
        return st.nothing()
    template = st.sampled_from(uploads)
    changed = st.builds(lambda body, key, value: {**body, key: value}, template,
                        st.sampled_from(["url", "name", "mime", "size", "extra"]), anything)
    missing = st.builds(lambda body, key: {k: v for k, v in body.items() if k != key}, template,
                        st.sampled_from(["url", "name", "mime", "size"]))
    return st.one_of(template, changed, missing)


def event_args(world: World) -> Callable[[str], st.SearchStrategy]:
    """For an event name, the strategy of its argument tuple: shaped objects, anything, none, two."""
    anything = json_values()  # binary attachments close the connection: see test_binary_*

    def either(*plausible: st.SearchStrategy) -> st.SearchStrategy:
        return st.one_of(*plausible, anything)

    rooms = either(st.sampled_from(ROOMS + ("fuzz-sentinel", "lobby")),
                   st.from_regex(ROOM_RULE), st.sampled_from(HOSTILE_TEXT))
    ids = either(st.integers(0, 40), st.sampled_from([2**53, 2**53 + 1, -1, 1.0, True]))
    users = either(st.sampled_from(["zed", "fuzz", "sentinel-0", "root", "zed\n"]),
                   st.from_regex(USER_ID_RULE))
    bodies = either(st.text(min_size=1, max_size=50), st.just(HUGE), location_bodies(anything),
                    attachment_bodies(world.uploads, anything))
    tokens = either(st.sampled_from([world.fuzz, world.fuzz_demo, world.peer, world.admin,
                                     world.expired, world.forged, "", "x.y.z", world.fuzz + "x"]))
    fields = {
        "join": {"room": rooms, "since": ids},
        "leave": {"room": rooms},
        "send": {"room": rooms, "to": users, "type": either(st.sampled_from(["text", "image", "file",
                                                                             "location", "TEXT"])),
                 "body": bodies, "client_id": either(st.from_regex(CLIENT_ID_RULE), st.uuids().map(str))},
        "history": {"room": rooms, "before": ids, "after": ids, "limit": ids},
        "typing": {"room": rooms, "typing": either(st.booleans())},
        "read": {"room": rooms, "message_id": ids},
        "conversations": {"room": rooms},
        "invite": {"room": rooms, "user": users},
        "refresh": {"token": tokens},
    }

    def args_for(event: str) -> st.SearchStrategy:
        shaped = st.fixed_dictionaries({}, optional=fields.get(event, {"room": rooms, "body": bodies}))
        payload = st.one_of(shaped, shaped, shaped, anything)
        return st.one_of(payload.map(lambda p: (p,)), payload.map(lambda p: (p,)),
                         payload.map(lambda p: (p,)), st.just(()), st.tuples(payload, anything))
    return args_for


EVENT_NAMES = st.one_of(
    st.sampled_from(EVENTS), st.sampled_from(EVENTS), st.sampled_from(EVENTS),
    st.text(max_size=16).filter(lambda name: name not in EVENTS + RESERVED),
    st.sampled_from(["message", "welcome", "stats", "presence", "JOIN", "join ", "on_join", "_join",
                     "__init__", "trigger_event", "emit", "\x00", "\ud800", "a" * 5000]))


# ---------------------------------------------------------------------------------------------
# /chat: arbitrary payloads


def test_chat_events_answer_arbitrary_payloads_with_contract_acks(world, clients):
    """Every /chat event, and unknown ones, answer any JSON payload with a contract ack."""
    problems: list[str] = []
    state: dict[str, Any] = {"client": None, "calls": 0, "missing": 0, "last": None}
    args_for = event_args(world)

    def client() -> ChatClient:
        current = state["client"]
        if current is not None and current.sio.connected:
            if state["calls"] % 15 == 0:  # the fuzz leaves rooms too: be in them for send/typing
                ask_all([(current, "join", ({"room": room},)) for room in ROOMS])
            return current
        if current is not None:
            problems.append(f"the connection was dropped after {state['last']} (under the buffer size)")
            current.close()
        state["client"] = clients(0, world.fuzz)
        ask_all([(state["client"], "join", ({"room": room},)) for room in ROOMS])
        return state["client"]

    @settings(max_examples=SOCKET_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def run(data):
        event = data.draw(EVENT_NAMES, label="event")
        args = data.draw(args_for(event), label="args")
        if state["missing"] >= MISSING_ACKS_MAX:
            return
        connection = client()
        ack = ask(connection, event, *args)
        state["calls"] += 1
        state["last"] = f"{event!r} {short(args)}"
        problem = ack_problem(ack)
        if problem and packet_size(event, args) > MAX_BUFFER * 0.9:
            # Over max_http_buffer_size engine.io drops the connection by design: not a bug.
            state["client"] = None
            return
        if problem:
            problems.append(f"{state['last']}: {problem}")
            state["missing"] += ack is MISSING

    run()
    assert not problems, report(problems, "in acks to arbitrary payloads")


def packet_size(event: Any, args: tuple) -> int:
    """Roughly how many bytes the packet takes on the wire (binary counted as base64)."""
    def default(value: Any) -> str:
        return "x" * (len(value) * 4 // 3) if isinstance(value, (bytes, bytearray)) else str(value)
    return len(json.dumps([event, *args], default=default, ensure_ascii=False).encode("utf-8", "replace"))


def test_huge_strings_and_binary_at_every_event(world, clients):
    """200 kB strings in every field of every event, and a body just under 1 MB."""
    # Over polling, which carries the same packets to the same handlers: see
    # test_near_limit_frames_do_not_starve_the_replica for what big websocket frames cost.
    client = clients(1, world.fuzz, transports=["polling"])
    for room in ROOMS:
        ask(client, "join", {"room": room})
    fields = {"join": ["room", "since"], "leave": ["room"], "history": ["room", "before", "after", "limit"],
              "send": ["room", "to", "type", "body", "client_id"], "typing": ["room", "typing"],
              "read": ["room", "message_id"], "conversations": ["room"], "invite": ["room", "user"],
              "refresh": ["token"], "no-such-event": ["room"]}
    calls: list[tuple[str, tuple]] = []
    for event, names in fields.items():
        calls += [(event, (HUGE,))]
        calls += [(event, ({"room": "fuzz-a", "body": "hi", name: HUGE},)) for name in names]
    calls.append(("a" * (MAX_BUFFER // 2), ({"room": "fuzz-a"},)))
    problems = []
    for event, args in calls:
        if problem := ack_problem(ask(client, event, *args, timeout=10)):
            problems.append(f"{event!r} {short(args)}: {problem}")
    body = "x" * (MAX_BUFFER * 9 // 10)
    if code_of(ack := ask(client, "send", {"room": "fuzz-a", "body": body}, timeout=10)) != "body_too_long":
        problems.append(f"a text body of {len(body)} characters: {short(ack)}")
    if not client.sio.connected:
        problems.append("the connection was dropped by payloads under max_http_buffer_size")
    assert not problems, report(problems, "with huge strings")


@pytest.mark.parametrize("transport", ["polling", "websocket"])
def test_binary_attachments_close_the_connection(world, clients, transport):
    """Binary data anywhere in an event (no API event takes any) ends the connection, unprocessed."""
    problems = []
    for args in ((HUGE_BYTES,), ({"room": "fuzz-a", "body": b"\x01"},), ([HUGE_BYTES[:10]] * 3,)):
        client = clients(1, world.fuzz, transports=[transport])
        if (ack := ask(client, "send", *args, timeout=5)) is not MISSING:
            problems.append(f"{short(args)} over {transport}: acked {short(ack)}")
        if not wait_until(lambda: not client.sio.connected, timeout=5):
            problems.append(f"{short(args)} over {transport}: the connection stayed open")
    assert not problems, report(problems, "with binary attachments")


def test_deep_nesting_at_every_event(world, clients, deep_recursion):
    """500 levels of nesting, as the whole payload or in a field (binary leaves: see above)."""
    shared = clients(2, world.fuzz)
    ask(shared, "join", {"room": "fuzz-a"})
    deep = nested(DEPTH, "leaf")
    events = EVENTS + ("no-such-event",)
    calls = [(shared, event, (payload,)) for event in events
             for payload in (deep, {"room": "fuzz-a", "body": deep, "since": deep, "token": deep})]
    acks = ask_all(calls)
    problems = [f"{event!r} <{DEPTH} levels, text leaf>: {problem}"
                for (_, event, _args), ack in zip(calls, acks) if (problem := ack_problem(ack))]
    if not shared.sio.connected:
        problems.append("the connection was dropped by a deeply nested payload")
    assert not problems, report(problems, "with deep nesting")


def test_integers_too_long_for_the_packet_parser(world, clients):
    """JSON integers over 100 digits are valid JSON: they must be refused by an ack, not dropped."""
    client = clients(0, world.fuzz)
    ask(client, "join", {"room": "fuzz-a"})
    calls = [(client, "join", ({"room": "fuzz-a", "since": 10**120},)),
             (client, "read", ({"room": "fuzz-a", "message_id": -(10**100)},)),
             (client, "send", ({"room": "fuzz-a", "body": 10**150},)),
             (client, "history", ({"room": "fuzz-a", "limit": 10**101},))]
    acks = ask_all(calls, timeout=3)
    problems = [f"{event!r} {short(args)}: {problem}" for (_, event, args), ack in zip(calls, acks)
                if (problem := ack_problem(ack))]
    if code_of(ask(client, "conversations", {})) != "ok":
        problems.append("the connection stopped answering after an over-long integer")
    assert not problems, report(problems, "with integers over 100 digits")


def test_reserved_and_non_string_event_names(world, clients):
    """Event names that are not strings, or that name the connect/disconnect handlers."""
    problems: list[str] = []
    client = clients(0, world.fuzz)
    names: list[Any] = [123, 1.5, True, False, 0, None, [], ["join"], {"a": 1}, "", "on_join"]
    calls = [(client, name, ({"room": "fuzz-a"},)) for name in names]
    for (_, name, _args), ack in zip(calls, ask_all(calls, timeout=3)):
        problem = ack_problem(ack) or (None if code_of(ack) == "unknown_event" else f"answered {short(ack)}")
        if problem:
            problems.append(f"event name {name!r}: {problem}")

    # `disconnect` sent by a live client must not run the disconnect handler.
    ghost = clients(0, world.cluster.token("fuzz-ghost"))
    watcher = clients(1, world.cluster.token("fuzz-watcher"))
    assert ghost.call("join", {"room": "fuzz-ghost"})["ok"]
    ack = ask(ghost, "disconnect", {})
    if code_of(ack) != "unknown_event":
        problems.append(f"event 'disconnect' {{}}: answered {short(ack)} instead of unknown_event")
    online = [user["id"] for user in watcher.call("join", {"room": "fuzz-ghost"})["online"]]
    if "fuzz-ghost" not in online:
        problems.append("event 'disconnect' from a live connection ran the disconnect handler: the "
                        f"connection is still open but gone from presence (online: {online})")

    # `connect` sent by a live client must not authenticate it again (as anyone).
    switcher = clients(0, world.cluster.token("fuzz-switch"))
    acks = ask_all([(switcher, "connect", ()), (switcher, "connect", ({"token": world.peer},)),
                    (switcher, "connect", (None, {"token": world.peer}))], timeout=3)
    for args, ack in zip(["()", "({token},)", "(None, {token: <zed's token>})"], acks):
        if code_of(ack) != "unknown_event":
            problems.append(f"event 'connect' {args}: answered {short(ack)} instead of unknown_event")
    assert switcher.call("join", {"room": "fuzz-a"})["ok"]
    sent = switcher.call("send", {"room": "fuzz-a", "body": "who am I?"})
    sender = sent.get("message", {}).get("from", {}).get("id")
    if sender != "fuzz-switch":
        problems.append("event 'connect' (None, {token: <zed's token>}) re-authenticated a live "
                        f"connection: its next message was sent as {sender!r}, not 'fuzz-switch'")
    assert not problems, report(problems, "with reserved and non-string event names")


def test_documented_name_rules_hold_over_the_socket(world, clients):
    """Room names, user ids and client ids follow the documented rules exactly (no trailing newline)."""
    client = clients(0, world.fuzz)
    ask(client, "join", {"room": "fuzz-a"})
    cases = [("join", {"room": "lobby\n"}, {"invalid_room"}),
             ("join", {"room": "dm:fuzz:zed\n"}, {"invalid_room"}),
             ("history", {"room": "fuzz-a\n"}, {"invalid_room"}),
             ("send", {"to": "zed\n", "body": "x"}, {"invalid_payload"}),
             ("send", {"room": "fuzz-a", "body": "x", "client_id": "k\n"}, {"invalid_payload"}),
             ("invite", {"room": "private-fuzz", "user": "zed\n"}, {"invalid_payload"})]
    acks = ask_all([(client, event, (payload,)) for event, payload, _ in cases])
    problems = [f"{event!r} {short(payload)}: expected {sorted(codes)}, got {short(ack)}"
                for (event, payload, codes), ack in zip(cases, acks) if code_of(ack) not in codes]
    assert not problems, report(problems, "with names that break the documented rules")


def test_text_must_be_valid_unicode(world, clients):
    """Lone surrogates (valid JSON escapes, invalid Unicode) are not stored and relayed as text."""
    client = clients(0, world.fuzz)
    ask(client, "join", {"room": "fuzz-a"})
    cases = [("send", {"room": "fuzz-a", "body": "\ud800"}, {"invalid_body"}),
             ("send", {"room": "fuzz-a", "body": "ok \udfff"}, {"invalid_body"}),
             ("send", {"room": "fuzz-a", "type": "location",
                       "body": {"lat": 1, "lng": 2, "label": "\udfff"}},
              {"invalid_body", "unsupported_type"})]
    acks = ask_all([(client, event, (payload,)) for event, payload, _ in cases])
    problems = [f"{event!r} {short(payload)}: expected {sorted(codes)}, got {short(ack)}"
                for (event, payload, codes), ack in zip(cases, acks) if code_of(ack) not in codes]
    assert not problems, report(problems, "with lone surrogates")


def test_over_size_packets_drop_only_their_connection(world, clients):
    """Over max_http_buffer_size the server may drop the connection: only that one, and not crash."""
    problems: list[str] = []
    over = MAX_BUFFER + 100_000
    cases = [("websocket", {"room": "fuzz-a", "body": "x" * over}), ("websocket", b"\x00" * over),
             ("polling", {"room": "fuzz-a", "body": "x" * over}), ("polling", b"\x00" * over)]
    for index, (transport, payload) in enumerate(cases):
        replica = index % 3
        client = clients(replica, world.fuzz, transports=[transport])
        pending = emit(client, "send", (payload,))
        settled = wait_until(lambda: pending.done.is_set() or not client.sio.connected, timeout=15)
        if pending.done.is_set() and (problem := ack_problem(pending.result(0))):
            problems.append(f"{transport} {len(str(payload))}-char payload: {problem}")
        if not settled:
            problems.append(f"{transport}: an over-size packet neither answered nor dropped")
        health = requests.get(world.url(replica) + "/healthz", timeout=5)
        if health.status_code != 200:
            problems.append(f"replica {replica} unhealthy after an over-size packet: {health.status_code}")
        again = clients(replica, world.fuzz, transports=[transport])
        if code_of(ask(again, "conversations", {})) != "ok":
            problems.append(f"replica {replica}: a new {transport} connection does not work afterwards")
        if not world.sentinels[replica].sio.connected:
            problems.append(f"replica {replica}: an over-size packet cut another client's connection")
    assert not problems, report(problems, "with over-size packets")


def test_near_limit_frames_do_not_starve_the_replica(world):
    """Frames just under max_http_buffer_size, from a client that never authenticated, must not
    freeze the replica's one worker for everyone else (measured on its /healthz probe)."""
    replica = world.cluster.replicas[2]
    latencies: list[float] = []
    stop, answered = threading.Event(), threading.Event()

    def watch() -> None:
        with requests.Session() as session:
            while not stop.is_set():
                started = time.monotonic()
                session.get(replica.url + "/healthz", timeout=60)
                latencies.append(time.monotonic() - started)
                stop.wait(0.02)

    flooder = engineio.Client()
    flooder.on("message", lambda _data: answered.set())
    flooder.connect(replica.url, transports=["websocket"], engineio_path="socket.io")
    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        time.sleep(0.2)
        # Well-formed Socket.IO events for a namespace it never joined: each is refused once read.
        frame = '2["flood","' + "x" * (MAX_BUFFER * 9 // 10) + '"]'
        for _ in range(FLOOD_FRAMES):
            flooder.send(frame)
        flooder.send("0/chat,")  # a /chat connect without a token: its refusal comes after the frames
        assert answered.wait(60), "the flooding connection never got its refusal"
        time.sleep(0.1)
    finally:
        stop.set()
        watcher.join(timeout=60)
        flooder.disconnect()
    assert max(latencies) < STARVATION_MAX, (
        f"/healthz of {replica.instance_id} took up to {max(latencies):.1f}s while one unauthenticated "
        f"websocket sent {FLOOD_FRAMES} frames of {len(frame)} bytes (limit {STARVATION_MAX}s)")


def test_hostile_auth_payloads_are_refused_cleanly(world):
    """A connection with a hostile `auth` payload gets a contract refusal, nothing else."""
    problems: list[str] = []
    cases: list[Any] = [None, {}, [], "token", 123, {"token": None}, {"token": 123},
                        {"token": HUGE}, {"token": {"a": 1}}, {"token": ["x"]}, {"token": "\x00"},
                        {"token": "\ud800"}, {"token": world.expired}, {"token": world.forged},
                        {"token": world.fuzz + "x"}, {"token": math.nan}, {"token": 10**99},
                        {"token": "Bearer " + world.fuzz}, nested(50, "x")]
    for auth in cases:
        client = ChatClient(world.url(0), None, auth=auth)
        try:
            client.connect()
            problems.append(f"auth {short(auth)}: connected as {short(client.events['welcome'])}")
        except socketio.exceptions.ConnectionError:
            error = client.connect_error
            if not (isinstance(error, dict) and isinstance(error.get("message"), str)
                    and isinstance(error.get("data"), dict)
                    and error["data"].get("code") in ERROR_CODES_ON_CONNECT):
                problems.append(f"auth {short(auth)}: refusal not in the contract shape: {short(error)}")
        finally:
            client.close()
    assert not problems, report(problems, "with hostile auth payloads")


# ---------------------------------------------------------------------------------------------
# HTTP


ENDPOINTS = [("POST", "/api/auth/token"), ("GET", "/api/rooms/{room}/messages"),
             ("POST", "/api/rooms/{room}/messages"), ("POST", "/api/admin/revocations"),
             ("POST", "/api/admin/rooms/{room}/invitations"), ("POST", "/api/uploads"),
             ("GET", "/api/stats")]


def http_requests(world: World) -> st.SearchStrategy:
    """(method, path, headers, body or files) for any endpoint, with any auth and any body."""
    anything = json_values()
    rooms = st.one_of(st.sampled_from(ROOMS + ("lobby",)), st.text(max_size=70),
                      st.sampled_from(HOSTILE_TEXT), st.from_regex(ROOM_RULE))
    auths = st.sampled_from([{}, bearer(world.fuzz_demo), bearer(world.admin), bearer(world.admin),
                             bearer(world.expired), bearer(world.forged), bearer("x.y.z"),
                             {"Authorization": "Basic Zm9vOmJhcg=="}, {"Authorization": "Bearer"},
                             {"X-API-Key": "not-a-key"}, bearer("a" * 9000)])
    shaped = st.fixed_dictionaries({}, optional={
        "username": st.one_of(st.from_regex(validation.USERNAME_RE), anything),
        "jti": st.one_of(st.text(min_size=1, max_size=130), anything),
        "exp": st.one_of(INTS, FLOATS, anything),
        "user": st.one_of(st.sampled_from(["zed", "zed\n"]), anything),
        "type": st.one_of(st.sampled_from(["text", "image", "file", "location"]), anything),
        "body": st.one_of(st.text(min_size=1, max_size=20), location_bodies(anything),
                          attachment_bodies(world.uploads, anything), anything),
        "client_id": st.one_of(st.from_regex(CLIENT_ID_RULE), anything),
        "from": st.one_of(st.from_regex(validation.USERNAME_RE), anything)})
    json_body = st.one_of(shaped, shaped, anything).map(
        lambda value: json.dumps(value, allow_nan=True).encode())
    bodies = st.one_of(st.none(), json_body, json_body, json_body, st.binary(max_size=200),
                       st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),
                       st.just(json.dumps({"username": HUGE, "body": HUGE[:1000]}).encode()))
    types = st.sampled_from(["application/json", "application/json", "application/json; charset=utf-16",
                             "text/plain", "application/x-www-form-urlencoded",
                             "multipart/form-data; boundary=zz", None])
    queries = st.dictionaries(st.sampled_from(["before", "after", "limit", "x", ""]) | st.text(max_size=6),
                              st.sampled_from(["1", "0", "-1", "50", "101", "\u00b2", "\u0661", "1e3",
                                               " 1", "9" * 17, "", "\x00"]) | st.text(max_size=8),
                              max_size=3)
    files = st.tuples(st.text(max_size=30), st.one_of(st.binary(max_size=300), st.just(PNG),
                                                      st.text(max_size=100).map(str.encode)))

    @st.composite
    def build(draw):
        method, template = draw(st.sampled_from(ENDPOINTS))
        method = draw(st.sampled_from([method, method, method, "GET", "POST", "PUT", "DELETE", "PATCH"]))
        path = template.format(room=url_part(draw(rooms)))
        query = "&".join(f"{url_part(k)}={url_part(v)}" for k, v in draw(queries).items())
        headers = dict(draw(auths))
        if template == "/api/uploads" and draw(st.booleans()):
            parts = {"file": draw(files)}
            if draw(st.booleans()):
                parts["room"] = (None, draw(rooms))
            return method, path + ("?" + query if query else ""), headers, None, parts
        content_type = draw(types)
        if content_type:
            headers["Content-Type"] = content_type
        return method, path + ("?" + query if query else ""), headers, draw(bodies), None
    return build()


def test_http_endpoints_answer_arbitrary_requests_with_json(world):
    """Any method, path segment, query, auth and body: JSON answers, errors shaped, never a 5xx."""
    problems: list[str] = []
    session = requests.Session()

    @settings(max_examples=HTTP_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
    @given(request=http_requests(world), replica=st.integers(0, 2))
    def run(request, replica):
        method, path, headers, body, files = request
        try:
            answer = session.request(method, world.url(replica) + path, headers=headers, data=body,
                                     files=files, timeout=15)
        except requests.RequestException as exc:
            problems.append(f"{method} {short(path, 120)} body={short(body, 120)}: no answer: {exc!r}")
            return
        if problem := http_problem(answer):
            problems.append(f"{problem} (headers={short(headers, 100)} body={short(body, 160)} "
                            f"files={short(files, 100)})")

    try:
        run()
    finally:
        session.close()
    assert not problems, report(problems, "in HTTP answers to arbitrary requests")


def test_http_hostile_probes(world):
    """Hand-picked hostile requests at every endpoint, some with the exact answer they must get."""
    user, admin = bearer(world.fuzz_demo), bearer(world.admin)
    as_json = {"Content-Type": "application/json"}
    deep_text = b"[" * 100_000 + b"]" * 100_000  # 200 kB of valid JSON nested beyond any parser
    deep_json = json.dumps(nested(DEPTH, "x")).encode()
    bad = {400, 401, 403, 404, 405, 413, 415, 422}
    base = world.url(0)
    probes: list[tuple[str, str, str, dict, Any, set[int] | None]] = [
        # (what, method, path, headers, body, expected statuses or None for "any 2xx/4xx JSON")
        ("revocation exp NaN", "POST", "/api/admin/revocations", {**admin, **as_json},
         b'{"jti": "fuzz-nan", "exp": NaN}', {400}),
        ("revocation exp of 401 digits", "POST", "/api/admin/revocations", {**admin, **as_json},
         b'{"jti": "fuzz-big", "exp": 1' + b"0" * 400 + b"}", {400}),
        ("revocation exp Infinity", "POST", "/api/admin/revocations", {**admin, **as_json},
         b'{"jti": "fuzz-inf", "exp": Infinity}', None),
        ("revocation jti lone surrogate", "POST", "/api/admin/revocations", {**admin, **as_json},
         b'{"jti": "\\ud800"}', None),
        ("revocation jti of 129 chars", "POST", "/api/admin/revocations", {**admin, **as_json},
         json.dumps({"jti": "j" * 129}).encode(), {400}),
        ("history limit=\u00b2", "GET", "/api/rooms/fuzz-a/messages?limit=%C2%B2", user, None, {400}),
        ("history before=\u00b9", "GET", "/api/rooms/fuzz-a/messages?before=%C2%B9", user, None, {400}),
        ("history of room 'lobby\\n'", "GET", "/api/rooms/lobby%0A/messages", user, None, {400}),
        ("post to room 'lobby\\n'", "POST", "/api/rooms/lobby%0A/messages", {**admin, **as_json},
         b'{"body": "x"}', {400}),
        ("post from 'Bob\\n'", "POST", "/api/rooms/fuzz-a/messages", {**admin, **as_json},
         b'{"body": "x", "from": "Bob\\n"}', {400}),
        ("post client_id 'k\\n'", "POST", "/api/rooms/fuzz-a/messages", {**admin, **as_json},
         b'{"body": "x", "client_id": "k\\n"}', {400}),
        ("demo login 'bob\\n'", "POST", "/api/auth/token", as_json, b'{"username": "bob\\n"}', {400}),
        ("invitation of 'zed\\n'", "POST", "/api/admin/rooms/private-fuzz/invitations",
         {**admin, **as_json}, b'{"user": "zed\\n"}', {400}),
        ("demo login 200 kB name", "POST", "/api/auth/token", as_json,
         json.dumps({"username": HUGE}).encode(), {400}),
        ("body over 1 MB", "POST", "/api/auth/token", as_json, b" " * (MAX_BUFFER + 1), {413}),
        ("invalid UTF-8", "POST", "/api/auth/token", as_json, b'{"username": "\xff\xfe"}', {400}),
        ("UTF-16 JSON", "POST", "/api/auth/token", as_json,
         '{"username": "fuzz16"}'.encode("utf-16"), None),
        ("no content type", "POST", "/api/auth/token", {}, b'{"username": "fuzz"}', None),
        ("wrong method on stats", "PUT", "/api/stats", {}, None, {405}),
        ("wrong method on messages", "DELETE", "/api/rooms/fuzz-a/messages", admin, None, {405}),
        ("wrong method on revocations", "GET", "/api/admin/revocations", admin, None, {405}),
        ("unknown path", "GET", "/api/nope", {}, None, {404}),
        ("empty room segment", "GET", "/api/rooms//messages", user, None, None),
        ("NUL room", "GET", "/api/rooms/%00/messages", user, None, {400}),
        ("dot-dot room", "GET", "/api/rooms/%2e%2e/messages", user, None, {400, 404}),
        ("other users' DM", "GET", "/api/rooms/dm:sentinel-0:zed/messages", user, None, {403}),
        ("token of 9000 chars", "GET", "/api/rooms/fuzz-a/messages", bearer("a" * 9000), None, {401}),
        ("expired token", "GET", "/api/rooms/fuzz-a/messages", bearer(world.expired), None, {401}),
        ("forged token", "GET", "/api/rooms/fuzz-a/messages", bearer(world.forged), None, {401}),
        ("user token on the admin API", "POST", "/api/admin/revocations", {**user, **as_json},
         b'{"jti": "x"}', {403}),
        ("garbage API key", "POST", "/api/rooms/fuzz-a/messages", {"X-API-Key": "nope", **as_json},
         b'{"body": "x"}', {401}),
        ("stats with NUL query", "GET", "/api/stats?x=%00", {}, None, {200}),
        ("upload without a file", "POST", "/api/uploads", user, b"x" * 1000, bad),
        ("upload without auth", "POST", "/api/uploads", {}, None, bad),
        ("truncated multipart", "POST", "/api/uploads",
         {**user, "Content-Type": "multipart/form-data; boundary=zz"},
         b'--zz\r\nContent-Disposition: form-data; name="file"; filename="x.txt"\r\n\r\nabc', bad),
    ]
    for method, path, headers in (("POST", "/api/auth/token", as_json),
                                  ("POST", "/api/rooms/fuzz-a/messages", {**admin, **as_json}),
                                  ("POST", "/api/admin/revocations", {**admin, **as_json}),
                                  ("POST", "/api/admin/rooms/private-fuzz/invitations",
                                   {**admin, **as_json})):
        # Over the 100 kB body cap, so Flask refuses it before parsing (413); under it, 400.
        probes.append((f"100,000 levels of nesting at {path}", method, path, headers, deep_text, {400, 413}))
        probes.append((f"{DEPTH} levels of nesting at {path}", method, path, headers, deep_json, bad))
    problems = []
    with requests.Session() as session:
        for what, method, path, headers, body, expect in probes:
            answer = session.request(method, base + path, headers=headers, data=body, timeout=30)
            if problem := http_problem(answer, expect):
                problems.append(f"{what}: {problem}")
        over = session.post(base + "/api/uploads", headers=user, timeout=60,
                            files={"file": ("big.txt", b"a" * (UPLOAD_MAX + 1))}, data={"room": "fuzz-a"})
        if problem := http_problem(over, {404, 413}):
            problems.append(f"upload of {UPLOAD_MAX + 1} bytes: {problem}")
        for what, files in (("1001 multipart parts", [(f"f{n}", ("x.txt", b"x")) for n in range(1001)]),
                            ("200 kB file name", {"file": ("a" * 200_000 + ".txt", b"hello")}),
                            ("NUL in the file name", {"file": ("a\x00b.png", PNG)})):
            answer = session.post(base + "/api/uploads", headers=user, files=files, timeout=30)
            if problem := http_problem(answer):
                problems.append(f"upload with {what}: {problem}")
        # Request lines over 8 kB are refused by gevent's WSGI server before the app sees them: a
        # bare 414, not JSON. Only the status is checked there.
        for what, path in (("200 kB room segment", f"/api/rooms/{'a' * 200_000}/messages"),
                           ("200 kB query", f"/api/rooms/fuzz-a/messages?x={'b' * 200_000}")):
            answer = session.get(base + path, headers=user, timeout=30)
            if not 400 <= answer.status_code < 500:
                problems.append(f"{what}: {answer.status_code} {short(answer.text)}")
    assert not problems, report(problems, "in answers to hostile HTTP probes")


# ---------------------------------------------------------------------------------------------
# afterwards: alive, Redis, logs


def test_replicas_alive_and_still_deliver(world, clients):
    """Every replica answers /healthz, kept its connections (no worker restart) and delivers."""
    problems = []
    for index, replica in enumerate(world.cluster.replicas):
        health = requests.get(replica.url + "/healthz", timeout=5)
        if health.status_code != 200 or health.json().get("status") != "ok":
            problems.append(f"replica {index} /healthz: {health.status_code} {short(health.text)}")
        sentinel = world.sentinels[index]
        if not sentinel.sio.connected or sentinel.sio.get_sid("/chat") != world.sentinel_sids[index]:
            problems.append(f"replica {index} lost its long-lived connection (the worker restarted?)")
    assert not problems, report(problems, "in the replicas' health")
    speakers = [clients(index, world.cluster.token(f"after-{index}")) for index in range(3)]
    for speaker in speakers:
        assert speaker.call("join", {"room": "fuzz-after"})["ok"]
    for index, speaker in enumerate(speakers):
        sent = speaker.call("send", {"room": "fuzz-after", "body": f"still here {index}"})
        assert sent["ok"], sent
        for listener in speakers:
            listener.wait_for("message", lambda m, i=sent["message"]["id"]: m["room"] == "fuzz-after"
                              and m["id"] == i)
    final = world.sentinels[0].call("send", {"room": "fuzz-sentinel", "body": "sentinels still hear"})
    for sentinel in world.sentinels:
        sentinel.wait_for("message", lambda m: m["id"] == final["message"]["id"]
                          and m["room"] == "fuzz-sentinel")


def text_problem(body: Any) -> str | None:
    if not isinstance(body, str) or not body.strip():
        return "text body is not a non-blank string"
    if len(body) > MAX_CHARS:
        return f"text body longer than {MAX_CHARS}"
    return None if valid_unicode(body) else "text body is not valid Unicode (lone surrogate)"


def attachment_problem(body: Any, kind: str) -> str | None:
    if not isinstance(body, dict) or set(body) != {"url", "name", "mime", "size"}:
        return f"{kind} body is not {{url, name, mime, size}}"
    url = UPLOAD_URL.fullmatch(body["url"]) if isinstance(body["url"], str) else None
    if not url:
        return f"{kind} url is not an upload url"
    if body["mime"] != UPLOAD_EXTENSIONS[url.group(1)]:
        return f"{kind} mime does not match the upload"
    if kind == "image" and not body["mime"].startswith("image/"):
        return "image body of a non-image upload"
    size = body["size"]
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        return f"{kind} size is not a positive integer"
    name = body["name"]
    if (not isinstance(name, str) or not 0 < len(name) <= 200 or "/" in name or "\\" in name
            or any(ord(c) < 32 for c in name) or not valid_unicode(name)):
        return f"{kind} name is not a plain file name"
    return None


def location_problem(body: Any) -> str | None:
    if not isinstance(body, dict) or not {"lat", "lng"} <= set(body) <= {"lat", "lng", "accuracy", "label"}:
        return "location body is not {lat, lng, accuracy?, label?}"
    for field, low, high in (("lat", -90, 90), ("lng", -180, 180), ("accuracy", 0, 10_000_000)):
        value = body.get(field, 0)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            return f"location {field} out of range"
    label = body.get("label", "")
    if (not isinstance(label, str) or len(label) > 200 or not valid_unicode(label)
            or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in label)):
        return "location label is not short plain text"
    return None


BODY_SCHEMAS = {"text": text_problem, "location": location_problem,
                "image": lambda body: attachment_problem(body, "image"),
                "file": lambda body: attachment_problem(body, "file")}


def reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def message_problem(entry_id: bytes, fields: dict[bytes, bytes]) -> str | None:
    """What is wrong with one stream entry `{ts, m}` of a room's messages."""
    if not re.fullmatch(rb"[1-9][0-9]*-0", entry_id) or set(fields) != {b"ts", b"m"}:
        return f"entry {entry_id!r} is not <id>-0 with fields ts, m: {sorted(fields)}"
    try:
        message = json.loads(fields[b"m"], parse_constant=reject_constant)
    except ValueError as exc:
        return f"entry {entry_id!r} is not JSON: {exc}"
    if not isinstance(message, dict) or not {"from", "type", "body", "ts"} <= set(message) \
            <= {"from", "type", "body", "ts", "client_id"}:
        return f"entry {entry_id!r} has the wrong fields: {short(message)}"
    sender = message["from"]
    if not (isinstance(sender, dict) and set(sender) == {"id", "name"} and valid_user_id(sender["id"])
            and isinstance(sender["name"], str) and 0 < len(sender["name"]) <= 64):
        return f"entry {entry_id!r} has a bad sender: {short(sender)}"
    if isinstance(message["ts"], bool) or not isinstance(message["ts"], int):
        return f"entry {entry_id!r} has a bad ts"
    if "client_id" in message and not (isinstance(message["client_id"], str)
                                       and CLIENT_ID_RULE.fullmatch(message["client_id"])):
        return f"entry {entry_id!r} has a bad client_id: {short(message['client_id'])}"
    schema = BODY_SCHEMAS.get(message["type"]) if isinstance(message["type"], str) else None
    if schema is None:
        return f"entry {entry_id!r} has an unknown type {short(message['type'])}"
    problem = schema(message["body"])
    return f"entry {entry_id!r}: {problem}: {short(message['body'])}" if problem else None


ROOM_KEY = re.compile(r"rt:room:\{(?P<room>[^{}]*)\}:(?P<part>messages|seq|epoch|reads|members|online|users|invited"
                      r"|idem:(?P<idem>.*))", re.S)
INSTANCE_KEY = re.compile(r"rt:instance:(?P<id>[^:]+)(?P<part>:connections|:rooms)?", re.S)
FIGURES_KEY = re.compile(r"rt:figures:(?P<id>[^:]+)", re.S)  # each replica's dashboard figures
USER_KEY = re.compile(r"rt:user:(?P<user>[^:]*):conversations", re.S)
CLAIM_KEY = re.compile(r"rt:claim:typing:(?P<room>.*):(?P<user>[^:]*)", re.S)
ROOM_PART_TYPES = {"messages": "stream", "seq": "string", "epoch": "string", "reads": "hash", "members": "hash",
                   "online": "hash", "users": "hash", "invited": "set", "idem": "string"}
EPOCH_RULE = re.compile(r"[A-Za-z0-9_\-]{1,64}")  # opaque, as docs/api.md describes it
LIMITER_PREFIXES = ("LIMITS:", "rt-http")  # flask-limiter's HTTP counters
LIMIT_KEY = re.compile(r"rt:limit:(?P<rule>[a-z_]+):(?P<key>.+)", re.S)  # Socket.IO rate limits


def decoded(values: Any) -> list[str]:
    return [v.decode("utf-8", "surrogateescape") for v in values]


def room_key_problems(store: redis.Redis, raw: bytes, match: re.Match, kind: str,
                      instances: set[str]) -> list[str]:
    room, part = match["room"], match["part"].split(":")[0]
    problems = [] if valid_room(room) else [f"room name {room!r} breaks the room-name rules"]
    if kind != ROOM_PART_TYPES[part]:
        return problems + [f"is a {kind}, expected a {ROOM_PART_TYPES[part]}"]
    if part == "idem":
        user, _, key = match["idem"].partition(":")
        if not valid_user_id(user) or not CLIENT_ID_RULE.fullmatch(key):
            problems.append(f"idempotency key of user {user!r} and client_id {key!r}")
    elif part == "messages":
        for entry_id, fields in store.xrange(raw):
            if problem := message_problem(entry_id, fields):
                problems.append(problem)
    elif part in ("reads", "online"):
        for user, count in store.hgetall(raw).items():
            if not valid_user_id(user.decode("utf-8", "replace")) or not count.isdigit():
                problems.append(f"{part} entry {user!r}: {count!r}")
    elif part == "invited":
        problems += [f"invited {u!r} is not a user id" for u in decoded(store.smembers(raw))
                     if not valid_user_id(u)]
    elif part == "members":
        for field, user in store.hgetall(raw).items():
            instance = field.decode("utf-8", "replace").partition("|")[0]
            if instance not in instances or not valid_user_id(json.loads(user).get("id")):
                problems.append(f"member {field!r}: {user!r}")
    elif part == "users":  # user id -> the user, one per user online in the room
        for user_id, user in store.hgetall(raw).items():
            if json.loads(user).get("id") != user_id.decode("utf-8", "replace"):
                problems.append(f"online user {user_id!r}: {user!r}")
    elif part == "seq" and not store.get(raw).isdigit():
        problems.append("seq is not an integer")
    elif part == "epoch" and not EPOCH_RULE.fullmatch(store.get(raw).decode("ascii", "replace")):
        problems.append(f"epoch {store.get(raw)!r} is not an epoch")
    return problems


def key_problems(store: redis.Redis, raw: bytes, instances: set[str]) -> list[str]:
    """What is wrong with one Redis key (and its content) against the documented key patterns."""
    key = raw.decode("utf-8", "surrogateescape")
    kind = store.type(raw).decode()
    if key.startswith(LIMITER_PREFIXES) or key.startswith("rt:revoked:") and len(key) > 11:
        return []
    if key == "rt:instances":
        return [f"instance {i!r} is not a replica" for i in decoded(store.zrange(raw, 0, -1))
                if i not in instances]
    if match := ROOM_KEY.fullmatch(key):
        return room_key_problems(store, raw, match, kind, instances)
    if match := INSTANCE_KEY.fullmatch(key):
        if match["id"] not in instances:
            return [f"instance {match['id']!r} is not a replica"]
        if match["part"] == ":rooms":
            return [f"room {r!r} breaks the room-name rules" for r in decoded(store.smembers(raw))
                    if not valid_room(r)]
        return []
    if match := FIGURES_KEY.fullmatch(key):
        return [] if match["id"] in instances else [f"figures of {match['id']!r}, not a replica"]
    if match := USER_KEY.fullmatch(key):
        user = match["user"]
        problems = [] if valid_user_id(user) else [f"user id {user!r} breaks the user-id rules"]
        for room in decoded(store.zrange(raw, 0, -1)):
            pair = DM_RULE.fullmatch(room)
            if not valid_room(room) or not pair or user not in pair.groups():
                problems.append(f"conversation {room!r} is not a direct room of {user!r}")
        return problems
    if match := LIMIT_KEY.fullmatch(key):
        counts = store.hgetall(raw)
        if kind != "hash" or set(counts) != {b"i", b"c", b"p"} or not all(v.isdigit() for v in counts.values()):
            return [f"rate-limit counter {key!r} is not a hash of three counts: {counts!r}"]
        return [] if store.pttl(raw) > 0 else [f"rate-limit counter {key!r} never expires"]
    if match := CLAIM_KEY.fullmatch(key):
        if valid_room(match["room"]) and valid_user_id(match["user"]):
            return []
        return [f"typing claim of room {match['room']!r} and user {match['user']!r}"]
    return ["matches no documented key pattern"]


def test_redis_holds_only_documented_keys_and_valid_messages(world):
    """Every key follows a documented pattern with valid names; every message fits its schema."""
    store = redis.Redis.from_url(world.cluster.redis.url)
    problems = []
    try:
        keys = list(store.scan_iter(count=1000))
        for raw in keys:
            problems += [f"{raw!r}: {problem}" for problem in key_problems(store, raw, world.instance_ids)]
    finally:
        store.close()
    assert any(k.startswith(b"rt:room:{fuzz-a}:messages") for k in keys), "the seeded room is missing"
    assert not problems, report(problems, f"in Redis ({len(keys)} keys)")


def logged_exceptions(text: str) -> collections.Counter:
    """The exception line of every traceback in a log (the first unindented line after it)."""
    found: collections.Counter = collections.Counter()
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("Traceback (most recent call last):"):
            for follow in lines[index + 1:]:
                if follow and not follow[0].isspace():
                    found[follow[:200]] += 1
                    break
    return found


def test_replica_logs_hold_no_tracebacks(world):
    """A handled refusal is logged without a traceback; a traceback means something went unhandled."""
    problems = []
    for replica in world.cluster.replicas:
        for line, count in logged_exceptions(replica.log_path.read_text(errors="replace")).items():
            problems.append(f"{replica.instance_id}: {count}x {line}")
    assert not problems, report(problems, "in the replicas' logs")
