"""Bearer JWTs: who is calling (`sub`) and which tenants they may see (`tenant_id`/`tenants`)."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import jwt
from jwt.types import Options

from api.errors import Problem
from core.settings import Settings


@dataclass(frozen=True)
class Principal:
    subject: str
    tenants: frozenset[str]

    def require(self, tenant_id: str) -> None:
        """A tenant the token does not grant is a 403 (contract §3). The answer does not repeat the
        tenant id: no response carries another tenant's identifiers."""
        if tenant_id not in self.tenants:
            raise Problem(403, "the token does not grant the tenant named in the request")


def decode(token: str, settings: Settings) -> Principal:
    # A token without an expiry would be a credential forever: `exp` (and `sub`) are required.
    options: Options = {"require": ["exp", "sub"]}
    try:
        if settings.jwt_public_key:
            claims = jwt.decode(token, settings.jwt_public_key, algorithms=["RS256"], options=options)
        else:
            claims = jwt.decode(
                token, settings.jwt_secret, algorithms=[settings.jwt_algorithm], options=options
            )
    except jwt.PyJWTError as err:
        raise Problem(401, f"invalid token: {err}") from err
    sub = claims.get("sub")
    tenants: list[str] = []
    if isinstance(claims.get("tenant_id"), str):
        tenants.append(claims["tenant_id"])
    if isinstance(claims.get("tenants"), list):
        tenants.extend(t for t in claims["tenants"] if isinstance(t, str))
    if not isinstance(sub, str) or not sub or not tenants:
        raise Problem(401, "the token needs a `sub` and a `tenant_id` or `tenants` claim")
    return Principal(subject=sub, tenants=frozenset(tenants))


def issue_token(
    settings: Settings, subject: str, tenants: list[str], ttl: timedelta = timedelta(days=30)
) -> str:
    """Development/test tokens (HS256 with the configured secret)."""
    now = datetime.now(UTC)
    claims: dict[str, object] = {"sub": subject, "iat": now, "exp": now + ttl}
    if len(tenants) == 1:
        claims["tenant_id"] = tenants[0]
    else:
        claims["tenants"] = tenants
    return jwt.encode(claims, settings.jwt_secret, algorithm=settings.jwt_algorithm)
