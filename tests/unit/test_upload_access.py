"""Uploads bound to their room: who may fetch them, per-user quotas, retention, re-posting."""
import hashlib
import io
import os
import threading
import time

import pytest
from test_uploads import GIF, PDF, files_in, png

from realtime.services.uploads import UploadService

LIMIT = 4096


@pytest.fixture
def app(app_factory_with, tmp_path):
    """A replica with small uploads, a count quota of 3 an hour and no byte quota."""
    return app_factory_with(UPLOAD_DIR=str(tmp_path / "uploads"), UPLOAD_MAX_BYTES=LIMIT,
                            UPLOAD_QUOTA="3/hour", UPLOAD_QUOTA_BYTES="")


@pytest.fixture
def upload_dir(app):
    """The directory the app stores uploads in."""
    return app.extensions["realtime.uploads"].directory


def bearer(token, name, **claims):
    """The Authorization header of a user (Ana and Ops may use private-ops)."""
    if name in ("Ana", "Ops"):
        claims.setdefault("rooms", ["private-ops"])
    return {"Authorization": f"Bearer {token(name, **claims)}"}


@pytest.fixture
def post(client, token):
    """POST a file to /api/uploads for a room, as a user."""
    def send(content=PDF, room="lobby", user="Ana", filename="report.pdf"):
        return client.post("/api/uploads", headers=bearer(token, user), content_type="multipart/form-data",
                           data={"file": (io.BytesIO(content), filename), "room": room})
    return send


@pytest.mark.parametrize("room", ["dm:ana:bea", "private-ops"])
def test_a_confined_upload_needs_a_token_of_a_member(client, token, post, room):
    uploaded = post(png(), room=room, filename="secret.png").get_json()
    anonymous = client.get(uploaded["url"])
    assert anonymous.status_code == 401 and anonymous.get_json()["error"]["code"] == "auth_required"
    assert client.get(uploaded["url"], headers={"Authorization": "Bearer nope"}).status_code == 401
    outsider = client.get(uploaded["url"], headers=bearer(token, "Cy"))
    assert outsider.status_code == 403 and outsider.get_json()["error"]["code"] == "forbidden"
    member = "Bea" if room.startswith("dm:") else "Ana"
    got = client.get(uploaded["url"], headers=bearer(token, member))
    assert got.status_code == 200 and got.data == png()
    assert got.cache_control.private and not got.cache_control.public
    assert "Authorization" in got.headers["Vary"]


def test_a_private_room_upload_is_served_to_an_invited_user_and_a_server(app, client, token, post):
    uploaded = post(room="private-ops").get_json()
    app.extensions["realtime"].store.invite("private-ops", "bea")
    assert client.get(uploaded["url"], headers=bearer(token, "Bea")).status_code == 200
    service = client.get(uploaded["url"], headers=bearer(token, "Srv", roles=["service"]))
    assert service.status_code == 200


def test_a_public_room_upload_is_a_capability_url(client, post):
    uploaded = post(GIF, filename="dot.gif").get_json()
    got = client.get(uploaded["url"])
    assert got.status_code == 200 and got.data == GIF and got.cache_control.public


@pytest.mark.parametrize("room, code, status", [
    ("dm:bea:cy", "forbidden", 403), ("private-ops", "forbidden", 403),
    ("no spaces", "invalid_room", 400), ("", "invalid_room", 400)])
def test_an_upload_for_a_room_the_user_may_not_post_to_stores_nothing(post, upload_dir, room, code, status):
    response = post(room=room, user="Ana" if room != "private-ops" else "Cy")
    assert response.status_code == status and response.get_json()["error"]["code"] == code
    assert files_in(upload_dir) == []


def test_a_legacy_upload_is_served_to_authenticated_users_only(client, token, upload_dir):
    legacy = hashlib.sha256(PDF).hexdigest() + ".pdf"
    upload_dir.mkdir(parents=True, exist_ok=True)
    (upload_dir / legacy).write_bytes(PDF)
    assert client.get("/uploads/" + legacy).status_code == 401
    got = client.get("/uploads/" + legacy, headers=bearer(token, "Cy"))
    assert got.status_code == 200 and got.data == PDF


def test_the_count_quota_refuses_the_next_upload_and_stores_nothing(post, upload_dir):
    for _ in range(3):
        assert post().status_code == 201
    stored = files_in(upload_dir)
    refused = post()
    assert refused.status_code == 429
    error = refused.get_json()["error"]
    assert error["code"] == "rate_limited" and 0 < error["retry_after"] <= 7200
    assert "Retry-After" in refused.headers
    assert files_in(upload_dir) == stored
    assert post(user="Bea").status_code == 201  # per user


def test_the_byte_quota_refuses_an_upload_over_the_total_and_stores_nothing(app_factory_with, tmp_path, token):
    quota = LIMIT + 64 * 1024 + 3000  # the smallest allowed: one largest upload and its framing
    app = app_factory_with(UPLOAD_DIR=str(tmp_path / "bytes"), UPLOAD_MAX_BYTES=LIMIT, UPLOAD_QUOTA="",
                           UPLOAD_QUOTA_BYTES=f"{quota}/hour")
    client, directory = app.test_client(), tmp_path / "bytes"

    def send(size):
        return client.post("/api/uploads", headers=bearer(token, "Ana"), content_type="multipart/form-data",
                           data={"file": (io.BytesIO(b"a" * size), "a.txt"), "room": "lobby"})
    sent = 0
    while True:
        response = send(LIMIT)
        if response.status_code != 201:
            break
        sent += 1
    assert sent >= 1 and response.status_code == 429
    assert response.get_json()["error"]["code"] == "rate_limited"
    assert len(files_in(directory)) == 2 * sent
    assert send(1).status_code in (201, 429)  # what is left may still take a small file


def test_a_byte_quota_below_one_largest_upload_refuses_to_start(app_factory_with, tmp_path):
    with pytest.raises(RuntimeError, match="UPLOAD_QUOTA_BYTES"):
        app_factory_with(UPLOAD_MAX_BYTES=LIMIT, UPLOAD_QUOTA_BYTES=f"{LIMIT}/hour")


def test_retention_shorter_than_history_refuses_to_start(app_factory_with):
    with pytest.raises(RuntimeError, match="UPLOAD_RETENTION"):
        app_factory_with(UPLOAD_RETENTION=3600, HISTORY_MAX_AGE=3600)


def aged(service, meta, seconds):
    """Make a stored upload (and its sidecar) look `seconds` old."""
    then = time.time() - seconds
    for path in (service.path(meta["file"]), service.sidecar(meta["file"])):
        os.utime(path, (then, then))


def test_retention_deletes_old_uploads_and_keeps_new_ones(tmp_path):
    service = UploadService(tmp_path, LIMIT, retention=1000)
    old = service.save(io.BytesIO(PDF), "old.pdf", "lobby", "ana")
    new = service.save(io.BytesIO(GIF), "new.gif", "lobby", "ana")
    aged(service, old, 1001)
    (tmp_path / ".incoming-crashed").write_bytes(b"x")
    os.utime(tmp_path / ".incoming-crashed", (time.time() - 7200,) * 2)
    (tmp_path / ".incoming-live").write_bytes(b"x")
    assert service.expire() == 1
    assert service.lookup(old["file"]) is None and service.lookup(new["file"])["room"] == "lobby"
    assert files_in(tmp_path) == sorted([".incoming-live", new["file"], new["file"] + ".json"])
    assert service.expire() == 0


def test_retention_off_keeps_everything(tmp_path):
    service = UploadService(tmp_path, LIMIT, retention=0)
    meta = service.save(io.BytesIO(PDF), "old.pdf", "lobby", "ana")
    aged(service, meta, 10 ** 8)
    assert service.expire() == 0 and service.lookup(meta["file"]) is not None


def test_replicas_expiring_at_once_delete_each_upload_once(tmp_path):
    writer = UploadService(tmp_path, LIMIT, retention=1000)
    metas = [writer.save(io.BytesIO(PDF), f"{n}.pdf", "lobby", "ana") for n in range(40)]
    for meta in metas:
        aged(writer, meta, 2000)
    replicas = [UploadService(tmp_path, LIMIT, retention=1000) for _ in range(4)]
    counts, start = [], threading.Barrier(len(replicas))

    def run(replica):
        start.wait()
        counts.append(replica.expire())
    threads = [threading.Thread(target=run, args=(replica,)) for replica in replicas]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(counts) == len(metas) and files_in(tmp_path) == []


def test_an_orphaned_sidecar_is_swept_once_old(tmp_path):
    service = UploadService(tmp_path, LIMIT, retention=1000)
    meta = service.save(io.BytesIO(PDF), "a.pdf", "lobby", "ana")
    service.path(meta["file"]).unlink()
    assert service.expire() == 0 and files_in(tmp_path) == [meta["file"] + ".json"]
    aged_sidecar = time.time() - 2000
    os.utime(service.sidecar(meta["file"]), (aged_sidecar, aged_sidecar))
    service.expire()
    assert files_in(tmp_path) == []


def call(sio, event, payload=None):
    """Emit an event and return its ack."""
    return sio.emit(event, payload, namespace="/chat", callback=True)


def test_a_message_may_not_show_another_rooms_upload(chat, post):
    secret = post(png(), room="private-ops", filename="plan.png").get_json()
    mine = post(png(), room="lobby", filename="cat.png").get_json()
    ana = chat("Ana")
    assert call(ana, "join", {"room": "lobby"})["ok"]
    refused = call(ana, "send", {"room": "lobby", "type": "image", "body": secret})
    assert not refused["ok"] and refused["error"]["code"] == "invalid_body"
    dm = call(ana, "send", {"to": "bea", "type": "image", "body": mine})
    assert not dm["ok"] and dm["error"]["code"] == "invalid_body"
    sent = call(ana, "send", {"room": "lobby", "type": "image", "body": mine})
    assert sent["ok"] and sent["message"]["body"] == mine


def test_a_dm_upload_can_be_sent_in_that_dm(chat, post, client, token):
    shared = post(PDF, room="dm:ana:bea").get_json()
    ana = chat("Ana")
    sent = call(ana, "send", {"to": "bea", "type": "file", "body": shared})
    assert sent["ok"] and sent["message"]["room"] == "dm:ana:bea"
    assert client.get(shared["url"], headers=bearer(token, "Bea")).status_code == 200
