"""Who is calling an HTTP route: a user token, a service token, or a server API key."""
from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, request

from .. import auth
from ..errors import AppError, AuthError
from ..services import apikeys, validation
from ..services.access import ADMIN

SERVICE = "service"


@dataclass(frozen=True)
class Caller:
    """A verified caller: a principal (token) or the name of an API key."""

    principal: auth.Principal | None = None
    api_key: str | None = None

    @property
    def is_server(self) -> bool:
        """Trusted backend: an API key, or a token with the service or admin role."""
        return bool(self.api_key) or bool(self.principal and (
            self.principal.has_role(SERVICE) or self.principal.has_role(ADMIN)))


def json_body() -> dict:
    """The request's JSON object; anything else (or absurd nesting) is a structured 400."""
    try:
        data = request.get_json(silent=True)
    except RecursionError:
        data = None
    return validation.payload_dict(data)


def caller() -> Caller:
    """Identify the caller by `X-API-Key` or `Authorization: Bearer`; refuse anyone else."""
    presented = request.headers.get("X-API-Key")
    if presented is not None:
        keys = apikeys.ApiKeys(apikeys.parse(current_app.config["REALTIME"]["API_KEYS"]))
        name = keys.identify(presented)
        if name is None:
            raise AuthError("invalid_api_key", "the API key is not valid")
        return Caller(api_key=name)
    verifier = current_app.extensions["realtime"].verifier
    return Caller(principal=verifier.from_header(request.headers.get("Authorization")))


def require_server() -> Caller:
    """An API key or a service token."""
    who = caller()
    if not who.is_server:
        raise AppError("forbidden", "an API key or a service token is required", 403)
    return who


def require_admin() -> Caller:
    """An API key or an admin token."""
    who = caller()
    if not (who.api_key or (who.principal and who.principal.has_role(ADMIN))):
        raise AppError("forbidden", "the admin role or an API key is required", 403)
    return who
