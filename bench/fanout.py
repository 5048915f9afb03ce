"""CPU per recipient of one broadcast in one process: python-socketio's stock path against ours.

A python-socketio server (gevent) with N clients in one /chat room, each an upgraded websocket
on realtime.transport.wsdirect's DirectWriter over a Unix socket pair (its peer read after every emit,
outside the timed part). It times `manager.emit` of a chat-sized message, first with the stock
python-socketio and engine.io send path (wsdirect's writer only), then with `wsdirect.install()`
(the direct broadcast), alternating, and prints the best of the repetitions per recipient and the
ratio. No Redis, no network: the send syscall on a socket pair is included, loopback TCP and
the clients are not (bench/compare.py measures those). No figure is checked against a threshold.

    .venv/bin/python bench/fanout.py                      # 1000 clients, a few seconds
    .venv/bin/python bench/fanout.py --smoke              # CI: it runs and every byte arrives
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from gevent import monkey

monkey.patch_all()

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import gevent  # noqa: E402
import socketio  # noqa: E402
from engineio.socket import Socket  # noqa: E402
from gevent import socket as gsocket  # noqa: E402

from realtime.transport import wsdirect  # noqa: E402

MESSAGE = {"id": 1, "room": "lobby", "from": {"id": "ana", "name": "Ana"}, "type": "text",
           "body": "x" * 150, "ts": 1764000000000, "client_id": "c-1"}


def room(server: socketio.Server, clients: int) -> list:
    """`clients` upgraded websockets in room lobby of /chat; the peers to read them from."""
    peers = []
    for n in range(clients):
        ours, peer = gsocket.socketpair()
        peer.setblocking(False)
        sock = Socket(server.eio, f"eio-{n}")
        sock.connected = sock.upgraded = True
        sock.__dict__["_rt_writer"] = wsdirect.DirectWriter(ours, gevent.spawn)
        server.eio.sockets[sock.sid] = sock
        server.manager.enter_room(server.manager.connect(sock.sid, "/chat"), "/chat", "lobby")
        peers.append(peer)
    return peers


def per_recipient(server: socketio.Server, peers: list, emits: int) -> float:
    """µs of process CPU per recipient over `emits` broadcasts (reading them back not counted)."""
    spent, expected = 0.0, None
    for _ in range(emits):
        started = time.process_time()
        server.manager.emit("message", MESSAGE, namespace="/chat", room="lobby")
        gevent.sleep(0)  # the end of the loop's turn, where the writers send (wsdirect.TurnBatch)
        spent += time.process_time() - started
        sizes = {len(peer.recv(1 << 16)) for peer in peers}
        if len(sizes) != 1 or (expected is not None and sizes != expected):
            raise SystemExit(f"fanout: the recipients got different bytes: {sorted(sizes)}")
        expected = sizes
    return spent / (emits * len(peers)) * 1e6


def main(argv: list[str] | None = None) -> int:
    """Run both paths, alternating, and print the best of each."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--emits", type=int, default=100)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--smoke", action="store_true", help="tiny, for CI")
    args = parser.parse_args(argv)
    if args.smoke:
        args.clients, args.emits, args.repetitions = 20, 5, 1
    wsdirect.install()  # Socket.send on the writer for both paths; the emit is what differs
    stock_emit = wsdirect._stock.get("emit")  # what install() replaced
    if stock_emit is None:
        raise SystemExit("fanout: python-socketio is not a version the direct broadcast supports")
    server = socketio.Server(async_mode="gevent")
    peers = room(server, args.clients)
    best = {"stock": float("inf"), "direct": float("inf")}
    for repetition in range(args.repetitions + 1):  # the first round warms up
        for name in (("stock", "direct") if repetition % 2 else ("direct", "stock")):
            socketio.manager.Manager.emit = stock_emit if name == "stock" else wsdirect.emit
            figure = per_recipient(server, peers, args.emits)
            if repetition:
                best[name] = min(best[name], figure)
    print(f"broadcast to {args.clients} websockets, {args.emits} emits x {args.repetitions} repetitions, best:")
    print(f"  stock python-socketio emit  {best['stock']:.2f} µs per recipient")
    print(f"  direct broadcast            {best['direct']:.2f} µs per recipient "
          f"({best['direct'] / best['stock']:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
