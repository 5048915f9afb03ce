"""Webhook signatures, shared by the realtime sender and the webhook receiver (standard library only).

A delivery carries `X-Realtime-Timestamp: <unix seconds>` and
`X-Realtime-Signature: v1=<hex HMAC-SHA256(secret, b"<timestamp>." + raw body)>`. Signing the
timestamp with the body lets a receiver refuse replays older than its tolerance. The signature
header may list several comma-separated `v1=` values (one per secret while a secret is rotated);
one match is enough.
"""
from __future__ import annotations

import hashlib
import hmac
from typing import Mapping

SCHEME = "v1"
TIMESTAMP_HEADER = "X-Realtime-Timestamp"
SIGNATURE_HEADER = "X-Realtime-Signature"
DEFAULT_TOLERANCE = 300
# A signature header longer than this is not ours (a handful of v1=<64 hex> values at most).
MAX_SIGNATURE_HEADER = 1024


class SignatureError(Exception):
    """A delivery whose signature cannot be trusted; `code` is the stable machine-readable part."""

    # missing_signature: the headers are absent or unusable; the others: present but wrong.
    STATUS = {"missing_signature": 400, "bad_signature": 401, "stale_timestamp": 401}

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message

    @property
    def status(self) -> int:
        """The HTTP status a receiver answers with."""
        return self.STATUS.get(self.code, 401)

    def to_dict(self) -> dict[str, str]:
        """The `error` object of a JSON answer."""
        return {"code": self.code, "message": self.message}


def _key(secret: bytes | str) -> bytes:
    """The HMAC key; a str secret (from the environment) is its UTF-8 bytes."""
    return secret.encode() if isinstance(secret, str) else bytes(secret)


def _digest(secret: bytes | str, timestamp: int, body: bytes) -> str:
    """Hex HMAC-SHA256 of `<timestamp>.<body>`."""
    message = str(int(timestamp)).encode() + b"." + bytes(body)
    return hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """The `X-Realtime-Signature` value for `body` sent at `timestamp`: `v1=<hex>`."""
    return f"{SCHEME}={_digest(secret, timestamp, body)}"


def signed_headers(secret: bytes, timestamp: int, body: bytes) -> dict[str, str]:
    """The timestamp and signature headers of one delivery attempt."""
    return {TIMESTAMP_HEADER: str(int(timestamp)), SIGNATURE_HEADER: sign(secret, timestamp, body)}


def _header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by case-insensitive name (works for plain dicts and Werkzeug headers alike)."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _timestamp(raw: str) -> int:
    """The integer timestamp of the header, or missing_signature if it is not one."""
    text = raw.strip()
    # Digits only: no sign, no exponent, no fraction; 12 digits reach far past year 30000.
    if not text.isascii() or not text.isdigit() or len(text) > 12:
        raise SignatureError("missing_signature",
                             f"{TIMESTAMP_HEADER} must be integer unix seconds")
    return int(text)


def _candidates(raw: str) -> list[str]:
    """The hex digests of every `v1=` entry of the signature header."""
    prefix = SCHEME + "="
    parts = (part.strip() for part in raw.split(","))
    return [part[len(prefix):] for part in parts if part.startswith(prefix)]


def verify(secret: bytes, headers: Mapping[str, str], body: bytes, now: float,
           tolerance: float = DEFAULT_TOLERANCE) -> None:
    """Pass if `secret` signed `body` within `tolerance` s of `now`; else raise SignatureError."""
    raw_timestamp = _header(headers, TIMESTAMP_HEADER)
    raw_signature = _header(headers, SIGNATURE_HEADER)
    missing = [name for name, value in ((TIMESTAMP_HEADER, raw_timestamp),
                                        (SIGNATURE_HEADER, raw_signature)) if not value]
    if missing:
        raise SignatureError("missing_signature", f"missing header: {', '.join(missing)}")
    timestamp = _timestamp(raw_timestamp)
    if len(raw_signature) > MAX_SIGNATURE_HEADER:
        raise SignatureError("bad_signature", f"{SIGNATURE_HEADER} is too long")
    expected = _digest(secret, timestamp, body).encode()
    # Compare with every candidate (no early exit), each in constant time.
    matched = False
    for candidate in _candidates(raw_signature):
        matched |= hmac.compare_digest(expected, candidate.encode("ascii", "replace"))
    if not matched:
        raise SignatureError("bad_signature", "signature does not match the body and timestamp")
    # Checked after the signature, so a forged timestamp never passes for a merely stale one.
    skew = abs(now - timestamp)
    if skew > tolerance:
        side = "in the future" if timestamp > now else "too old"
        raise SignatureError("stale_timestamp", f"timestamp is {side}: {skew:.0f}s from now, "
                                                f"tolerance {tolerance:g}s")
