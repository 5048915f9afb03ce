"""Through real nginx: sticky by source address for polling and websocket, messages cross;
operator endpoints for internal addresses only; no query strings of /socket.io/ in the access log;
per-address edge limits on /socket.io/."""
from __future__ import annotations

import http.client
import socket
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from chatclient import ChatClient, wait_until
from realtime.devcluster import EdgeLimits, Nginx, free_port

OPERATOR_PATHS = ["/metrics", "/readyz", "/api/stats"]

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


def test_socketio_query_strings_stay_out_of_the_access_log(nginx_cluster):
    access_log = nginx_cluster.nginx.log_dir / "nginx-access.log"
    answer = requests.get(nginx_cluster.url + "/socket.io/?EIO=4&transport=polling&token=querysecret",
                          timeout=5)
    assert answer.status_code == 200  # a handshake (the token is checked at the namespace connect)
    wait_until(lambda: access_log.exists() and "GET /socket.io/ HTTP/1.1" in access_log.read_text(),
               timeout=5)
    logged = access_log.read_text()
    assert "querysecret" not in logged and "transport=polling" not in logged
    # Other locations keep nginx's default format, query included.
    requests.get(nginx_cluster.url + "/healthz?probe=visible", timeout=5)
    wait_until(lambda: "/healthz?probe=visible" in access_log.read_text(), timeout=5)


def test_operator_endpoints_answer_internal_addresses(nginx_cluster):
    # The test client is 127.0.0.1: loopback is on the internal list.
    for path in OPERATOR_PATHS:
        assert requests.get(nginx_cluster.url + path, timeout=5).status_code == 200, path


@pytest.fixture(scope="module")
def outside_nginx(nginx_cluster, tmp_path_factory, start_processes):
    """A second nginx whose internal list leaves out loopback: to it, the test client is outside."""
    nginx = Nginx(tmp_path_factory.mktemp("outside-nginx"), free_port(),
                  [r.port for r in nginx_cluster.replicas], internal_networks=["10.0.0.0/8"])
    try:
        start_processes(nginx)
        yield nginx
    finally:
        nginx.stop()


def raw_get(nginx, path: str, headers: dict[str, str]) -> tuple[int, str]:
    """GET with the path sent exactly as written (requests would re-quote it)."""
    connection = http.client.HTTPConnection(nginx.host, nginx.port, timeout=5)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.read().decode(errors="replace")
    finally:
        connection.close()


@pytest.mark.parametrize("path", OPERATOR_PATHS + ["/metrics/", "//metrics", "/%6Detrics",
                                                   "/api//stats", "/api/%73tats", "/readyz?x=1"])
def test_operator_endpoints_refuse_other_addresses(outside_nginx, path):
    forged = {"X-Forwarded-For": "127.0.0.1", "X-Real-IP": "10.0.0.1"}  # nginx ignores both
    for headers in ({}, forged):
        status, text = raw_get(outside_nginx, path, headers)
        assert status == 403, (path, headers)
        assert "realtime_" not in text and "redis" not in text


def test_the_rest_still_answers_other_addresses(outside_nginx):
    assert requests.get(outside_nginx.url + "/healthz", timeout=5).status_code == 200
    assert requests.get(outside_nginx.url + "/", timeout=5).status_code == 200
    handshake = requests.get(outside_nginx.url + "/socket.io/?EIO=4&transport=polling", timeout=5)
    assert handshake.status_code == 200


@pytest.fixture(scope="module")
def limited_nginx(nginx_cluster, tmp_path_factory, start_processes):
    """nginx with tight edge limits on /socket.io/: one new session a second (burst 1), two open."""
    nginx = Nginx(tmp_path_factory.mktemp("limited-nginx"), free_port(),
                  [r.port for r in nginx_cluster.replicas],
                  edge_limits=EdgeLimits(connections=2, sessions_per_second=1, burst=1))
    try:
        start_processes(nginx)
        yield nginx
    finally:
        nginx.stop()


def test_edge_limits_refuse_a_burst_of_new_sessions_but_not_open_ones(limited_nginx):
    handshake = limited_nginx.url + "/socket.io/?EIO=4&transport=polling"
    first = requests.get(handshake, timeout=5)
    assert first.status_code == 200
    statuses = [requests.get(handshake, timeout=5).status_code for _ in range(5)]
    assert 429 in statuses, statuses  # new sessions faster than one a second from one address
    # A request with a sid belongs to an open session and is not counted as a new one.
    sid = first.text.split('"sid":"')[1].split('"')[0]
    answer = requests.post(f"{handshake}&sid={sid}", data="40/chat,", timeout=5)
    assert answer.status_code == 200


def test_edge_limits_cap_open_connections_per_address(limited_nginx):
    held = [socket.create_connection((limited_nginx.host, limited_nginx.port), timeout=5) for _ in range(3)]
    try:
        statuses = []
        for n, sock in enumerate(held):
            time.sleep(1.1)  # one new session a second: only the connection cap can refuse
            sock.sendall(f"GET /socket.io/?EIO=4&transport=websocket&n={n} HTTP/1.1\r\n"
                         f"Host: {limited_nginx.host}:{limited_nginx.port}\r\nUpgrade: websocket\r\n"
                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         "Sec-WebSocket-Version: 13\r\n\r\n".encode())
            statuses.append(sock.recv(64).split(b" ")[1])
        assert statuses[:2] == [b"101", b"101"] and statuses[2] == b"429", statuses
    finally:
        for sock in held:
            sock.close()


def test_shipped_nginx_conf_limits_socketio():
    shipped = (Path(__file__).resolve().parents[2] / "nginx" / "nginx.conf").read_text()
    location = shipped.split("location /socket.io/")[1].split("}")[0]
    assert EdgeLimits().directives().replace("            ", "") in location.replace("            ", "")
