"""Uploads: type sniffed from content, size limits, random room-bound names, safe serving."""
import hashlib
import io
import json
import struct
import zipfile
import zlib
from pathlib import Path

import pytest
from flask_jwt_extended import decode_token
from hypothesis import given
from hypothesis import strategies as st

from realtime.services.uploads import TYPES, UploadService, display_name

LIMIT = 4096


def png() -> bytes:
    """A real 1x1 PNG."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    header = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x00"))
            + chunk(b"IEND", b""))


def zip_archive() -> bytes:
    """A real zip archive with one member."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("readme.txt", "hello")
    return buffer.getvalue()


GIF = (b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
       b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;")
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00" + bytes(range(64)) + b"\xff\xd9"
WEBP = b"RIFF" + struct.pack("<I", 30) + b"WEBPVP8L" + struct.pack("<I", 10) + b"\x2f" + bytes(9) + b"\x00" * 6
PDF = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
TEXT = "h\u00e9llo w\u00f6rld \u2603\n\tindented\r\nform\x0cfeed\n".encode()

# (content, detected type); each is uploaded under a name and a Content-Type that lie.
SAMPLES = {"image/png": png(), "image/jpeg": JPEG, "image/gif": GIF, "image/webp": WEBP,
           "application/pdf": PDF, "application/zip": zip_archive(), "text/plain": TEXT}

REFUSED = {
    "html": b"<!DOCTYPE html><html><script>alert(1)</script></html>",
    "html after whitespace and a BOM": b"\xef\xbb\xbf \r\n\t<html><body onload=alert(1)>",
    "html fragment": b"<script>alert(document.cookie)</script>",
    "html comment": b"<!-- hi --><p>x</p>",
    "svg": b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>',
    "svg with xml declaration": b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"/>',
    "elf": b"\x7fELF\x02\x01\x01\x00" + bytes(56),
    "exe": b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00" + bytes(48) + b"PE\x00\x00",
    "utf-16 text": "hello".encode("utf-16"),
    "text with a terminal escape": b"hello \x1b[31mred\x1b[0m",
    "text with a NUL": b"hello\x00world",
    "invalid utf-8": b"caf\xe9 au lait",
    "gzip": b"\x1f\x8b\x08\x00" + bytes(16),
}


@pytest.fixture
def app(app_factory_with, tmp_path):
    """A replica with uploads on a temp directory."""
    return app_factory_with(UPLOAD_DIR=str(tmp_path / "uploads"), UPLOAD_MAX_BYTES=LIMIT,
                            UPLOAD_QUOTA_BYTES="")


@pytest.fixture
def upload_dir(app):
    """The directory the app stores uploads in."""
    return app.extensions["realtime.uploads"].directory


@pytest.fixture
def post(client, token):
    """POST a file to /api/uploads as Ana."""
    def send(content: bytes, filename="upload.bin", content_type="application/octet-stream", room="lobby",
             **kwargs):
        headers = kwargs.pop("headers", {"Authorization": f"Bearer {token('Ana')}"})
        data = kwargs.pop("data", {"file": (io.BytesIO(content), filename, content_type), "room": room})
        return client.post("/api/uploads", data=data, headers=headers, content_type="multipart/form-data")
    return send


def files_in(directory: Path) -> list[str]:
    """Every entry of the upload directory (temp files included), sorted."""
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@pytest.mark.parametrize("mime", sorted(SAMPLES))
def test_each_allowed_type_is_detected_from_content_not_name_or_header(post, upload_dir, mime):
    content = SAMPLES[mime]
    response = post(content, filename="invoice.html", content_type="text/html")
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    extension = TYPES[mime][0]
    assert body["mime"] == mime and body["size"] == len(content)
    assert body["name"] == f"invoice.html.{extension}"
    assert set(body) == {"url", "name", "mime", "size"}
    stored = body["url"].removeprefix("/uploads/")
    assert stored.endswith("." + extension) and len(stored.split(".")[0]) == 52
    assert (upload_dir / stored).read_bytes() == content
    sidecar = json.loads((upload_dir / f"{stored}.json").read_text())
    assert sidecar["mime"] == mime and sidecar["size"] == len(content)
    assert (sidecar["room"], sidecar["uploader"]) == ("lobby", "ana")


@pytest.mark.parametrize("kind", sorted(REFUSED))
def test_disallowed_content_is_refused_whatever_it_claims(post, upload_dir, kind):
    response = post(REFUSED[kind], filename="photo.png", content_type="image/png")
    assert response.status_code == 415
    assert response.get_json()["error"]["code"] == "unsupported_media_type"
    assert files_in(upload_dir) == []


def test_a_file_of_exactly_the_limit_is_accepted(post):
    assert post(b"a" * LIMIT).status_code == 201


@pytest.mark.parametrize("size", [LIMIT + 1, 200 * 1024])  # the service's check, then the request's
def test_too_large_is_refused_with_json_and_nothing_is_written(post, upload_dir, size):
    response = post(b"a" * size, filename="big.txt", content_type="text/plain")
    assert response.status_code == 413
    assert response.get_json()["error"]["code"] == "too_large"
    assert files_in(upload_dir) == []


def test_upload_may_exceed_the_app_wide_request_limit_but_other_routes_may_not(app_factory_with, tmp_path,
                                                                                 token):
    app = app_factory_with(UPLOAD_DIR=str(tmp_path / "big"))
    client = app.test_client()
    content = b"x" * 2_000_000  # twice MAX_HTTP_BUFFER_SIZE, below the 10 MB default
    response = client.post("/api/uploads", data={"file": (io.BytesIO(content), "big.txt"), "room": "lobby"},
                           headers={"Authorization": f"Bearer {token('Ana')}"})
    assert response.status_code == 201 and response.get_json()["size"] == len(content)
    other = client.post("/api/auth/token", data=content, content_type="application/json")
    assert other.status_code == 413


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer not-a-jwt"}, {"Authorization": "Basic x"}])
def test_upload_needs_a_valid_token(post, upload_dir, headers):
    response = post(PDF, headers=headers)
    assert response.status_code == 401
    assert response.get_json()["error"]["code"] in ("auth_required", "token_invalid")
    assert files_in(upload_dir) == []


def test_revoked_token_cannot_upload(app, post, token):
    jwt = token("Ana")
    with app.app_context():
        jti = decode_token(jwt)["jti"]
    app.extensions["realtime"].store.revoke_token(jti, 60)
    response = post(PDF, headers={"Authorization": f"Bearer {jwt}"})
    assert response.status_code == 401 and response.get_json()["error"]["code"] == "token_invalid"


@pytest.mark.parametrize("text", [b"<3 you", b"a < b and b > c", b"Ana: <b>hi</b>", b"\xef\xbb\xbfBOM text",
                                  b"  indented\n", "\u4f60\u597d\U0001f600".encode()])
def test_plain_text_that_is_not_markup_is_accepted(post, text):
    response = post(text, filename="notes.md")
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["mime"] == "text/plain" and response.get_json()["name"] == "notes.md.txt"


@pytest.mark.parametrize("data", [{}, {"room": "lobby"}, {"other": (io.BytesIO(PDF), "a.pdf"), "room": "lobby"},
                                  {"file": "not a file part", "room": "lobby"}, {"file": (io.BytesIO(PDF), "a.pdf")}])
def test_missing_file_field_is_invalid_payload(post, data):
    response = post(b"", data=data)
    assert response.status_code == 400
    assert response.get_json()["error"]["code"] == "invalid_payload"


def test_empty_file_is_invalid_payload(post, upload_dir):
    response = post(b"", filename="empty.txt")
    assert response.status_code == 400 and response.get_json()["error"]["code"] == "invalid_payload"
    assert files_in(upload_dir) == []


def test_the_name_is_not_the_content_hash_and_differs_per_upload_and_room(post, upload_dir):
    first = post(PDF, filename="a.pdf").get_json()
    again = post(PDF, filename="b.pdf").get_json()
    other = post(PDF, filename="a.pdf", room="kitchen").get_json()
    names = {u["url"].removeprefix("/uploads/") for u in (first, again, other)}
    assert len(names) == 3
    assert hashlib.sha256(PDF).hexdigest() + ".pdf" not in names
    assert all(hashlib.sha256(PDF).hexdigest() not in name for name in names)
    assert files_in(upload_dir) == sorted(names | {f"{n}.json" for n in names})


@pytest.mark.parametrize("mime, disposition", [
    ("application/pdf", "attachment"), ("text/plain", "attachment"), ("application/zip", "attachment"),
    ("image/png", "inline"), ("image/jpeg", "inline"), ("image/gif", "inline"), ("image/webp", "inline")])
def test_served_with_stored_type_and_defensive_headers(client, post, mime, disposition):
    uploaded = post(SAMPLES[mime], filename="evil.html", content_type="text/html").get_json()
    response = client.get(uploaded["url"])
    assert response.status_code == 200
    assert response.data == SAMPLES[mime]
    assert response.mimetype == mime
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Security-Policy"] == "sandbox; default-src 'none'"
    assert response.headers["Content-Disposition"] == f"{disposition}; filename={uploaded['name']}"
    assert uploaded["name"].endswith("." + TYPES[mime][0])
    assert response.cache_control.max_age >= 30 * 24 * 3600 and response.cache_control.immutable


def test_non_ascii_download_name_is_encoded(client, post):
    uploaded = post(PDF, filename="r\u00e9sum\u00e9.pdf").get_json()
    assert uploaded["name"] == "r\u00e9sum\u00e9.pdf"
    disposition = client.get(uploaded["url"]).headers["Content-Disposition"]
    assert disposition == "attachment; filename=resume.pdf; filename*=UTF-8''r%C3%A9sum%C3%A9.pdf"


def test_text_is_served_as_utf8(client, post):
    response = client.get(post(TEXT).get_json()["url"])
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_traversal_and_unknown_names_are_not_found(client, post):
    stored = post(PDF).get_json()["url"].removeprefix("/uploads/")
    digest = stored.split(".")[0]
    for name in ["..", "...", "..%2F..%2Fsetup.cfg", "%2e%2e%2fsetup.cfg", "..%5C..%5Csetup.cfg",
                 f"{stored}.json", f"{digest}.PDF", f"{digest.upper()}.pdf", f"{digest}.html",
                 f"{digest}.png", f"{digest}.pdf%00.png", "0" * 64 + ".pdf", "a" * 52 + ".pdf",
                 hashlib.sha256(PDF).hexdigest() + ".pdf", ".incoming-x"]:
        response = client.get(f"/uploads/{name}")
        assert response.status_code == 404, name
        assert response.get_json()["error"]["code"] == "not_found", name


class Endless(io.RawIOBase):
    """A stream that never ends and counts what was read from it."""

    def __init__(self):
        self.read_bytes = 0

    def readable(self):
        return True

    def readinto(self, buffer):
        buffer[:] = b"a" * len(buffer)
        self.read_bytes += len(buffer)
        return len(buffer)


def test_save_reads_at_most_one_byte_past_the_limit(tmp_path):
    stream = Endless()
    with pytest.raises(Exception) as refused:
        UploadService(tmp_path, 100_000).save(stream, "endless.txt", "lobby", "ana")
    assert refused.value.code == "too_large" and refused.value.status == 413
    assert stream.read_bytes == 100_001
    assert files_in(tmp_path) == []


def known(meta):
    """What lookup answers for an upload save() stored: its meta without the uploader, with its time."""
    return {key: value for key, value in meta.items() if key != "uploader"}


def test_lookup_and_path_accept_only_stored_names(tmp_path):
    service = UploadService(tmp_path, LIMIT)
    meta = service.save(io.BytesIO(GIF), "dot.gif", "lobby", "ana")
    found = service.lookup(meta["file"])
    assert {k: v for k, v in found.items() if k != "stored_at"} == known(meta)
    for name in ["../" + meta["file"], meta["file"] + ".json", "/etc/passwd", "", None, 42]:
        assert service.lookup(name) is None
    with pytest.raises(ValueError):
        service.path("../etc/passwd")


def test_an_upload_whose_room_cannot_be_read_is_served_to_nobody(tmp_path):
    service = UploadService(tmp_path, LIMIT)
    meta = service.save(io.BytesIO(PDF), "report.pdf", "private-x", "ana")
    service.sidecar(meta["file"]).unlink()
    assert service.lookup(meta["file"]) is None


def test_a_legacy_upload_survives_a_missing_sidecar(tmp_path):
    service = UploadService(tmp_path, LIMIT)
    legacy = hashlib.sha256(PDF).hexdigest() + ".pdf"
    (tmp_path / legacy).write_bytes(PDF)
    found = service.lookup(legacy)
    assert (found["name"], found["room"], found["size"]) == (legacy, None, len(PDF))


def test_another_replica_on_the_same_directory_serves_it(tmp_path):
    meta = UploadService(tmp_path, LIMIT).save(io.BytesIO(JPEG), "me.jpeg", "lobby", "ana")
    found = UploadService(tmp_path, LIMIT).lookup(meta["file"])
    assert {k: v for k, v in found.items() if k != "stored_at"} == known(meta)


@pytest.mark.parametrize("raw, mime, expected", [
    ("../../etc/passwd", "text/plain", "passwd.txt"),
    ("C:\\Users\\ana\\photo.png", "image/png", "photo.png"),
    ("evil.html", "text/plain", "evil.html.txt"),
    ("photo.JPEG", "image/jpeg", "photo.JPEG"),
    ("photo.jpg", "image/png", "photo.jpg.png"),
    ("a\x00b\u202egnp.exe", "image/png", "abgnp.exe.png"),
    ("line\nbreak.pdf", "application/pdf", "linebreak.pdf"),
    ("", "application/pdf", "file.pdf"),
    (None, "application/zip", "file.zip"),
    ("..", "text/plain", "file.txt"),
    (" .hidden.txt. ", "text/plain", "hidden.txt"),
    ("x" * 300 + ".pdf", "application/pdf", "x" * 196 + ".pdf"),
])
def test_display_name_is_sanitized(raw, mime, expected):
    assert display_name(raw, mime) == expected


@given(st.text(max_size=400), st.sampled_from(sorted(TYPES)))
def test_display_name_is_stable_short_and_plain(raw, mime):
    name = display_name(raw, mime)
    assert display_name(name, mime) == name  # message bodies are checked against this
    assert 0 < len(name) <= 200 and "/" not in name and "\\" not in name
    assert name.rpartition(".")[2].lower() in TYPES[mime]
    assert all(ord(c) >= 32 and not 127 <= ord(c) < 160 for c in name)
