"""Messaging across 3 real replicas: recovery, idempotency, private messages, typing, receipts, presence."""
from __future__ import annotations

import time

import pytest

from chatclient import ChatClient

pytestmark = pytest.mark.integration


def live_ids(client: ChatClient, room: str) -> list[int]:
    return [m["id"] for m in client.events["message"] if m["room"] == room]


def test_reconnect_elsewhere_gets_exactly_the_missed_then_live(connect):
    writer, reader = connect(0, "writer"), connect(1, "reader")
    for client in (writer, reader):
        client.call("join", {"room": "gap"})
    first = writer.call("send", {"room": "gap", "body": "before"})["message"]
    reader.wait_for("message", lambda m: m["id"] == first["id"])
    reader.close()
    missed = [writer.call("send", {"room": "gap", "body": f"missed {n}"})["message"] for n in range(5)]
    again = connect(2, "reader")
    ack = again.call("join", {"room": "gap", "since": first["id"]})
    assert ack["missed"] == missed and ack["truncated"] is False
    live = writer.call("send", {"room": "gap", "body": "live"})["message"]
    again.wait_for("message", lambda m: m["id"] == live["id"])
    seen = [m["id"] for m in ack["missed"]] + live_ids(again, "gap")
    assert seen == list(range(first["id"] + 1, live["id"] + 1))


def test_idempotent_resend_on_another_replica(connect):
    ana_a, ana_b, bo = connect(0, "ana"), connect(1, "ana"), connect(2, "bo")
    for client in (ana_a, ana_b, bo):
        client.call("join", {"room": "idem"})
    first = ana_a.call("send", {"room": "idem", "body": "once", "client_id": "k-1"})["message"]
    again = ana_b.call("send", {"room": "idem", "body": "once", "client_id": "k-1"})["message"]
    assert again == first
    bo.wait_for("message", lambda m: m["id"] == first["id"])
    time.sleep(0.5)
    assert live_ids(bo, "idem") == [first["id"]]
    assert [m["id"] for m in bo.call("history", {"room": "idem"})["messages"]] == [first["id"]]


def test_private_messages_stay_private_across_replicas(connect):
    ana, bo_phone, bo_laptop, eve = connect(0, "ana"), connect(1, "bo"), connect(2, "bo"), connect(2, "eve")
    sent = ana.call("send", {"to": "bo", "body": "just for bo"})["message"]
    for client in (ana, bo_phone, bo_laptop):
        assert client.wait_for("message", lambda m: m["id"] == sent["id"] and m["room"] == "dm:ana:bo")
    for event, payload in [("join", {"room": "dm:ana:bo"}), ("history", {"room": "dm:ana:bo"}),
                           ("read", {"room": "dm:ana:bo", "message_id": sent["id"]})]:
        assert eve.call(event, payload)["error"]["code"] == "forbidden"
    time.sleep(0.5)
    assert eve.events["message"] == []


def test_typing_reaches_other_replicas_and_stops_on_disconnect(connect):
    typist, watcher = connect(0, "typist"), connect(2, "watcher")
    for client in (typist, watcher):
        client.call("join", {"room": "typing"})
    assert typist.call("typing", {"room": "typing", "typing": True}) == {"ok": True}
    started = watcher.wait_for("typing", lambda e: e["typing"])
    assert started["user"]["id"] == "typist" and started["expires_in"] > 0
    typist.close()
    watcher.wait_for("typing", lambda e: not e["typing"] and e["user"]["id"] == "typist")
    assert typist.events["typing"] == []


def test_receipts_and_unread_across_replicas(connect):
    ana, bo = connect(0, "ana"), connect(1, "bo")
    for client in (ana, bo):
        client.call("join", {"room": "receipts"})
    ids = [ana.call("send", {"room": "receipts", "body": f"m{n}"})["message"]["id"] for n in range(3)]
    assert bo.call("read", {"room": "receipts", "message_id": ids[1]})["message_id"] == ids[1]
    seen = ana.wait_for("read", lambda e: e["user"]["id"] == "bo")
    assert seen == {"room": "receipts", "user": {"id": "bo", "name": "bo"}, "message_id": ids[1]}
    assert bo.call("read", {"room": "receipts", "message_id": ids[0]})["message_id"] == ids[1]
    later = connect(2, "bo")
    assert later.call("join", {"room": "receipts"})["unread"] == 1


def test_presence_across_replicas_and_after_sigkill(cluster, connect):
    watcher = connect(0, "watcher")
    watcher.call("join", {"room": "presence"})
    doomed = connect(2, "doomed")
    ack = doomed.call("join", {"room": "presence"})
    doomed.call("typing", {"room": "presence", "typing": True})
    assert {u["id"] for u in ack["online"]} == {"watcher", "doomed"}
    watcher.wait_for("presence", lambda e: e["user"]["id"] == "doomed" and e["online"])
    cluster.replicas[2].kill()
    killed = time.monotonic()
    watcher.wait_for("presence", lambda e: e["user"]["id"] == "doomed" and not e["online"],
                     timeout=cluster.instance_ttl + 6)
    print(f"\nusers of a SIGKILLed replica reported offline after {time.monotonic() - killed:.1f}s")
    # Their typing indicator ends too, though the dead replica never sent typing:false.
    watcher.wait_for("typing", lambda e: e["user"]["id"] == "doomed" and not e["typing"])
    assert [u["id"] for u in watcher.call("join", {"room": "presence"})["online"]] == ["watcher"]


PNG = (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f"
       b"\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00\x00"
       b"\x00IEND\xaeB`\x82")


def test_typed_messages_across_replicas(cluster, connect):
    import requests
    sender, receiver = connect(0, "ana"), connect(2, "bo")
    for client in (sender, receiver):
        client.call("join", {"room": "typed"})
    auth = {"Authorization": "Bearer " + cluster.token("ana")}
    image = requests.post(cluster.replicas[0].url + "/api/uploads", headers=auth, timeout=10,
                          files={"file": ("photo.html", PNG, "text/html")}, data={"room": "typed"})
    assert image.status_code == 201, image.text
    doc = requests.post(cluster.replicas[1].url + "/api/uploads", headers=auth, timeout=10,
                        files={"file": ("notes.txt", b"meeting at noon\n", "application/octet-stream")},
                        data={"room": "typed"})
    sent = [sender.call("send", {"room": "typed", "type": "image", "body": image.json()}),
            sender.call("send", {"room": "typed", "type": "file", "body": doc.json()}),
            sender.call("send", {"room": "typed", "type": "location",
                                 "body": {"lat": 48.8584, "lng": 2.2945, "label": "Eiffel Tower"}})]
    assert all(ack["ok"] for ack in sent), sent
    for ack in sent:
        assert receiver.wait_for("message", lambda m, i=ack["message"]["id"]: m["id"] == i) == ack["message"]
    assert image.json()["mime"] == "image/png" and image.json()["name"].endswith(".png")
    # Any replica serves what another stored (shared directory), with safe headers.
    served = requests.get(cluster.replicas[2].url + image.json()["url"], timeout=10)
    assert served.content == PNG and served.headers["Content-Type"] == "image/png"
    assert served.headers["X-Content-Type-Options"] == "nosniff"
    text = requests.get(cluster.replicas[0].url + doc.json()["url"], timeout=10)
    assert text.headers["Content-Disposition"].startswith("attachment")
    bad = sender.call("send", {"room": "typed", "type": "location", "body": {"lat": 91, "lng": 0}})
    assert bad["error"]["code"] == "invalid_body"
    forged = sender.call("send", {"room": "typed", "type": "image", "body": doc.json()})
    assert forged["error"]["code"] == "invalid_body"


def test_a_dm_upload_is_fetched_by_its_members_only_on_every_replica(cluster, connect):
    import requests
    ana = {"Authorization": "Bearer " + cluster.token("ana")}
    shared = requests.post(cluster.replicas[0].url + "/api/uploads", headers=ana, timeout=10,
                           files={"file": ("plan.png", PNG)}, data={"room": "dm:ana:bo"})
    assert shared.status_code == 201, shared.text
    url = shared.json()["url"]
    for replica in cluster.replicas:
        assert requests.get(replica.url + url, timeout=10).status_code == 401
        outsider = requests.get(replica.url + url, timeout=10,
                                headers={"Authorization": "Bearer " + cluster.token("cy")})
        assert outsider.status_code == 403
        member = requests.get(replica.url + url, timeout=10,
                              headers={"Authorization": "Bearer " + cluster.token("bo")})
        assert member.status_code == 200 and member.content == PNG
    sender = connect(1, "ana")
    assert sender.call("send", {"to": "bo", "type": "image", "body": shared.json()})["ok"]
    assert sender.call("join", {"room": "typed-public"})["ok"]
    leaked = sender.call("send", {"room": "typed-public", "type": "image", "body": shared.json()})
    assert leaked["error"]["code"] == "invalid_body"


def test_the_upload_quota_is_shared_by_the_replicas(cluster):
    import requests
    auth = {"Authorization": "Bearer " + cluster.token("quota-user")}

    def upload(replica):
        return requests.post(cluster.replicas[replica].url + "/api/uploads", headers=auth, timeout=10,
                             files={"file": ("n.txt", b"note\n")}, data={"room": "quota"})
    answers = [upload(n % 3).status_code for n in range(50)]  # REALTIME_UPLOAD_QUOTA: 50/hour
    assert answers == [201] * 50
    for replica in range(3):
        refused = upload(replica)
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
        assert refused.json()["error"]["retry_after"] > 0

