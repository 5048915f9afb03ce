"""Message body schemas: text, image, file and location."""
import hashlib
import io
import json
import math
import time
from functools import partial

import pytest
from test_uploads import GIF, PDF, png

from realtime.errors import ValidationError
from realtime.services.bodies import schemas
from realtime.services.uploads import UploadService, attachment

MAX_CHARS = 50


@pytest.fixture
def uploads(tmp_path):
    """An upload store on a temp directory."""
    return UploadService(tmp_path / "uploads", 4096)


ROOM = "lobby"


@pytest.fixture
def check(uploads):
    """The schemas the app would use, for messages to ROOM."""
    return {kind: partial(schema, room=ROOM) for kind, schema in schemas(MAX_CHARS, uploads).items()}


@pytest.fixture
def image(uploads):
    """The body of an uploaded PNG, as POST /api/uploads answers it."""
    return attachment(uploads.save(io.BytesIO(png()), "cat.png", ROOM, "ana"))


@pytest.fixture
def document(uploads):
    """The body of an uploaded PDF."""
    return attachment(uploads.save(io.BytesIO(PDF), "report.pdf", ROOM, "ana"))


def refused(schema, body) -> str:
    """The message of an invalid_body refusal."""
    with pytest.raises(ValidationError) as error:
        schema(body)
    assert error.value.code == "invalid_body" and error.value.status == 400
    return error.value.message


def test_every_message_type_has_a_schema(check):
    assert sorted(check) == ["file", "image", "location", "text"]


def test_text_reuses_the_text_rules(check):
    assert check["text"]("hi") == "hi"
    refused(check["text"], "   ")
    refused(check["text"], {"text": "hi"})
    with pytest.raises(ValidationError) as error:
        check["text"]("x" * (MAX_CHARS + 1))
    assert error.value.code == "body_too_long"


def test_image_body_from_an_upload_is_accepted(check, image):
    assert check["image"](image) == image
    assert list(check["image"](image)) == ["url", "name", "mime", "size"]


def test_file_accepts_any_upload_even_an_image(check, image, document):
    assert check["file"](document) == document
    assert check["file"](image) == image


def test_image_must_point_at_an_image(check, document):
    assert "image" in refused(check["image"], document)


def test_another_image_type_is_still_an_image(check, uploads):
    gif = attachment(uploads.save(io.BytesIO(GIF), "dot.gif", ROOM, "ana"))
    assert check["image"](gif)["mime"] == "image/gif"


def changed(**fields):
    """A transformation of a valid body: `None` removes a field."""
    def apply(body):
        body = {**body, **fields}
        return {key: value for key, value in body.items() if value is not None}
    return apply


@pytest.mark.parametrize("kind", ["image", "file"])
@pytest.mark.parametrize("transform, field", [
    (lambda body: "/uploads/x.png", "object"),
    (lambda body: [body], "object"),
    (lambda body: None, "object"),
    (changed(url=None), "url"),
    (changed(name=None), "name"),
    (changed(mime=None), "mime"),
    (changed(size=None), "size"),
    (changed(extra=1), "unknown"),
    (changed(thumbnail="/uploads/x"), "unknown"),
    (changed(url="/uploads/" + "0" * 64 + ".png"), "url"),            # no such upload
    (changed(url="https://evil.example/uploads/a.png"), "url"),        # not one of ours
    (changed(url="/static/../uploads/x.png"), "url"),
    (lambda body: {**body, "url": body["url"] + ".json"}, "url"),      # the sidecar
    (lambda body: {**body, "url": body["url"].replace("/uploads/", "/uploads/../")}, "url"),
    (lambda body: {**body, "url": "/uploads/" + body["url"].rsplit("/", 1)[1].upper()}, "url"),
    (changed(url=42), "url"),
    (changed(mime="image/jpeg"), "mime"),
    (changed(mime="text/html"), "mime"),
    (lambda body: {**body, "size": body["size"] + 1}, "size"),
    (lambda body: {**body, "size": float(body["size"])}, "size"),
    (lambda body: {**body, "size": str(body["size"])}, "size"),
    (changed(size=True), "size"),
    (changed(name="../../cat.png"), "name"),
    (changed(name="cat.html"), "name"),
    (changed(name="cat\n.png"), "name"),
    (changed(name="x" * 300 + ".png"), "name"),
    (changed(name=7), "name"),
])
def test_invalid_attachment_bodies(check, image, kind, transform, field):
    assert field in refused(check[kind], transform(image))


def test_an_upload_of_another_room_is_refused_like_no_upload(uploads):
    private = attachment(uploads.save(io.BytesIO(png()), "secret.png", "private-ops", "ana"))
    checks = schemas(MAX_CHARS, uploads)
    assert checks["image"](private, "private-ops") == private
    for room in ("lobby", "dm:ana:bea", "private-other"):
        assert "this room" in refused(partial(checks["image"], room=room), private)
        assert "this room" in refused(partial(checks["file"], room=room), private)


def test_a_legacy_upload_cannot_be_attached_again(uploads):
    legacy = hashlib.sha256(PDF).hexdigest() + ".pdf"
    uploads.directory.mkdir(parents=True, exist_ok=True)
    (uploads.directory / legacy).write_bytes(PDF)
    body = {"url": "/uploads/" + legacy, "name": "report.pdf", "mime": "application/pdf", "size": len(PDF)}
    assert "url" in refused(partial(schemas(MAX_CHARS, uploads)["file"], room=ROOM), body)


def test_an_upload_too_old_to_outlive_a_new_message_is_refused(tmp_path):
    uploads = UploadService(tmp_path, 4096, retention=100, attach_within=10)
    body = attachment(uploads.save(io.BytesIO(PDF), "report.pdf", ROOM, "ana"))
    check = partial(schemas(MAX_CHARS, uploads)["file"], room=ROOM)
    assert check(body) == body
    meta = uploads.recorded(body["url"].rsplit("/", 1)[1])
    meta["stored_at"] = int((time.time() - 11) * 1000)
    uploads.sidecar(body["url"].rsplit("/", 1)[1]).write_text(json.dumps(meta))
    assert "url" in refused(check, body)


def test_attachment_names_may_differ_from_the_stored_one(check, image):
    assert check["image"]({**image, "name": "kitten.PNG"})["name"] == "kitten.PNG"


@pytest.mark.parametrize("body, expected", [
    ({"lat": 48.8584, "lng": 2.2945}, {"lat": 48.8584, "lng": 2.2945}),
    ({"lat": -90, "lng": 180}, {"lat": -90.0, "lng": 180.0}),
    ({"lat": 90, "lng": -180, "accuracy": 0}, {"lat": 90.0, "lng": -180.0, "accuracy": 0.0}),
    ({"lat": 0, "lng": 0, "accuracy": 12.5, "label": "Caf\u00e9 \u2615"},
     {"lat": 0.0, "lng": 0.0, "accuracy": 12.5, "label": "Caf\u00e9 \u2615"}),
    ({"lat": 1, "lng": 2, "accuracy": None, "label": None}, {"lat": 1.0, "lng": 2.0}),
    ({"lat": 1, "lng": 2, "label": "x" * 200}, {"lat": 1.0, "lng": 2.0, "label": "x" * 200}),
    ({"lat": 1, "lng": 2, "accuracy": 10_000_000}, {"lat": 1.0, "lng": 2.0, "accuracy": 1e7}),
])
def test_valid_locations(check, body, expected):
    assert check["location"](body) == expected


@pytest.mark.parametrize("body, field", [
    ("48.8,2.29", "object"),
    ([48.8, 2.29], "object"),
    ({}, "lat"),
    ({"lng": 2}, "lat"),
    ({"lat": 2}, "lng"),
    ({"lat": None, "lng": 2}, "lat"),
    ({"lat": 90.0001, "lng": 0}, "lat"),
    ({"lat": -91, "lng": 0}, "lat"),
    ({"lat": 0, "lng": 180.5}, "lng"),
    ({"lat": 0, "lng": -181}, "lng"),
    ({"lat": math.nan, "lng": 0}, "lat"),
    ({"lat": 0, "lng": math.nan}, "lng"),
    ({"lat": math.inf, "lng": 0}, "lat"),
    ({"lat": 0, "lng": -math.inf}, "lng"),
    ({"lat": 10**400, "lng": 0}, "lat"),
    ({"lat": True, "lng": 0}, "lat"),
    ({"lat": 0, "lng": False}, "lng"),
    ({"lat": "48.8", "lng": 2}, "lat"),
    ({"lat": 0, "lng": 0, "accuracy": -1}, "accuracy"),
    ({"lat": 0, "lng": 0, "accuracy": 10_000_001}, "accuracy"),
    ({"lat": 0, "lng": 0, "accuracy": math.nan}, "accuracy"),
    ({"lat": 0, "lng": 0, "accuracy": True}, "accuracy"),
    ({"lat": 0, "lng": 0, "label": "x" * 201}, "label"),
    ({"lat": 0, "lng": 0, "label": "x" * 1_000_000}, "label"),
    ({"lat": 0, "lng": 0, "label": 5}, "label"),
    ({"lat": 0, "lng": 0, "label": "two\nlines"}, "label"),
    ({"lat": 0, "lng": 0, "altitude": 30}, "unknown"),
])
def test_invalid_locations(check, body, field):
    assert field in refused(check["location"], body)
