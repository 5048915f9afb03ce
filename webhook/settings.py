"""The receiver's settings: defaults, then WEBHOOK_* variables, then overrides (in create_app)."""
from __future__ import annotations

import os
from typing import Any, Mapping
from urllib.parse import urlsplit

from .signing import DEFAULT_TOLERANCE

DEFAULTS: dict[str, Any] = {
    "SECRET": None,               # the realtime sender's; required unless INSECURE_NO_SECRET
    "INSECURE_NO_SECRET": False,  # accept unsigned deliveries (local demos only)
    "TOLERANCE": DEFAULT_TOLERANCE,  # seconds a timestamp may be away from now, either way
    "MAX_EVENTS": 1000,           # received requests kept in memory
    "MAX_BYTES": 64 * 1024 * 1024,  # and at most about this much of them
    "MAX_BODY": 256 * 1024,       # largest request body (a delivery is a small JSON document)
    "REALTIME_URL": None,         # the send form's HTTP path, e.g. http://127.0.0.1:8080
    "REALTIME_API_KEY": None,     # sent as X-API-Key on that path
    "REDIS_URL": None,            # the send form's Redis-emitter path
    "SEND_TIMEOUT": 5.0,          # connect and read timeout of the HTTP path, seconds
}
# Inclusive bounds of the numeric settings.
BOUNDS = {"TOLERANCE": (1, 86400), "MAX_EVENTS": (1, 100_000), "MAX_BYTES": (1024, 2**34),
          "MAX_BODY": (1024, 16 * 1024 * 1024), "SEND_TIMEOUT": (0.1, 120.0)}
TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


class ConfigError(ValueError):
    """A setting that the receiver refuses to start with."""


def convert(name: str, raw: Any) -> Any:
    """An environment string (or an override) as the type of the setting's default."""
    default = DEFAULTS[name]
    if isinstance(default, bool):
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower()
        if text not in TRUE | FALSE:
            raise ConfigError(f"WEBHOOK_{name} must be 1/0, true/false, yes/no or on/off")
        return text in TRUE
    if isinstance(default, (int, float)):
        try:
            value = type(default)(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"WEBHOOK_{name} must be a number, not {raw!r}") from None
        low, high = BOUNDS[name]
        if not low <= value <= high:
            raise ConfigError(f"WEBHOOK_{name} must be between {low} and {high}")
        return value
    text = "" if raw is None else str(raw).strip()
    return text or None  # an empty variable is the same as an unset one


def check_url(name: str, value: str | None, schemes: tuple[str, ...], host: bool = True) -> None:
    """Refuse a URL with another scheme or no host (file:// must never reach urlopen)."""
    if value is None:
        return
    parts = urlsplit(value)
    if parts.scheme not in schemes or (host and not parts.netloc):
        raise ConfigError(f"WEBHOOK_{name} must be a {' or '.join(schemes)} URL, not {value!r}")


def load_settings(overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Defaults, then WEBHOOK_<NAME> variables, then `overrides` (keys without the prefix)."""
    env = os.environ if environ is None else environ
    settings = dict(DEFAULTS)
    for name in DEFAULTS:
        if f"WEBHOOK_{name}" in env:
            settings[name] = convert(name, env[f"WEBHOOK_{name}"])
    for name, value in (overrides or {}).items():
        settings[name] = convert(name, value) if name in DEFAULTS else value
    if not settings["SECRET"] and not settings["INSECURE_NO_SECRET"]:
        raise ConfigError("WEBHOOK_SECRET is not set: give the secret the realtime server signs "
                          "with, or WEBHOOK_INSECURE_NO_SECRET=1 to accept unsigned deliveries")
    check_url("REALTIME_URL", settings["REALTIME_URL"], ("http", "https"))
    check_url("REDIS_URL", settings["REDIS_URL"], ("redis", "rediss", "unix", "redis+sentinel"), host=False)
    return settings
