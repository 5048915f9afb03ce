"""The /chat namespace through Flask-SocketIO's test client (memory store)."""
import pytest
from flask_jwt_extended import create_access_token

from realtime.extensions import socketio



def call(sio, event: str, payload=None):
    """Emit an event and return its ack."""
    return sio.emit(event, payload, namespace="/chat", callback=True)


def events(sio, name):
    """Payloads of the events of one name received so far."""
    # The test client unwraps the args of events named "message" (the send() event).
    return [e["args"] if e["name"] == "message" else e["args"][0]
            for e in sio.get_received("/chat") if e["name"] == name]


def test_connect_greets_with_replica_and_user(chat):
    sio = chat("Ana")
    assert sio.is_connected("/chat")
    welcome = events(sio, "welcome")[0]
    assert welcome["instance"] == "unit-1"
    assert welcome["user"] == {"id": "ana", "name": "Ana"}
    assert isinstance(welcome["server_time"], int)


@pytest.mark.parametrize("auth", [None, {}, {"token": ""}, {"token": "not-a-jwt"}, {"token": 42}])
def test_connect_without_a_valid_token_is_refused(chat, auth):
    assert not chat(auth=auth).is_connected("/chat")


def test_token_query_parameter_is_ignored_unless_switched_on(chat, token):
    """Off by default: a query string ends up in access logs (issue 19, item 5)."""
    sio = chat(auth=None, query_string=f"token={token('Bo')}")
    assert not sio.is_connected("/chat")


def test_token_query_parameter_is_accepted_when_switched_on(app_factory_with):
    app = app_factory_with(QUERY_TOKEN=True)
    with app.app_context():
        jwt = create_access_token(identity="bo", additional_claims={"name": "Bo"})
    sio = socketio.test_client(app, namespace="/chat", auth=None, query_string=f"token={jwt}")
    assert sio.is_connected("/chat")
    sio.disconnect(namespace="/chat")


def test_join_send_and_receive(chat):
    ana, bo = chat("Ana"), chat("Bo")
    assert call(ana, "join", {"room": "lobby"}) == {
        "ok": True, "room": "lobby", "epoch": None, "reset": False, "missed": [], "truncated": False,
        "unread": 0, "online": [{"id": "ana", "name": "Ana"}], "reads": {}}
    call(bo, "join", {"room": "lobby"})
    ack = call(ana, "send", {"room": "lobby", "type": "text", "body": "hi", "client_id": "c1"})
    assert ack["ok"] is True
    message = ack["message"]
    assert message["id"] == 1 and message["room"] == "lobby" and message["body"] == "hi"
    assert message["from"] == {"id": "ana", "name": "Ana"} and message["client_id"] == "c1"
    assert events(bo, "message") == [message]


def test_membership_of_the_room_is_looked_up_not_scanned(chat, monkeypatch):
    ana, bo = chat("Ana"), chat("Bo")
    call(ana, "join", {"room": "lobby"})
    call(bo, "join", {"room": "news"})
    manager = socketio.server.manager
    # flask_socketio.rooms() walks every room of the replica (get_rooms): O(connections) a send.
    monkeypatch.setattr(manager, "get_rooms", lambda *args: pytest.fail("rooms were scanned"))
    assert call(ana, "send", {"room": "lobby", "body": "hi"})["ok"] is True
    assert call(ana, "typing", {"room": "lobby", "typing": True})["ok"] is True
    assert call(bo, "send", {"room": "lobby", "body": "hi"})["error"]["code"] == "not_joined"
    call(ana, "leave", {"room": "lobby"})
    assert call(ana, "send", {"room": "lobby", "body": "hi"})["error"]["code"] == "not_joined"


def test_resend_with_same_client_id_is_not_delivered_twice(chat):
    ana, bo = chat("Ana"), chat("Bo")
    call(ana, "join", {"room": "lobby"})
    call(bo, "join", {"room": "lobby"})
    first = call(ana, "send", {"room": "lobby", "body": "once", "client_id": "k"})
    again = call(ana, "send", {"room": "lobby", "body": "once", "client_id": "k"})
    assert again["message"] == first["message"]
    assert len(events(bo, "message")) == 1


BAD_JOINS = [
    (None, "invalid_payload"), ("lobby", "invalid_payload"), ([], "invalid_payload"),
    ({}, "invalid_room"), ({"room": 5}, "invalid_room"), ({"room": ""}, "invalid_room"),
    ({"room": "has space"}, "invalid_room"), ({"room": "x" * 65}, "invalid_room"),
    ({"room": "<script>"}, "invalid_room"), ({"room": "lobby", "since": "3"}, "invalid_payload"),
    ({"room": "lobby", "since": -1}, "invalid_payload"), ({"room": "lobby", "since": True}, "invalid_payload"),
]


@pytest.mark.parametrize("payload, code", BAD_JOINS)
def test_bad_join_gets_a_structured_error(chat, payload, code):
    ack = call(chat(), "join", payload)
    assert ack["ok"] is False
    assert ack["error"]["code"] == code
    assert ack["error"]["message"]


BAD_SENDS = [
    (None, "invalid_payload"), ({"type": "text", "body": "x"}, "invalid_room"),
    ({"room": "lobby", "body": 5}, "invalid_body"), ({"room": "lobby", "body": "   "}, "invalid_body"),
    ({"room": "lobby"}, "invalid_body"), ({"room": "lobby", "body": "x" * 4001}, "body_too_long"),
    ({"room": "lobby", "type": "video", "body": "x"}, "unsupported_type"),
    ({"room": "lobby", "type": ["text"], "body": "x"}, "unsupported_type"),
    ({"room": "lobby", "body": "x", "client_id": 7}, "invalid_payload"),
    ({"room": "lobby", "body": "x", "client_id": "x" * 65}, "invalid_payload"),
    ({"room": "elsewhere", "body": "x"}, "not_joined"),
]


@pytest.mark.parametrize("payload, code", BAD_SENDS)
def test_bad_send_gets_a_structured_error_and_stores_nothing(app, chat, payload, code):
    sio = chat()
    call(sio, "join", {"room": "lobby"})
    ack = call(sio, "send", payload)
    assert ack == {"ok": False, "error": {"code": code, "message": ack["error"]["message"]}}
    assert app.extensions["realtime"].store.room_bounds("lobby") == (0, 0)
    assert events(sio, "message") == []


def test_unknown_room_is_refused_when_rooms_are_configured(app_config, app_factory_with):
    app = app_factory_with(ROOMS="lobby,dev")
    from realtime.extensions import socketio
    from flask_jwt_extended import create_access_token
    with app.app_context():
        token = create_access_token(identity="ana")
    sio = socketio.test_client(app, namespace="/chat", auth={"token": token})
    assert call(sio, "join", {"room": "dev"})["ok"] is True
    assert call(sio, "join", {"room": "random"})["error"]["code"] == "unknown_room"


def test_unknown_event_is_answered(chat):
    assert call(chat(), "explode", {})["error"]["code"] == "unknown_event"


def test_join_since_returns_missed_messages(chat):
    ana, bo = chat("Ana"), chat("Bo")
    call(ana, "join", {"room": "r"})
    for n in range(5):
        call(ana, "send", {"room": "r", "body": f"m{n}"})
    ack = call(bo, "join", {"room": "r", "since": 2})
    assert [m["body"] for m in ack["missed"]] == ["m2", "m3", "m4"]
    assert ack["truncated"] is False and ack["unread"] == 5  # bo has read nothing yet


def test_history_pages(chat):
    sio = chat()
    call(sio, "join", {"room": "r"})
    for n in range(6):
        call(sio, "send", {"room": "r", "body": f"m{n}"})
    newest = call(sio, "history", {"room": "r", "limit": 2})["messages"]
    assert [m["id"] for m in newest] == [5, 6]
    older = call(sio, "history", {"room": "r", "before": 5, "limit": 2})["messages"]
    assert [m["id"] for m in older] == [3, 4]
    after = call(sio, "history", {"room": "r", "after": 4})["messages"]
    assert [m["id"] for m in after] == [5, 6]
    assert call(sio, "history", {"room": "r", "limit": 0})["error"]["code"] == "invalid_payload"
    assert call(sio, "history", {"room": "r", "limit": 1000})["error"]["code"] == "invalid_payload"


def test_leave_stops_delivery(chat):
    ana, bo = chat("Ana"), chat("Bo")
    call(ana, "join", {"room": "r"})
    call(bo, "join", {"room": "r"})
    assert call(bo, "leave", {"room": "r"}) == {"ok": True, "room": "r"}
    call(ana, "send", {"room": "r", "body": "after leave"})
    assert events(bo, "message") == []


def test_connections_are_tracked(app, chat):
    cluster = app.extensions["realtime"].cluster
    cluster.heartbeat()
    ana = chat("Ana")
    chat("Bo")
    assert cluster.stats()["clients_total"] == 2
    ana.disconnect(namespace="/chat")
    assert cluster.stats() == {"instance": "unit-1", "clients_total": 1,
                               "instances": [{"id": "unit-1", "clients": 1,
                                              "started_at": cluster.started_at}]}


def test_a_bug_in_a_handler_is_an_internal_ack_logged_once(app, chat, caplog, monkeypatch):
    sio = chat()
    call(sio, "join", {"room": "r"})

    def explode(*_args, **_kwargs):
        raise RuntimeError("boom")
    monkeypatch.setattr(app.extensions["realtime"].messages, "send", explode)
    with caplog.at_level("ERROR"):
        ack = call(sio, "send", {"room": "r", "body": "x"})
    assert ack == {"ok": False, "error": {"code": "internal", "message": "internal error"}}
    assert sum("on_send failed" in r.getMessage() for r in caplog.records) == 1
    assert call(sio, "history", {"room": "r"})["ok"] is True  # the connection and worker live on


def test_http_bug_is_a_json_500(app, client, monkeypatch):
    monkeypatch.setattr(app.extensions["realtime"].cluster, "stats", lambda: 1 / 0)
    response = client.get("/api/stats")
    assert response.status_code == 500
    assert response.get_json() == {"error": {"code": "internal", "message": "internal error"}}


def test_since_beyond_the_newest_id_starts_over_flagged(chat):
    sio = chat()
    call(sio, "join", {"room": "r"})
    call(sio, "send", {"room": "r", "body": "only"})
    ack = call(sio, "join", {"room": "r", "since": 50})
    assert [m["body"] for m in ack["missed"]] == ["only"] and ack["truncated"] is True


def test_messages_joins_and_pages_carry_the_rooms_epoch(chat, client, token):
    ana = chat("Ana")
    call(ana, "join", {"room": "lobby"})
    sent = [call(ana, "send", {"room": "lobby", "body": str(n)})["message"] for n in range(3)]
    epoch = sent[0]["epoch"]
    assert isinstance(epoch, str) and {m["epoch"] for m in sent} == {epoch}
    assert {m["epoch"] for m in events(ana, "message")} == {epoch}
    again = call(chat("Ana"), "join", {"room": "lobby", "since": 1, "epoch": epoch})
    assert (again["epoch"], again["reset"], [m["id"] for m in again["missed"]]) == (epoch, False, [2, 3])
    page = call(ana, "history", {"room": "lobby", "limit": 2})
    assert page["epoch"] == epoch and [m["id"] for m in page["messages"]] == [2, 3]
    assert call(ana, "history", {"room": "empty"})["epoch"] is None
    reply = client.get("/api/rooms/lobby/messages", headers={"Authorization": f"Bearer {token('Ana')}"})
    assert reply.status_code == 200 and reply.get_json()["epoch"] == epoch


def test_a_join_with_another_epoch_is_reset_with_the_recent_messages(chat):
    ana = chat("Ana")
    call(ana, "join", {"room": "lobby"})
    for n in range(3):
        call(ana, "send", {"room": "lobby", "body": str(n)})
    epoch = events(ana, "message")[0]["epoch"]
    # A client that saw ids up to 5 of a history the store has lost since.
    ack = call(chat("Bo"), "join", {"room": "lobby", "since": 2, "epoch": "lost-history"})
    assert (ack["reset"], ack["epoch"], ack["truncated"]) == (True, epoch, False)
    assert [m["id"] for m in ack["missed"]] == [1, 2, 3]
    # Without an epoch, as before (and `reset` is false).
    legacy = call(chat("Cy"), "join", {"room": "lobby", "since": 2})
    assert (legacy["reset"], [m["id"] for m in legacy["missed"]]) == (False, [3])
    # An epoch without `since` asks for nothing.
    assert call(chat("Di"), "join", {"room": "lobby", "epoch": "x"})["missed"] == []


@pytest.mark.parametrize("epoch", [5, "", "a" * 65, "spaces here", ["x"]])
def test_a_malformed_epoch_is_refused(chat, epoch):
    ack = call(chat("Ana"), "join", {"room": "lobby", "since": 0, "epoch": epoch})
    assert ack["ok"] is False and ack["error"]["code"] == "invalid_payload"


def jwt_for(app, name: str) -> str:
    """An access token of `name` signed by this app."""
    with app.app_context():
        return create_access_token(identity=name.lower(), additional_claims={"name": name})


def test_a_join_over_its_limit_is_refused_and_enters_nothing(app_factory_with):
    # The join limit is counted in the join's own store call: a refusal still joins nothing.
    app = app_factory_with(RATE_LIMITS="join=3/minute")
    ana = socketio.test_client(app, namespace="/chat", auth={"token": jwt_for(app, "Ana")})
    assert call(ana, "join", {"room": 42})["error"]["code"] == "invalid_room"  # counts, as before
    assert call(ana, "join", {"room": "a"})["ok"] and call(ana, "join", {"room": "a"})["ok"]
    refused = call(ana, "join", {"room": "b"})
    assert refused["error"]["code"] == "rate_limited" and refused["error"]["retry_after"] > 0
    send = {"type": "text", "body": "hi", "client_id": "c1"}
    assert call(ana, "send", {"room": "b", **send})["error"]["code"] == "not_joined"
    assert app.extensions["realtime"].store.online("b") == []
    assert call(ana, "join", {"room": "a"})["error"]["code"] == "rate_limited"  # already in a: stays in
    assert call(ana, "send", {"room": "a", **send})["ok"]
    ana.disconnect(namespace="/chat")


def test_a_connect_over_its_limit_is_refused_and_not_tracked(app_factory_with):
    app = app_factory_with(RATE_LIMITS="connect=2/minute")
    cluster = app.extensions["realtime"].cluster
    cluster.heartbeat()
    bad = socketio.test_client(app, namespace="/chat", auth={"token": "not-a-jwt"})  # counts a hit
    ana = socketio.test_client(app, namespace="/chat", auth={"token": jwt_for(app, "Ana")})
    bo = socketio.test_client(app, namespace="/chat", auth={"token": jwt_for(app, "Bo")})
    assert (bad.is_connected("/chat"), ana.is_connected("/chat"), bo.is_connected("/chat")) == (False, True, False)
    assert cluster.stats()["clients_total"] == 1 and len(cluster.connections) == 1
    ana.disconnect(namespace="/chat")
