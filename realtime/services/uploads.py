"""Uploaded files: typed from their content, stored once under their hash on a directory replicas share."""
from __future__ import annotations

import codecs
import contextlib
import hashlib
import json
import os
import re
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Any, BinaryIO

from ..errors import AppError, ValidationError

URL_PREFIX = "/uploads/"
NAME_MAX = 200
CHUNK = 64 * 1024
HEAD = 64

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

# Only the strict stored form: no separators, no dots to climb with, never a sidecar or temp file.
STORED_RE = re.compile(r"^[0-9a-f]{64}\.(?:%s)\Z" % "|".join(MIME_BY_EXT))
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
    """Stores uploads on a directory every replica shares; names are content hashes, so writes never conflict."""

    def __init__(self, directory: Path, max_bytes: int):
        self.directory = Path(directory)
        self.max_bytes = max_bytes

    def save(self, stream: BinaryIO, filename: str | None) -> dict[str, Any]:
        """Store an upload once as `<sha256>.<ext>`; its meta `{file, url, name, mime, size}`."""
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(dir=self.directory, prefix=".incoming-")
        try:
            with os.fdopen(fd, "wb") as out:
                digest, size, head, text = self.receive(stream, out)
                mime = sniff(head, text)
                out.flush()
                os.fsync(out.fileno())  # a replica that reads it after a crash finds all of it
            stored = f"{digest}.{TYPES[mime][0]}"
            meta = {"file": stored, "url": url_of(stored), "name": display_name(filename, mime),
                    "mime": mime, "size": size}
            if not self.path(stored).exists():  # same content, same name: stored once
                self.store(temp, meta)
            return meta
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(temp)

    def receive(self, stream: BinaryIO, out: BinaryIO) -> tuple[str, int, bytes, TextCheck]:
        """Copy at most max_bytes into `out`, hashing and checking as it goes: (sha256, size, head, text)."""
        digest, text, head, size = hashlib.sha256(), TextCheck(), b"", 0
        # Asking for one byte past the limit tells "exactly the limit" from "too large".
        while chunk := stream.read(min(CHUNK, self.max_bytes + 1 - size)):
            size += len(chunk)
            if size > self.max_bytes:
                raise too_large(self.max_bytes)
            digest.update(chunk)
            text.feed(chunk)
            out.write(chunk)
            head += chunk[:HEAD - len(head)]
        if size == 0:
            raise ValidationError("invalid_payload", "the file is empty")
        text.feed(b"", final=True)
        return digest.hexdigest(), size, head, text

    def store(self, temp: str, meta: dict[str, Any]) -> None:
        """Sidecar first, then the file: whoever sees the file can read its metadata."""
        sidecar = {"mime": meta["mime"], "size": meta["size"], "name": meta["name"],
                   "stored_at": int(time.time() * 1000)}
        write_atomically(self.sidecar(meta["file"]), json.dumps(sidecar).encode())
        publish(temp, self.path(meta["file"]))

    def lookup(self, name: Any) -> dict[str, Any] | None:
        """The meta of a stored upload, or None for an unknown or malformed name."""
        if not isinstance(name, str) or not STORED_RE.match(name):
            return None
        try:
            size = self.path(name).stat().st_size
        except FileNotFoundError:
            return None
        # Type and size come from the file itself (its extension was derived from its content).
        mime = MIME_BY_EXT[name.rpartition(".")[2]]
        return {"file": name, "url": url_of(name), "name": self.stored_display_name(name, mime),
                "mime": mime, "size": size}

    def stored_display_name(self, name: str, mime: str) -> str:
        """The display name the first uploader gave, else the stored name."""
        try:
            recorded = json.loads(self.sidecar(name).read_text()).get("name")
        except (OSError, ValueError, AttributeError):
            recorded = None
        return display_name(recorded or name, mime)

    def path(self, name: str) -> Path:
        """Where a stored upload lives; only strict stored names are accepted."""
        if not STORED_RE.match(name):
            raise ValueError(f"not a stored upload name: {name!r}")
        return self.directory / name

    def sidecar(self, name: str) -> Path:
        """The metadata file beside a stored upload."""
        return self.path(name).with_name(name + ".json")
