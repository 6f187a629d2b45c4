"""Bearer JWTs: who is calling (`sub`) and which tenants they may see (`tenant_id`/`tenants`)."""

import math
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
from jwt.types import Options

from api.errors import Problem
from core.settings import Settings

ADMIN_ROLE = "admin"


@dataclass(frozen=True)
class Principal:
    subject: str
    tenants: frozenset[str]
    # The `roles` claim: `admin` may change a tenant's workspace (docs/tenants-and-providers.md).
    roles: frozenset[str] = frozenset()

    def require(self, tenant_id: str) -> None:
        """A tenant the token does not grant is a 403 (README "Security"). The answer does not repeat the
        tenant id: no response carries another tenant's identifiers."""
        if tenant_id not in self.tenants:
            raise Problem(403, "the token does not grant the tenant named in the request")

    def require_admin(self, tenant_id: str) -> None:
        """Workspace changes (identities, provider accounts, settings) need the `admin` role, on
        top of the tenant (403 either way; an object of another tenant is a 404 before this)."""
        self.require(tenant_id)
        if ADMIN_ROLE not in self.roles:
            raise Problem(403, "this needs the `admin` role in the token's `roles` claim")


# Verified tokens, so a request (and the next ones with the same token) pays for the signature
# check once: the edge's rate limiter, the log context and the route's principal all ask. Keyed by
# the token and everything of the settings that decides whether it is valid (another key, issuer or
# audience is another entry); an entry is dropped at the token's `exp`, so a cached token expires
# exactly when a decoded one would. Only valid tokens are kept: a bad one is checked every time.
TOKEN_CACHE_SIZE = 4096
_verified: "OrderedDict[tuple[object, ...], tuple[Principal, float]]" = OrderedDict()


def decode(token: str, settings: Settings) -> Principal:
    """`verify`, through the cache of tokens already verified (see `_verified`)."""
    key = (
        token,
        settings.jwt_secret,
        settings.jwt_public_key,
        settings.jwt_algorithm,
        settings.jwt_issuer,
        settings.jwt_audience,
        settings.jwt_max_age,
    )
    hit = _verified.get(key)
    if hit is not None:
        if time.time() < hit[1]:
            return hit[0]
        del _verified[key]
    principal, exp = verify(token, settings)
    _verified[key] = (principal, exp)
    if len(_verified) > TOKEN_CACHE_SIZE:
        _verified.popitem(last=False)
    return principal


def verify(token: str, settings: Settings) -> tuple[Principal, float]:
    """Verify a bearer token and say who it is for, and until when; anything wrong is a 401.

    Beyond the signature: `exp` and `sub` are required (a token without an expiry would be a
    credential forever), the lifetime is bounded by `CAMPAIGNS_JWT_MAX_AGE` (a signed `exp` of 1e308
    is a credential forever too), and `iss`/`aud` must match when configured, so a token issued for
    another service signed with a shared key is not accepted here.
    """
    required = ["exp", "sub"]
    if settings.jwt_issuer:
        required.append("iss")
    if settings.jwt_audience:
        required.append("aud")
    options: Options = {"require": required}
    key, algorithms = (
        (settings.jwt_public_key, ["RS256"])
        if settings.jwt_public_key
        else (settings.jwt_secret, [settings.jwt_algorithm])
    )
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            options=options,
            issuer=settings.jwt_issuer or None,
            audience=settings.jwt_audience or None,
        )
    except jwt.PyJWTError as err:
        raise Problem(401, f"invalid token: {err}") from err
    _check_lifetime(claims, settings.jwt_max_age)
    sub = claims.get("sub")
    tenants: list[str] = []
    if isinstance(claims.get("tenant_id"), str):
        tenants.append(claims["tenant_id"])
    if isinstance(claims.get("tenants"), list):
        tenants.extend(t for t in claims["tenants"] if isinstance(t, str))
    if not isinstance(sub, str) or not sub or not tenants:
        raise Problem(401, "the token needs a `sub` and a `tenant_id` or `tenants` claim")
    principal = Principal(subject=sub, tenants=frozenset(tenants), roles=_roles(claims.get("roles")))
    return principal, float(claims["exp"])


def _roles(claim: object) -> frozenset[str]:
    """The `roles` claim: a list of names (or one name); anything else grants none."""
    if isinstance(claim, str):
        return frozenset([claim])
    if isinstance(claim, list):
        return frozenset(r for r in claim if isinstance(r, str))
    return frozenset()


def _check_lifetime(claims: dict[str, Any], max_age: int) -> None:
    """`exp - iat` (or `exp - now` without `iat`) must be within `max_age` seconds.

    PyJWT has already checked that `exp` and `iat` convert to integers and that `exp` is in the
    future; the arithmetic stays in integers, so no value (1e308, 10**400) can overflow into a 500.
    A token claiming to be issued in the future was refused there too, so `iat` cannot stretch it.
    """
    exp, iat = claims["exp"], claims.get("iat")
    for value in (exp, iat):
        if isinstance(value, bool) or (isinstance(value, float) and not math.isfinite(value)):
            raise Problem(401, "invalid token: `exp` and `iat` must be finite numbers")
    now = int(time.time())
    start = now if iat is None else min(int(iat), now)
    if int(exp) - start > max_age:
        raise Problem(401, f"invalid token: its lifetime is over {max_age} seconds")


def issue_token(
    settings: Settings,
    subject: str,
    tenants: list[str],
    ttl: timedelta | None = None,
    roles: list[str] | None = None,
) -> str:
    """Development/test tokens (HS256 with the configured secret), valid for `ttl` (at most, and by
    default, `CAMPAIGNS_JWT_MAX_AGE`), with the configured issuer and audience."""
    now = datetime.now(UTC)
    lifetime = timedelta(seconds=settings.jwt_max_age) if ttl is None else ttl
    claims: dict[str, object] = {"sub": subject, "iat": now, "exp": now + lifetime}
    if settings.jwt_issuer:
        claims["iss"] = settings.jwt_issuer
    if settings.jwt_audience:
        claims["aud"] = settings.jwt_audience
    if roles:
        claims["roles"] = roles
    if len(tenants) == 1:
        claims["tenant_id"] = tenants[0]
    else:
        claims["tenants"] = tenants
    return jwt.encode(claims, settings.jwt_secret, algorithm=settings.jwt_algorithm)
