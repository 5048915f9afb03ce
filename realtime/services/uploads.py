"""Uploaded files: typed from their content, stored under random names with the room they were
sent to, on a directory replicas share; counted against per-user quotas and deleted when old."""
from __future__ import annotations

import base64
import codecs
import contextlib
import json
import os
import re
import secrets
import tempfile
import time
import unicodedata
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

from ..errors import AppError, ValidationError
from .ratelimit import RateLimiter, parse_rules

URL_PREFIX = "/uploads/"
NAME_MAX = 200
CHUNK = 64 * 1024
HEAD = 64
MULTIPART_OVERHEAD = 64 * 1024  # boundaries and part headers around the file itself
COUNT_RULE, BYTES_RULE = "upload", "upload_bytes"
# A crashed writer's temp file: no live upload takes this long to copy into place.
STALE_INCOMING = 3600.0

# The allow-list: detected type -> file extensions, the first one is the stored one. A display name
# may keep any of them; otherwise the stored one is appended, so a download never opens as another type.
TYPES: dict[str, tuple[str, ...]] = {
    "image/png": ("png",),
    "image/jpeg": ("jpg", "jpeg"),
    "image/gif": ("gif",),
    "image/webp": ("webp",),
    "application/pdf": ("pdf",),
    "application/zip": ("zip",),
    "text/plain": ("txt",),
}
MIME_BY_EXT = {extensions[0]: mime for mime, extensions in TYPES.items()}

# Magic bytes as (offset, bytes) pairs that must all match, checked in order before the text rule.
SIGNATURES: tuple[tuple[str, tuple[tuple[int, bytes], ...]], ...] = (
    ("image/png", ((0, b"\x89PNG\r\n\x1a\n"),)),
    ("image/jpeg", ((0, b"\xff\xd8\xff"),)),
    ("image/gif", ((0, b"GIF87a"),)),
    ("image/gif", ((0, b"GIF89a"),)),
    ("image/webp", ((0, b"RIFF"), (8, b"WEBP"))),
    ("application/pdf", ((0, b"%PDF-"),)),
    ("application/zip", ((0, b"PK\x03\x04"),)),
    ("application/zip", ((0, b"PK\x05\x06"),)),  # an empty archive
)

# Only the strict stored forms: no separators, no dots to climb with, never a sidecar or temp file.
# Names are 256 random bits in lower-case base32 (52 characters); 64 hex digits are the content
# hashes uploads were named by before v1.16 (legacy: no room recorded).
STORED_RE = re.compile(r"^(?:[a-z2-7]{52}|[0-9a-f]{64})\.(?:%s)\Z" % "|".join(MIME_BY_EXT))
LEGACY_RE = re.compile(r"^[0-9a-f]{64}\.")
# C0 controls but tab, LF, FF and CR; DEL; C1 controls.
BINARY_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")
LEADING_SPACE_RE = re.compile(r"^[\s\ufeff]+")
EDGE_RE = re.compile(r"^[\s.]+|[\s.]+$")
HIDDEN_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def too_large(max_bytes: int) -> AppError:
    """The upload exceeds the configured size."""
    return AppError("too_large", f"the file is larger than {max_bytes} bytes", 413)


def unsupported(detail: str) -> AppError:
    """The content is not of an allowed type, whatever its name or declared type say."""
    allowed = ", ".join(TYPES)
    return AppError("unsupported_media_type", f"{detail}; allowed types: {allowed}", 415)


def new_name() -> str:
    """A fresh stored-name stem: 256 random bits, so nothing about the content or room can be guessed."""
    return base64.b32encode(secrets.token_bytes(32)).decode().rstrip("=").lower()


def is_legacy(name: str) -> bool:
    """A pre-v1.16 content-hash name, stored without its room."""
    return bool(LEGACY_RE.match(name))


def url_of(stored: str) -> str:
    """The URL an upload is served at."""
    return URL_PREFIX + stored


def stored_name(url: Any) -> str | None:
    """The stored name in one of our upload URLs, or None if it is not one."""
    if not isinstance(url, str) or not url.startswith(URL_PREFIX):
        return None
    name = url[len(URL_PREFIX):]
    return name if STORED_RE.match(name) else None


def attachment(meta: dict[str, Any]) -> dict[str, Any]:
    """The body of an image/file message for an upload: exactly what POST /api/uploads answers."""
    return {"url": meta["url"], "name": meta["name"], "mime": meta["mime"], "size": meta["size"]}


def display_name(raw: Any, mime: str) -> str:
    """A name safe to show and save: basename, no control characters, the type's extension, <= 200 chars."""
    name = re.split(r"[/\\]", raw if isinstance(raw, str) else "")[-1]
    name = "".join(c for c in unicodedata.normalize("NFC", name)
                   if unicodedata.category(c) not in HIDDEN_CATEGORIES)
    # Leading dots would make a hidden file (or `..`); trailing dots and spaces vanish on Windows.
    name = EDGE_RE.sub("", name)
    base, _, extension = name.rpartition(".")
    if not (base and extension.lower() in TYPES[mime]):
        base, extension = name or "file", TYPES[mime][0]
    return f"{base[:NAME_MAX - len(extension) - 1].rstrip()}.{extension}"


class TextCheck:
    """Fed chunk by chunk: is the content UTF-8 text without binary controls, and does it open as markup?"""

    def __init__(self) -> None:
        self.decoder = codecs.getincrementaldecoder("utf-8")()
        self.text = True
        self.lead = ""

    def feed(self, chunk: bytes, final: bool = False) -> None:
        """Check the next chunk (multi-byte characters may straddle chunks)."""
        if not self.text:
            return
        try:
            decoded = self.decoder.decode(chunk, final)
        except UnicodeDecodeError:
            self.text = False
            return
        if BINARY_CONTROL_RE.search(decoded):
            self.text = False
        if len(self.lead) < 2:
            self.lead = LEADING_SPACE_RE.sub("", self.lead + decoded)[:2]

    @property
    def markup(self) -> bool:
        """Opens with a tag, declaration or comment: HTML, XML or SVG, which can carry script."""
        return self.lead[:1] == "<" and (self.lead[1:].isalpha() or self.lead[1:] in ("!", "?", "/"))


def sniff(head: bytes, text: TextCheck) -> str:
    """The allowed type of the content, from its first bytes; refuses everything else."""
    for mime, checks in SIGNATURES:
        if all(head[offset:offset + len(magic)] == magic for offset, magic in checks):
            return mime
    if not text.text:
        raise unsupported("the content is not of an allowed type")
    if text.markup:
        raise unsupported("the content looks like markup (HTML, XML or SVG)")
    return "text/plain"


def write_atomically(path: Path, data: bytes) -> None:
    """Write a small file so that readers see the old one or the whole new one, never a part."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        publish(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp)


def publish(temp: str, path: Path) -> None:
    """Move a complete temp file into place (readable by other replicas' users)."""
    os.chmod(temp, 0o644)
    os.replace(temp, path)


class UploadService:
    """Uploads on a directory every replica shares: each under a fresh random name, with a sidecar
    naming its room and uploader; files are written once and never replaced."""

    def __init__(self, directory: Path, max_bytes: int, limits: RateLimiter | None = None,
                 retention: float = 0, attach_within: float | None = None):
        self.directory = Path(directory)
        self.max_bytes = max_bytes
        self.limits = limits  # rules `upload` (count) and `upload_bytes` (bytes) per user
        self.retention = retention  # seconds an upload is kept; 0: forever
        self.attach_within = attach_within  # seconds after upload it may be attached; None: any time
        self.check_quotas()

    def check_quotas(self) -> None:
        """A byte quota must let the largest allowed upload through, or such files never could be."""
        limit = self.limits.quotas.get(BYTES_RULE) if self.limits else None
        if limit and limit[0] < self.max_bytes + MULTIPART_OVERHEAD:
            raise RuntimeError("REALTIME_UPLOAD_QUOTA_BYTES must allow at least REALTIME_UPLOAD_MAX_BYTES "
                               f"+ {MULTIPART_OVERHEAD} bytes of multipart framing per window")

    def retention_loop(self) -> tuple[float, Callable[[], int]]:
        """The background loop's (interval, step): often enough that files outlive retention by little."""
        return (max(1.0, min(3600.0, self.retention / 24)) if self.retention else 3600.0), self.expire

    def charge(self, user: str, declared: int | None) -> None:
        """Before the body is read: count one upload, and its declared bytes, or refuse (`rate_limited`)."""
        quotas = [q for q in self.quotas(user, declared) if q is not None]
        if quotas:
            self.limits.take(*quotas)

    def quotas(self, user: str, size: int | None) -> Iterator[Any]:
        """The user's count quota (when `size` is None: only it) and byte quota weighing `size`."""
        if self.limits is None:
            return
        if size is not None:
            size_quota = self.limits.quota(BYTES_RULE, user)
            yield replace(size_quota, weight=max(1, size)) if size_quota else None
        yield self.limits.quota(COUNT_RULE, user)

    def charge_bytes(self, user: str, size: int) -> None:
        """After a body without Content-Length was read, before it is stored: count its bytes."""
        quota = self.limits.quota(BYTES_RULE, user) if self.limits else None
        if quota is not None:
            self.limits.take(replace(quota, weight=max(1, size)))

    def save(self, stream: BinaryIO, filename: str | None, room: str, uploader: str,
             charged: bool = True) -> dict[str, Any]:
        """Store an upload as `<random>.<ext>` for `room`; its meta `{file, url, name, mime, size, room}`.

        `charged` False: the bytes were not counted up front (no Content-Length); they are counted
        here, after reading and before storing, so a refusal leaves nothing behind.
        """
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                size, head, text = self.receive(stream, out)
                mime = sniff(head, text)
                out.flush()
                os.fsync(out.fileno())  # a replica that reads it after a crash finds all of it
            if not charged:
                self.charge_bytes(uploader, size)
            stored = f"{new_name()}.{TYPES[mime][0]}"
            meta = {"file": stored, "url": url_of(stored), "name": display_name(filename, mime),
                    "mime": mime, "size": size, "room": room, "uploader": uploader}
            self.store(temp, meta)
            return meta
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def receive(self, stream: BinaryIO, out: BinaryIO) -> tuple[int, bytes, TextCheck]:
        """Copy at most max_bytes into `out`, checking as it goes: (size, head, text)."""
        text, head, size = TextCheck(), b"", 0
        # Asking for one byte past the limit tells "exactly the limit" from "too large".
        while chunk := stream.read(min(CHUNK, self.max_bytes + 1 - size)):
            size += len(chunk)
            if size > self.max_bytes:
                raise too_large(self.max_bytes)
            text.feed(chunk)
            out.write(chunk)
            head += chunk[:HEAD - len(head)]
        if size == 0:
            raise ValidationError("invalid_payload", "the file is empty")
        text.feed(b"", final=True)
        return size, head, text

    def store(self, temp: str, meta: dict[str, Any]) -> None:
        """Sidecar first, then the file: whoever sees the file can read its room and metadata."""
        sidecar = {"mime": meta["mime"], "size": meta["size"], "name": meta["name"], "room": meta["room"],
                   "uploader": meta["uploader"], "stored_at": int(time.time() * 1000)}
        write_atomically(self.sidecar(meta["file"]), json.dumps(sidecar).encode())
        publish(temp, self.path(meta["file"]))

    def lookup(self, name: Any) -> dict[str, Any] | None:
        """The meta of a stored upload (`room` None for a legacy one), or None for an unknown name."""
        if not isinstance(name, str) or not STORED_RE.match(name):
            return None
        try:
            stat = self.path(name).stat()
        except FileNotFoundError:
            return None
        recorded = self.recorded(name)
        if not (is_legacy(name) or isinstance(recorded.get("room"), str)):
            return None  # a room-bound upload whose room cannot be read is served to nobody
        # Type and size come from the file itself (its extension was derived from its content).
        mime = MIME_BY_EXT[name.rpartition(".")[2]]
        return {"file": name, "url": url_of(name), "name": display_name(recorded.get("name") or name, mime),
                "mime": mime, "size": stat.st_size, "room": recorded.get("room"),
                "stored_at": recorded.get("stored_at") or int(stat.st_mtime * 1000)}

    def recorded(self, name: str) -> dict[str, Any]:
        """The sidecar's fields, or none when it is missing or unreadable."""
        try:
            fields = json.loads(self.sidecar(name).read_text())
        except (OSError, ValueError):
            return {}
        return fields if isinstance(fields, dict) else {}

    def attachable(self, meta: dict[str, Any], room: str) -> bool:
        """May a message in `room` show this upload: uploaded for that room, recently enough that
        retention keeps it as long as history keeps the message."""
        if meta["room"] != room:
            return False
        return self.attach_within is None or meta["stored_at"] >= (time.time() - self.attach_within) * 1000

    def expire(self, now: float | None = None) -> int:
        """One retention pass: delete uploads older than `retention` (and crashed writers' temp
        files); safe while other replicas do the same. The number of uploads deleted."""
        if not self.retention:
            return 0
        now = time.time() if now is None else now
        deleted = 0
        try:
            entries = list(os.scandir(self.directory))
        except FileNotFoundError:
            return 0
        for entry in entries:
            deleted += self.expire_entry(entry, now)
        return deleted

    def expire_entry(self, entry: os.DirEntry, now: float) -> int:
        """Delete one directory entry if it is past its time; 1 when it was an upload."""
        name = entry.name
        try:
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except FileNotFoundError:
            return 0  # another replica got there first
        if STORED_RE.match(name):
            if age < self.retention:
                return 0
            # The file first, then its sidecar: a file is never seen without its room. Files are
            # never rewritten, so an old one cannot have become new between the look and the unlink.
            gone = remove(self.directory / name)
            remove(self.sidecar(name))
            return int(gone)
        stem = name.removesuffix(".json")
        if name.endswith(".json") and STORED_RE.match(stem) and age >= self.retention:
            if not (self.directory / stem).exists():  # a sidecar left by a pass that died midway
                remove(self.directory / name)
        elif name.startswith(".incoming-") and age >= STALE_INCOMING:
            remove(self.directory / name)
        return 0

    def path(self, name: str) -> Path:
        """Where a stored upload lives; only strict stored names are accepted."""
        if not STORED_RE.match(name):
            raise ValueError(f"not a stored upload name: {name!r}")
        return self.directory / name

    def sidecar(self, name: str) -> Path:
        """The metadata file beside a stored upload."""
        return self.path(name).with_name(name + ".json")


def remove(path: Path) -> bool:
    """Unlink a file another replica may be unlinking too; True if this call removed it."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        return False
    return True


def upload_service(settings: dict[str, Any], store: Any) -> UploadService:
    """The upload store the settings describe, counting quotas in the shared state store."""
    rules = parse_rules(f"{COUNT_RULE}={settings['UPLOAD_QUOTA']}; {BYTES_RULE}={settings['UPLOAD_QUOTA_BYTES']}")
    retention = settings["UPLOAD_RETENTION"]
    attach_within = retention - settings["HISTORY_MAX_AGE"] if retention else None
    if attach_within is not None and attach_within < 3600:
        raise RuntimeError("REALTIME_UPLOAD_RETENTION must exceed REALTIME_HISTORY_MAX_AGE by an hour at least "
                           "(an upload may be attached for the difference), or be 0 (keep forever)")
    return UploadService(Path(settings["UPLOAD_DIR"]), settings["UPLOAD_MAX_BYTES"],
                         RateLimiter(store, rules), retention, attach_within)
