"""Identity: verification of the JWT every connection and API call carries, and demo tokens."""
from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Protocol

import jwt as pyjwt
from flask_jwt_extended import create_access_token, decode_token
from flask_jwt_extended.exceptions import JWTExtendedException

from .errors import AuthError
from .services import validation

MAX_TOKEN_CHARS = 8192


class Denylist(Protocol):
    """Anything that knows revoked token ids: the store, or a replica's mirror of it."""

    def is_revoked(self, jti: str) -> bool:
        """Whether a token id is on the denylist."""

    def revoked_before(self, user_id: str) -> float | None:
        """The time before which every token of the user is revoked, if any."""


@dataclass(frozen=True, slots=True)  # slots: one is kept per connection (and per cached token)
class Principal:
    """Who a verified token names, and what it grants."""

    id: str
    name: str
    exp: int
    jti: str | None = None
    roles: frozenset[str] = frozenset()
    rooms: frozenset[str] = frozenset()
    iat: int | None = None  # None: counts as issued before any per-user revocation

    @property
    def user(self) -> dict[str, str]:
        """The public face of the user, as events carry it."""
        return {"id": self.id, "name": self.name}

    def has_role(self, role: str) -> bool:
        """Whether the token grants `role`."""
        return role in self.roles


def issue_demo_token(name: Any, admins: frozenset[str] = frozenset()) -> tuple[str, dict[str, str]]:
    """A signed access token for a demo user chosen by name (admin role for the listed names)."""
    name = validation.username(name)
    user = {"id": name.lower(), "name": name}
    claims: dict[str, Any] = {"name": name}
    if user["id"] in admins:
        claims["roles"] = ["admin"]
    return create_access_token(identity=user["id"], additional_claims=claims), user


def token_from(auth: Any, query_token: str | None) -> str:
    """The token from the Socket.IO auth payload, else the `token` query parameter (if allowed)."""
    token = auth.get("token") if isinstance(auth, dict) else None
    token = token or query_token
    if not token:
        raise AuthError("auth_required", "a token is required (auth: {token})")
    if not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS:
        raise AuthError("token_invalid", "token must be a string", reason="malformed")
    return token


def decode(token: str) -> dict[str, Any]:
    """The verified claims; each way a token can be bad has its own reason."""
    try:
        return decode_token(token)
    except pyjwt.ExpiredSignatureError as exc:
        raise AuthError("token_expired", "token has expired", reason="expired") from exc
    except pyjwt.InvalidSignatureError as exc:
        raise AuthError("token_invalid", "token signature does not verify", reason="bad_signature") from exc
    except pyjwt.InvalidAlgorithmError as exc:
        raise AuthError("token_invalid", "token algorithm is not allowed", reason="alg_not_allowed") from exc
    except pyjwt.ImmatureSignatureError as exc:
        raise AuthError("token_invalid", "token is not valid yet", reason="not_yet_valid") from exc
    except (pyjwt.MissingRequiredClaimError, pyjwt.InvalidAudienceError, pyjwt.InvalidIssuerError) as exc:
        raise AuthError("token_invalid", f"token claims are not acceptable: {exc}", reason="bad_claims") from exc
    except (pyjwt.InvalidTokenError, JWTExtendedException, ValueError) as exc:
        raise AuthError("token_invalid", "token is malformed", reason="malformed") from exc


NONE: frozenset[str] = frozenset()  # shared: most tokens have no roles or rooms (an empty set each otherwise)


def string_set(value: Any, claim: str) -> frozenset[str]:
    """An optional list-of-strings claim."""
    if value is None or value == []:
        return NONE
    if not isinstance(value, list) or not all(isinstance(v, str) and len(v) <= 128 for v in value):
        raise AuthError("token_invalid", f"claim {claim} must be a list of strings", reason="bad_claims")
    return frozenset(value)


def principal_of(claims: dict[str, Any]) -> Principal:
    """A Principal from verified claims: `sub` and `exp` are required."""
    subject, expires = claims.get("sub"), claims.get("exp")
    if not isinstance(subject, str) or not validation.USER_ID_RE.match(subject):
        raise AuthError("token_invalid", "claim sub must be a user id", reason="bad_claims")
    if not isinstance(expires, (int, float)) or isinstance(expires, bool):
        raise AuthError("token_invalid", "claim exp is required", reason="bad_claims")
    if claims.get("type", "access") != "access":
        raise AuthError("token_invalid", "an access token is required", reason="wrong_type")
    name = claims.get("name")
    name = name[:64] if isinstance(name, str) and name.strip() else subject
    jti = claims.get("jti") if isinstance(claims.get("jti"), str) else None
    issued = claims.get("iat")
    issued = int(issued) if isinstance(issued, (int, float)) and not isinstance(issued, bool) else None
    return Principal(subject, name, int(expires), jti, string_set(claims.get("roles"), "roles"),
                     string_set(claims.get("rooms"), "rooms"), issued)


def bounded(claims: dict[str, Any], max_lifetime: float, audience: Any, now: float) -> dict[str, Any]:
    """The claims, unless they outlive `max_lifetime` or name an audience none is configured for."""
    if audience is None and claims.get("aud") is not None:
        # flask-jwt-extended skips `aud` when no audience is configured; PyJWT's default refuses it.
        raise AuthError("token_invalid", "token names an audience and none is configured", reason="bad_claims")
    expires, issued = claims.get("exp"), claims.get("iat")
    if max_lifetime > 0 and isinstance(expires, (int, float)):
        start = issued if isinstance(issued, (int, float)) and not isinstance(issued, bool) else now
        if expires - start > max_lifetime or expires - now > max_lifetime:
            raise AuthError("token_invalid", "token lives longer than the server accepts",
                            reason="lifetime_too_long")
    return claims


def is_cut_off(principal: Principal, before: float | None) -> bool:
    """Whether the token predates its user's revocation time (no `iat`: it does)."""
    return before is not None and (principal.iat is None or principal.iat < before)


def unrevoked(principal: Principal, denylist: Denylist | None) -> Principal:
    """The principal, unless its token id or its user's tokens of that age are on the denylist."""
    if denylist is None:
        return principal
    if principal.jti and denylist.is_revoked(principal.jti):
        raise AuthError("token_invalid", "token has been revoked", reason="revoked")
    if is_cut_off(principal, denylist.revoked_before(principal.id)):
        raise AuthError("token_invalid", "every token of this user issued before now was revoked",
                        reason="revoked")
    return principal


def bearer(header: str | None) -> str:
    """The token of an `Authorization: Bearer <jwt>` header."""
    scheme, _, token = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("auth_required", "an Authorization: Bearer token is required")
    if len(token) > MAX_TOKEN_CHARS:
        raise AuthError("token_invalid", "token is too long", reason="malformed")
    return token.strip()


class Verifier:
    """Verifies each distinct token's signature and claims once, until it expires.

    The keys are fixed for the life of the process and a verified token's claims cannot change,
    so a cached principal stays right until `exp`; revocation is checked on every call. Bounded:
    the least recently used token goes first.
    """

    def __init__(self, denylist: Denylist | None, size: int = 10_000,
                 clock: Callable[[], float] = time.time, max_lifetime: float = 0,
                 audience: Any = None):
        self.denylist = denylist
        self.size = size
        self.clock = clock
        self.max_lifetime = max_lifetime  # seconds; 0: any lifetime
        self.audience = audience          # None: a token that names an audience is refused
        self.verified: OrderedDict[bytes, Principal] = OrderedDict()
        self.hits = self.misses = 0

    def verify(self, token: str) -> Principal:
        """The principal of a valid, unrevoked access token."""
        return unrevoked(self.verified_principal(token), self.denylist)

    def from_header(self, header: str | None) -> Principal:
        """The principal of an `Authorization: Bearer <jwt>` header."""
        return self.verify(bearer(header))

    def verified_principal(self, token: str) -> Principal:
        """Signature and claims, from the cache while the token has not expired."""
        if self.size <= 0:
            return self.checked(token)
        # A 128-bit digest keys the cache: a token's bytes stay out of memory, a collision is out of reach.
        # surrogatepass: a token with a lone surrogate is still refused by decode(), not here.
        key = hashlib.blake2b(token.encode("utf-8", "surrogatepass"), digest_size=16).digest()
        principal = self.verified.get(key)
        if principal is not None and principal.exp > self.clock():
            self.verified.move_to_end(key)
            self.hits += 1
            return principal
        self.verified.pop(key, None)
        principal = self.checked(token)  # raises for a token that is not (or no longer) valid
        self.misses += 1
        self.verified[key] = principal
        if len(self.verified) > self.size:
            self.verified.popitem(last=False)
        return principal


    def checked(self, token: str) -> Principal:
        """Decode and check one token's claims against this server's limits."""
        return principal_of(bounded(decode(token), self.max_lifetime, self.audience, self.clock()))


def seconds_left(principal: Principal) -> float:
    """How long until the token expires."""
    return principal.exp - time.time()
