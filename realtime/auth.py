"""Identity: demo tokens and verification of the JWT every connection carries."""
from __future__ import annotations

from typing import Any

import jwt as pyjwt
from flask_jwt_extended import create_access_token, decode_token
from flask_jwt_extended.exceptions import JWTExtendedException

from .errors import AuthError
from .services import validation


def issue_demo_token(name: Any) -> tuple[str, dict[str, str]]:
    """A signed access token for a demo user chosen by name."""
    name = validation.username(name)
    user = {"id": name.lower(), "name": name}
    return create_access_token(identity=user["id"], additional_claims={"name": name}), user


def token_from(auth: Any, query_token: str | None) -> str:
    """The token from the Socket.IO auth payload, else the `token` query parameter."""
    token = auth.get("token") if isinstance(auth, dict) else None
    token = token or query_token
    if not token:
        raise AuthError("auth_required", "a token is required (auth: {token})")
    if not isinstance(token, str) or len(token) > 8192:
        raise AuthError("token_invalid", "token must be a string")
    return token


def verify(token: str) -> dict[str, Any]:
    """The user a valid access token names; expired and invalid tokens have their own codes."""
    try:
        claims = decode_token(token)
    except pyjwt.ExpiredSignatureError as exc:
        raise AuthError("token_expired", "token has expired") from exc
    except (pyjwt.InvalidTokenError, JWTExtendedException) as exc:
        raise AuthError("token_invalid", f"token is invalid: {exc}") from exc
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise AuthError("token_invalid", "token has no subject")
    name = claims.get("name") if isinstance(claims.get("name"), str) else subject
    return {"id": subject, "name": name[:64]}


def user_from_header(header: str | None) -> dict[str, Any]:
    """The user of an `Authorization: Bearer <jwt>` header."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("auth_required", "an Authorization: Bearer token is required")
    return verify(token.strip())
