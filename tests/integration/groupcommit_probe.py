"""Run by test_group_commit.py in a gevent-patched process (as a replica is): one scenario against
a real Redis, its observations as one JSON line on stdout."""
from gevent import monkey

monkey.patch_all()

import json  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import gevent  # noqa: E402
import redis  # noqa: E402

from realtime.store import Quota, Retention, StoreUnavailable, create_store  # noqa: E402
from realtime.store import deadline  # noqa: E402

KEEP = Retention(max_messages=10_000, max_age=3600, idempotency_ttl=60)


def text(sender: str, n: int) -> dict:
    return {"from": {"id": sender, "name": sender}, "type": "text", "body": f"{sender}:{n}", "ts": int(time.time() * 1000)}


def outcome(call):
    """("ok", result) or ("error", class name, outcome_unknown)."""
    try:
        return ["ok", call()]
    except StoreUnavailable as exc:
        return ["unavailable", type(exc).__name__, bool(exc.outcome_unknown)]
    except Exception as exc:  # noqa: BLE001 - the probe reports what the caller would see
        return ["error", type(exc).__name__, str(exc)[:200]]


def concurrent(store, senders: int, rooms: int, each: int) -> dict:
    """`senders` greenlets, each sending `each` messages one after another to its room."""
    sent: dict[str, list] = {}

    def sender(n: int) -> None:
        name, room = f"s{n}", f"room{n % rooms}"
        for i in range(each):
            appended = store.append_message(room, text(name, i), f"{name}:{i}", KEEP)
            sent.setdefault(name, []).append([room, appended.message["id"], appended.message["body"]])

    gevent.joinall([gevent.spawn(sender, n) for n in range(senders)], raise_error=True)
    history = {f"room{r}": [[m["id"], m["body"]] for m in store.messages_after(f"room{r}", 0, 10_000)]
               for r in range(rooms)}
    return {"sent": sent, "history": history}


def one_fails(store, client) -> dict:
    """A batch of good appends with one whose script fails (its room's id counter is not a number)."""
    client.set("rt:room:{bad}:seq", "not a number")
    before = (store.group_commit.batches, store.group_commit.calls)
    calls = [("good", n) for n in range(10)] + [("bad", 0)] + [("good", n) for n in range(10, 20)]
    results = [None] * len(calls)

    def send(index: int, room: str, n: int) -> None:
        results[index] = outcome(lambda: store.append_message(room, text("u", n), None, KEEP).message["id"])

    gevent.joinall([gevent.spawn(send, i, room, n) for i, (room, n) in enumerate(calls)])
    after = (store.group_commit.batches, store.group_commit.calls)
    return {"results": results, "batch_delta": after[0] - before[0], "call_delta": after[1] - before[1],
            "history": [m["body"] for m in store.messages_after("good", 0, 100)]}


def repeats(store) -> dict:
    """The same client_id sent by several greenlets at once, then once more later."""
    firsts = [None] * 5

    def send(index: int) -> None:
        appended = store.append_message("idem", text("u", 0), "u:same", KEEP)
        firsts[index] = [appended.message["id"], appended.duplicate]

    gevent.joinall([gevent.spawn(send, i) for i in range(5)])
    later = store.append_message("idem", text("u", 0), "u:same", KEEP)
    return {"firsts": firsts, "later": [later.message["id"], later.duplicate],
            "history": [m["id"] for m in store.messages_after("idem", 0, 100)]}


def over_quota(store) -> dict:
    """A quota taken in the same script: the refused send writes nothing, the others are kept."""
    quota = Quota("send", "u", limit=3, window=60)
    results = [None] * 6

    def send(index: int) -> None:
        results[index] = outcome(lambda: store.append_message("quota", text("u", index), None, KEEP,
                                                              quota=quota).message["id"])

    gevent.joinall([gevent.spawn(send, i) for i in range(6)])
    return {"results": results, "history": [m["id"] for m in store.messages_after("quota", 0, 100)]}


def hung(store, client, bound: float) -> dict:
    """Redis SIGSTOPped: one turn's calls in flight (deadline `bound`), then another turn's with a
    shorter deadline; every append answers unavailable by its deadline; then SIGCONT and retries."""
    pid = int(client.info("server")["process_id"])
    results: list = [None] * 40
    took = [0.0] * 40

    def send(index: int, within: float) -> None:
        started = time.monotonic()
        with deadline.within(within):
            results[index] = outcome(lambda: store.append_message(
                "hung", text("u", index), f"u:{index}", KEEP).message["id"])
        took[index] = time.monotonic() - started

    os.kill(pid, signal.SIGSTOP)
    try:
        in_flight = [gevent.spawn(send, i, bound) for i in range(20)]
        gevent.sleep(bound / 10)  # the first pipeline is on its way
        later = [gevent.spawn(send, i, bound / 2) for i in range(20, 40)]
        gevent.joinall(in_flight + later)
    finally:
        os.kill(pid, signal.SIGCONT)
    stored = [m["body"] for m in store.messages_after("hung", 0, 100)]
    retried = [outcome(lambda i=i: store.append_message("hung", text("u", i), f"u:{i}", KEEP).message["id"])
               for i in range(40)]
    return {"results": results, "took": took, "stored": stored, "retried": retried,
            "history": [m["body"] for m in store.messages_after("hung", 0, 100)]}


def noscript(store, client) -> dict:
    """Redis forgot its scripts (a restart, SCRIPT FLUSH) between two turns of concurrent appends."""
    first = concurrent(store, senders=20, rooms=3, each=1)
    client.script_flush()
    second = concurrent(store, senders=20, rooms=3, each=2)
    return {"first": first, "second": second}


def main() -> None:
    scenario, url = sys.argv[1], sys.argv[2]
    store = create_store(url, socket_timeout=5.0, group_commit=True)
    client = redis.Redis.from_url(url) if "cluster" not in url else None
    if scenario == "concurrent":
        observed = concurrent(store, senders=200, rooms=7, each=5)
    elif scenario == "one_fails":
        observed = one_fails(store, client)
    elif scenario == "repeats":
        observed = repeats(store)
    elif scenario == "over_quota":
        observed = over_quota(store)
    elif scenario == "noscript":
        observed = noscript(store, client)
    elif scenario == "hung":
        observed = hung(store, client, float(sys.argv[3]))
    else:
        raise SystemExit(f"unknown scenario {scenario}")
    observed["batches"], observed["calls"] = store.group_commit.batches, store.group_commit.calls
    print(json.dumps(observed))


if __name__ == "__main__":
    main()
