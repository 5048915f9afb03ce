"""The receiver's settings: defaults, then WEBHOOK_* variables, then overrides (in create_app)."""
from __future__ import annotations

import os
import re
from typing import Any, Mapping
from urllib.parse import urlsplit

from realtime.signing import DEFAULT_TOLERANCE

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
    "UI_TOKEN": None,             # bearer token of the UI and its API; unset: one is made up
    # Host names (ports ignored) requests may be addressed to: Flask's TRUSTED_HOSTS, against DNS
    # rebinding. Werkzeug cannot match IPv6 literals ([::1]), so none is listed.
    "TRUSTED_HOSTS": "localhost,127.0.0.1,webhook",
}
# Inclusive bounds of the numeric settings.
BOUNDS = {"TOLERANCE": (1, 86400), "MAX_EVENTS": (1, 100_000), "MAX_BYTES": (1024, 2**34),
          "MAX_BODY": (1024, 16 * 1024 * 1024), "SEND_TIMEOUT": (0.1, 120.0)}
TRUE, FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}
MIN_TOKEN = 16  # shortest WEBHOOK_UI_TOKEN accepted, characters
HOST_RE = re.compile(r"^\.?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")


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


def host_list(value: Any) -> list[str]:
    """WEBHOOK_TRUSTED_HOSTS as a list of lower-case names (a leading dot: any subdomain too)."""
    names = value if isinstance(value, (list, tuple)) else str(value or "").split(",")
    hosts = [str(name).strip().lower() for name in names if str(name).strip()]
    bad = [name for name in hosts if not HOST_RE.match(name)]
    if not hosts or bad:
        raise ConfigError("WEBHOOK_TRUSTED_HOSTS must be comma-separated host names or IPv4 "
                          f"addresses, without ports{f', not {bad[0]!r}' if bad else ''}")
    return hosts


def load_settings(overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Defaults, then WEBHOOK_<NAME> variables, then `overrides` (keys without the prefix)."""
    env = os.environ if environ is None else environ
    settings = dict(DEFAULTS)
    for name in DEFAULTS:
        if f"WEBHOOK_{name}" in env:
            settings[name] = convert(name, env[f"WEBHOOK_{name}"])
    for name, value in (overrides or {}).items():
        plain = name in DEFAULTS and not isinstance(value, (list, tuple))
        settings[name] = convert(name, value) if plain else value
    if not settings["SECRET"] and not settings["INSECURE_NO_SECRET"]:
        raise ConfigError("WEBHOOK_SECRET is not set: give the secret the realtime server signs "
                          "with, or WEBHOOK_INSECURE_NO_SECRET=1 to accept unsigned deliveries")
    if settings["UI_TOKEN"] is not None and len(settings["UI_TOKEN"]) < MIN_TOKEN:
        raise ConfigError(f"WEBHOOK_UI_TOKEN must be at least {MIN_TOKEN} characters (or unset: "
                          "the service then makes one up and logs it)")
    settings["TRUSTED_HOSTS"] = host_list(settings["TRUSTED_HOSTS"] or DEFAULTS["TRUSTED_HOSTS"])
    check_url("REALTIME_URL", settings["REALTIME_URL"], ("http", "https"))
    check_url("REDIS_URL", settings["REDIS_URL"],
              ("redis", "rediss", "unix", "redis+sentinel", "redis+cluster", "rediss+cluster"), host=False)
    return settings
