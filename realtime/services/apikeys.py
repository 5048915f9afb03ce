"""Server API keys: stored as SHA-256 hashes, compared in constant time."""
from __future__ import annotations

import hashlib
import hmac
import secrets


def hash_key(key: str) -> str:
    """The at-rest form of an API key."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random API key (shown once; only its hash is configured)."""
    return "rtk_" + secrets.token_urlsafe(32)


def parse(spec: str) -> dict[str, str]:
    """`"name:sha256hex, other:sha256hex"` as {name: hash}."""
    keys = {}
    for item in spec.split(","):
        name, _, digest = item.strip().partition(":")
        if name and len(digest) == 64:
            keys[name] = digest.lower()
    return keys


class ApiKeys:
    """Looks up which configured key, if any, a presented key is."""

    def __init__(self, hashes: dict[str, str]):
        self.hashes = hashes

    def identify(self, presented: str | None) -> str | None:
        """The name of the matching key; every configured key is compared, in constant time."""
        if not presented or len(presented) > 256:
            return None
        digest = hash_key(presented)
        found = None
        for name, expected in self.hashes.items():
            if hmac.compare_digest(digest, expected):
                found = name
        return found
