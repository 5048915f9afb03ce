"""Through real nginx: sticky by source address for polling and websocket, messages cross."""
from __future__ import annotations

from collections import Counter

import pytest

from chatclient import ChatClient

pytestmark = [pytest.mark.integration, pytest.mark.nginx]

SOURCES = [f"127.0.0.{n}" for n in range(2, 26)]


@pytest.fixture
def opened():
    """Clients to close after the test."""
    clients: list[ChatClient] = []
    yield clients
    for client in clients:
        client.close()


def through_nginx(nginx_cluster, opened, ip: str, transports=None, name="u") -> ChatClient:
    client = ChatClient(nginx_cluster.url, nginx_cluster.token(name), transports=transports,
                        source_ip=ip).connect()
    opened.append(client)
    return client


def test_clients_spread_by_address_and_stick_on_every_transport(nginx_cluster, opened):
    landed = {}
    for ip in SOURCES:
        polling = through_nginx(nginx_cluster, opened, ip, ["polling"])
        # Several polling round trips must all reach the replica that owns the session.
        for _ in range(3):
            assert polling.call("join", {"room": "sticky"})["ok"] is True
        websocket = through_nginx(nginx_cluster, opened, ip, ["websocket"])
        upgraded = through_nginx(nginx_cluster, opened, ip)  # polling, then upgrade
        assert polling.instance == websocket.instance == upgraded.instance, ip
        landed[ip] = polling.instance
    spread = Counter(landed.values())
    print(f"\nclients per replica through nginx: {dict(spread)}")
    assert len(spread) >= 2
    assert set(spread) <= {r.instance_id for r in nginx_cluster.replicas}


def test_messages_cross_replicas_through_nginx(nginx_cluster, opened):
    by_replica: dict[str, ChatClient] = {}
    for ip in SOURCES:
        client = through_nginx(nginx_cluster, opened, ip, name=f"user{ip.rsplit('.', 1)[1]}")
        by_replica.setdefault(client.instance, client)
        if len(by_replica) == 3:
            break
    assert len(by_replica) >= 2
    clients = list(by_replica.values())
    for client in clients:
        assert client.call("join", {"room": "via-nginx"})["ok"] is True
    for n, sender in enumerate(clients):
        sender.call("send", {"room": "via-nginx", "body": f"hello {n}"})
    for client in clients:
        for n in range(len(clients)):
            client.wait_for("message", lambda m, n=n: m["body"] == f"hello {n}")
