"""Start-up guard for demo login on a Redis cluster: a loud warning, and no demo admins by accident."""
from __future__ import annotations

import logging
from typing import Any, Mapping

log = logging.getLogger(__name__)

ACKNOWLEDGED = "acknowledged"


def admins(settings: Mapping[str, Any]) -> frozenset[str]:
    """The demo login names that get the admin role (lower case)."""
    return frozenset(n.strip().lower() for n in settings["DEMO_ADMINS"].split(",") if n.strip())


def check(settings: Mapping[str, Any]) -> None:
    """Warn when a Redis replica has demo login on; refuse demo admins unless acknowledged."""
    if settings["EMBEDDED"] or not settings["DEMO_LOGIN"]:
        return
    acknowledgement = settings["DEMO_ADMINS_UNSAFE"] or ""
    if acknowledgement not in ("", ACKNOWLEDGED):
        raise RuntimeError(f"REALTIME_DEMO_ADMINS_UNSAFE must be empty or {ACKNOWLEDGED!r}, "
                           f"got {acknowledgement!r}")
    names = admins(settings)
    if names and acknowledgement != ACKNOWLEDGED:
        raise RuntimeError("REALTIME_DEMO_ADMINS gives the admin role to anyone who can reach "
                           "POST /api/auth/token on this Redis cluster: unset it, turn "
                           "REALTIME_DEMO_LOGIN off, or set REALTIME_DEMO_ADMINS_UNSAFE="
                           f"{ACKNOWLEDGED} (local development clusters only)")
    log.warning("DEMO LOGIN IS ON with Redis (REALTIME_DEMO_LOGIN): POST /api/auth/token hands "
                "out a token for any user name%s; never expose this replica to untrusted clients",
                f", and the admin role to {sorted(names)}" if names else "")
