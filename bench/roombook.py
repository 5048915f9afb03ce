"""CPU of a replica's room bookkeeping as connections grow: python-socketio's manager against ours.

For N connections in one namespace (each in its own room, a user room and one shared room, as
/chat's are), it times in one process, with python-socketio's stock `Manager` and with
realtime.transport.roomindex's `LocalManager`: the membership check a `send` makes (Flask-SocketIO's
`rooms()`, i.e. `get_rooms`, against one lookup in the room's members), and every connection
disconnecting one after another (what a replica pays when its clients drop at once). Prints µs per
operation and the ratio. No Redis, no network; no figure is checked against a threshold.

    .venv/bin/python bench/roombook.py                    # 1000, 3000 and 10 000 connections
    .venv/bin/python bench/roombook.py --smoke            # CI: it runs, both managers agree
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import socketio  # noqa: E402

from realtime.transport.roomindex import LocalManager  # noqa: E402


class Server:
    """What a manager reads of its server: ids and the JSON module."""

    class packet_class:
        json = json

    def __init__(self):
        counter = itertools.count()
        self.eio = type("Eio", (), {"generate_id": staticmethod(lambda: f"sid{next(counter):06d}")})()


def filled(cls: type, connections: int) -> tuple:
    """A manager with `connections` /chat connections, each in its user's room and in lobby."""
    manager = cls()
    manager.set_server(Server())
    sids = []
    for n in range(connections):
        sid = manager.connect(f"eio{n}", "/chat")
        manager.enter_room(sid, "/chat", f"user:u{n % 500}")
        manager.enter_room(sid, "/chat", "lobby")
        sids.append(sid)
    return manager, sids


def membership_us(manager: Any, sids: list, checks: int) -> float:
    """µs per 'is this connection in lobby' as each manager answers it (get_rooms for the stock)."""
    started = time.process_time()
    for n in range(checks):
        sid = sids[n % len(sids)]
        if isinstance(manager, LocalManager):
            members = manager.rooms.get("/chat", {}).get("lobby")
            found = members is not None and sid in members
        else:
            found = "lobby" in manager.get_rooms(sid, "/chat")
        assert found
    return (time.process_time() - started) / checks * 1e6


def disconnect_us(manager: Any, sids: list) -> float:
    """µs per disconnect, every connection in turn."""
    started = time.process_time()
    for sid in sids:
        manager.disconnect(sid, "/chat")
    assert "/chat" not in manager.rooms
    return (time.process_time() - started) / len(sids) * 1e6


def main(argv: list[str] | None = None) -> int:
    """Measure each size with both managers; print the table."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", default="1000,3000,10000")
    parser.add_argument("--smoke", action="store_true", help="200 connections, once")
    args = parser.parse_args(argv)
    sizes = [200] if args.smoke else [int(n) for n in args.connections.split(",")]
    print(f"{'connections':>11}  {'check stock µs':>14}  {'check ours µs':>13}  {'ratio':>6}  "
          f"{'disconnect stock µs':>19}  {'disconnect ours µs':>18}  {'ratio':>6}")
    for size in sizes:
        stock, ours = filled(socketio.Manager, size), filled(LocalManager, size)
        checks = max(200, 200_000 // size)
        check = [membership_us(*stock, checks), membership_us(*ours, checks)]
        gone = [disconnect_us(*stock), disconnect_us(*ours)]
        print(f"{size:>11}  {check[0]:>14.2f}  {check[1]:>13.2f}  {check[1] / check[0]:>5.3f}x  "
              f"{gone[0]:>19.1f}  {gone[1]:>18.1f}  {gone[1] / gone[0]:>5.3f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
