"""JWT verification settings: shared-secret and public-key algorithms, chosen per token header."""
from __future__ import annotations

import logging
import secrets
from pathlib import Path
from typing import Any, Mapping

from flask import current_app
from flask_jwt_extended import JWTManager

log = logging.getLogger(__name__)
WEAK_SECRET_CHARS = 32
SYMMETRIC = ("HS256", "HS384", "HS512")
ASYMMETRIC = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "EdDSA")


def pem(value: str | None) -> str | None:
    """A PEM key given inline or as a path to a file."""
    if not value:
        return None
    return value if "-----BEGIN" in value else Path(value).read_text()


def algorithms(settings: Mapping[str, Any]) -> list[str]:
    """The accepted algorithms; `none` and unknown names are refused at start."""
    names = [a.strip() for a in settings["JWT_ALGORITHMS"].split(",") if a.strip()]
    unknown = [a for a in names if a not in SYMMETRIC + ASYMMETRIC]
    if not names or unknown:
        raise RuntimeError(f"REALTIME_JWT_ALGORITHMS has unsupported entries: {unknown or names}")
    return names


def secret(settings: Mapping[str, Any], names: list[str]) -> str | None:
    """The HMAC secret; random only for the embedded single replica, never weak in production."""
    if not any(a in SYMMETRIC for a in names):
        return None
    value = settings["JWT_SECRET_KEY"]
    if not value:
        if settings["EMBEDDED"]:
            return secrets.token_urlsafe(32)
        raise RuntimeError("REALTIME_JWT_SECRET_KEY is required when REALTIME_REDIS_URL is set")
    # Only the embedded demo may use a short secret: with Redis the replicas are a deployment.
    if len(value) < WEAK_SECRET_CHARS and not (settings["DEMO_LOGIN"] and settings["EMBEDDED"]):
        raise RuntimeError(f"REALTIME_JWT_SECRET_KEY must be at least {WEAK_SECRET_CHARS} characters")
    return value


def lifetimes(settings: Mapping[str, Any]) -> None:
    """Demo tokens must live no longer than the server accepts; the limit is not negative."""
    longest, demo = settings["JWT_MAX_LIFETIME"], settings["JWT_ACCESS_TOKEN_EXPIRES"]
    if longest < 0:
        raise RuntimeError("REALTIME_JWT_MAX_LIFETIME must be 0 (unbounded) or a number of seconds")
    if longest and demo > longest:
        raise RuntimeError(f"REALTIME_JWT_ACCESS_TOKEN_EXPIRES ({demo}) exceeds "
                           f"REALTIME_JWT_MAX_LIFETIME ({longest}): demo tokens would be refused")


def warn_unscoped(settings: Mapping[str, Any]) -> None:
    """A WARNING at start when a deployment with Redis accepts tokens minted for anyone."""
    if settings["EMBEDDED"]:
        return
    unset = [name for name in ("JWT_AUDIENCE", "JWT_ISSUER") if not settings[name]]
    if unset:
        log.warning("REALTIME_%s unset: tokens of any %s signed with the accepted keys are accepted "
                    "(a token naming an audience is refused while no audience is configured)",
                    " and REALTIME_".join(unset), " or ".join(n[4:].lower() for n in unset))


def config(settings: Mapping[str, Any]) -> dict[str, Any]:
    """flask-jwt-extended configuration from our settings."""
    names = algorithms(settings)
    lifetimes(settings)
    warn_unscoped(settings)
    public, private = pem(settings["JWT_PUBLIC_KEY"]), pem(settings["JWT_PRIVATE_KEY"])
    if any(a in ASYMMETRIC for a in names) and not public:
        raise RuntimeError("REALTIME_JWT_PUBLIC_KEY is required for " + settings["JWT_ALGORITHMS"])
    hmac_secret = secret(settings, names)
    # Demo tokens are signed with the shared secret if there is one, else with the private key.
    signing = next((a for a in names if a in SYMMETRIC), names[0])
    return {"JWT_SECRET_KEY": hmac_secret, "JWT_PUBLIC_KEY": public, "JWT_PRIVATE_KEY": private,
            "JWT_ALGORITHM": signing, "JWT_DECODE_ALGORITHMS": names,
            "JWT_DECODE_LEEWAY": settings["JWT_LEEWAY"],
            "JWT_DECODE_AUDIENCE": settings["JWT_AUDIENCE"], "JWT_DECODE_ISSUER": settings["JWT_ISSUER"],
            "JWT_ACCESS_TOKEN_EXPIRES": settings["JWT_ACCESS_TOKEN_EXPIRES"]}


def init_app(jwt: JWTManager) -> None:
    """Pick the verification key by the token's own algorithm, within the accepted list only."""
    @jwt.decode_key_loader
    def key_for(header: dict[str, Any], _claims: dict[str, Any]) -> str:
        app_config = current_app.config
        if header.get("alg") in SYMMETRIC and app_config["JWT_SECRET_KEY"]:
            return app_config["JWT_SECRET_KEY"]
        # Asymmetric (or refused later by pyjwt's algorithm list): never the HMAC secret, so a
        # public key can not be abused as a shared secret (algorithm confusion).
        return app_config["JWT_PUBLIC_KEY"] or ""
