"""Private messages, typing, read receipts, unread counts, presence and conversations on /chat."""
import pytest

from test_chat import call, events


def test_private_message_reaches_every_connection_of_both_users_only(chat):
    ana_phone, ana_laptop, bo, cy = chat("Ana"), chat("Ana"), chat("Bo"), chat("Cy")
    ack = call(ana_phone, "send", {"to": "bo", "type": "text", "body": "psst", "client_id": "d1"})
    assert ack["ok"] is True
    message = ack["message"]
    assert message["room"] == "dm:ana:bo"
    for sio in (ana_phone, ana_laptop, bo):
        assert events(sio, "message") == [message]
    assert events(cy, "message") == []


def test_private_room_is_closed_to_others(chat):
    ana, cy = chat("Ana"), chat("Cy")
    call(ana, "send", {"to": "bo", "body": "secret"})
    for event, payload in [("join", {"room": "dm:ana:bo"}), ("history", {"room": "dm:ana:bo"}),
                           ("read", {"room": "dm:ana:bo", "message_id": 1}),
                           ("send", {"room": "dm:ana:bo", "body": "x"})]:
        ack = call(cy, event, payload)
        assert ack["error"]["code"] == "forbidden", event
    assert events(cy, "message") == []


def test_offline_recipient_finds_the_message_later(chat):
    ana = chat("Ana")
    sent = call(ana, "send", {"to": "bo", "body": "while you were away"})["message"]
    bo = chat("Bo")
    listing = call(bo, "conversations")["conversations"]
    assert listing == [{"room": "dm:ana:bo", "peer": "ana", "last_id": sent["id"], "unread": 1}]
    ack = call(bo, "join", {"room": "dm:ana:bo", "since": 0})
    assert ack["missed"] == [sent] and ack["unread"] == 1


@pytest.mark.parametrize("payload, code", [
    ({"to": "ana", "body": "me"}, "invalid_payload"), ({"to": "Not Valid", "body": "x"}, "invalid_payload"),
    ({"to": 5, "body": "x"}, "invalid_payload"), ({"to": "bo", "room": "lobby", "body": "x"}, "invalid_payload"),
    ({"room": "dm:bo:ana", "body": "x"}, "invalid_room"),
])
def test_bad_private_sends(chat, payload, code):
    assert call(chat("Ana"), "send", payload)["error"]["code"] == code


def test_typing_goes_to_others_only_and_is_throttled(chat):
    ana, bo = chat("Ana"), chat("Bo")
    for sio in (ana, bo):
        call(sio, "join", {"room": "r"})
    assert call(ana, "typing", {"room": "r", "typing": True}) == {"ok": True}
    assert call(ana, "typing", {"room": "r", "typing": True}) == {"ok": True, "throttled": True}
    assert call(ana, "typing", {"room": "r", "typing": False}) == {"ok": True}
    got = events(bo, "typing")
    assert [(e["user"]["id"], e["typing"]) for e in got] == [("ana", True), ("ana", False)]
    assert got[0]["expires_in"] > 0
    assert events(ana, "typing") == []


def test_typing_stops_when_the_typist_disconnects(chat):
    ana, bo = chat("Ana"), chat("Bo")
    for sio in (ana, bo):
        call(sio, "join", {"room": "r"})
    call(ana, "typing", {"room": "r", "typing": True})
    ana.disconnect(namespace="/chat")
    assert [e["typing"] for e in events(bo, "typing")] == [True, False]


@pytest.mark.parametrize("payload, code", [
    ({"room": "r"}, "invalid_payload"), ({"room": "r", "typing": "yes"}, "invalid_payload"),
    ({"room": "other", "typing": True}, "not_joined"),
])
def test_bad_typing(chat, payload, code):
    sio = chat()
    call(sio, "join", {"room": "r"})
    assert call(sio, "typing", payload)["error"]["code"] == code


def test_read_receipts_move_only_forward_and_unread_follows(chat):
    ana, bo = chat("Ana"), chat("Bo")
    for sio in (ana, bo):
        call(sio, "join", {"room": "r"})
    for n in range(4):
        call(ana, "send", {"room": "r", "body": f"m{n}"})
    assert call(bo, "read", {"room": "r", "message_id": 3}) == {"ok": True, "room": "r", "message_id": 3}
    assert call(bo, "read", {"room": "r", "message_id": 2})["message_id"] == 3
    assert [e["message_id"] for e in events(ana, "read")] == [3]
    assert call(bo, "join", {"room": "r"})["unread"] == 1
    assert call(ana, "join", {"room": "r"})["reads"] == {"bo": 3}
    assert call(bo, "read", {"room": "r", "message_id": 99})["error"]["code"] == "invalid_message_id"
    assert call(bo, "read", {"room": "r"})["error"]["code"] == "invalid_payload"


def test_presence_on_first_join_and_last_leave(chat):
    ana, bo_phone, bo_laptop = chat("Ana"), chat("Bo"), chat("Bo")
    call(ana, "join", {"room": "r"})
    ack = call(bo_phone, "join", {"room": "r"})
    assert ack["online"] == [{"id": "ana", "name": "Ana"}, {"id": "bo", "name": "Bo"}]
    call(bo_laptop, "join", {"room": "r"})
    call(bo_phone, "leave", {"room": "r"})
    bo_laptop.disconnect(namespace="/chat")
    seen = [(e["user"]["id"], e["online"]) for e in events(ana, "presence")]
    assert seen == [("ana", True), ("bo", True), ("bo", False)]
