"""Outbound webhook endpoints: a tenant's receivers, their signing secrets (sealed: the API layer
seals and the delivery activity unseals, nothing here sees a plaintext) and their delivery state.

An endpoint's position in the outbox is `(cursor_xid, cursor_id)` (db.webhook_outbox explains
why a transaction id comes first); it moves only forward, and only by a compare-and-set on the
position the delivery read, so two attempts at the same batch (a timed-out one that still
finished, say) cannot move it twice or backwards.
"""

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncConnection

from db.pages import Slice, Window
from db.rows import row_of
from db.webhook_outbox import Position

_COLUMNS = """
    id, tenant_id, url, event_types, description, enabled, secret, previous_secret,
    previous_secret_until, cursor_xid::text AS cursor_xid, cursor_id, failing_since,
    last_success_at, last_error_at, last_error, delivered_count, failed_attempts, created_by,
    created_at, updated_at
"""


@dataclass(frozen=True)
class EndpointRow:
    """Every column of `webhook_endpoints`; `secret` and `previous_secret` are sealed tokens."""

    id: str
    tenant_id: str
    url: str
    event_types: list[str]
    description: str | None
    enabled: bool
    secret: str
    previous_secret: str | None
    previous_secret_until: datetime | None
    cursor_xid: str
    cursor_id: int
    failing_since: datetime | None
    last_success_at: datetime | None
    last_error_at: datetime | None
    last_error: str | None
    delivered_count: int
    failed_attempts: int
    created_by: str | None
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: RowMapping) -> "EndpointRow":
        return row_of(cls, row)

    @property
    def position(self) -> Position:
        return Position(self.cursor_xid, self.cursor_id)


@dataclass(frozen=True)
class NewEndpoint:
    id: str
    tenant_id: str
    url: str
    event_types: Sequence[str]
    description: str | None
    enabled: bool
    sealed_secret: str
    created_by: str


# The position starts at the oldest transaction still running: every fact recorded from now on
# (and any still being recorded) is after it, nothing from before the endpoint existed is.
_INSERT = text(
    f"""
    INSERT INTO webhook_endpoints (id, tenant_id, url, event_types, description, enabled, secret,
                                   cursor_xid, cursor_id, created_by)
    VALUES (:id, :tenant, :url, CAST(:types AS varchar(40)[]), :description, :enabled, :secret,
            pg_snapshot_xmin(pg_current_snapshot()), 0, :by)
    RETURNING {_COLUMNS}
    """
)


async def insert_endpoint(conn: AsyncConnection, new: NewEndpoint) -> EndpointRow:
    params = {
        "id": new.id,
        "tenant": new.tenant_id,
        "url": new.url,
        "types": list(new.event_types),
        "description": new.description,
        "enabled": new.enabled,
        "secret": new.sealed_secret,
        "by": new.created_by,
    }
    return EndpointRow.of((await conn.execute(_INSERT, params)).mappings().one())


_COUNT_OF_TENANT = text("SELECT count(*) FROM webhook_endpoints WHERE tenant_id = :tenant")


async def count_of_tenant(conn: AsyncConnection, tenant_id: str) -> int:
    return int((await conn.execute(_COUNT_OF_TENANT, {"tenant": tenant_id})).scalar_one())


_OWNED = text(f"SELECT {_COLUMNS} FROM webhook_endpoints WHERE id = :id AND tenant_id = ANY(:tenants)")


async def owned_endpoint(
    conn: AsyncConnection, tenants: Collection[str], endpoint_id: str
) -> EndpointRow | None:
    """The endpoint with this id if it belongs to one of `tenants`."""
    row = (await conn.execute(_OWNED, {"id": endpoint_id, "tenants": list(tenants)})).mappings().first()
    return None if row is None else EndpointRow.of(row)


_BY_ID = text(f"SELECT {_COLUMNS} FROM webhook_endpoints WHERE id = :id")


async def endpoint_by_id(conn: AsyncConnection, endpoint_id: str) -> EndpointRow | None:
    """The endpoint as its delivery workflow sees it (no tenant check: the id came from us)."""
    row = (await conn.execute(_BY_ID, {"id": endpoint_id})).mappings().first()
    return None if row is None else EndpointRow.of(row)


_PAGE = text(
    f"""
    SELECT {_COLUMNS}, count(*) OVER () AS total FROM webhook_endpoints
    WHERE tenant_id = :tenant ORDER BY created_at DESC, id DESC OFFSET :skip LIMIT :take
    """
)
_TOTAL = text("SELECT count(*) FROM webhook_endpoints WHERE tenant_id = :tenant")


async def page_endpoints(conn: AsyncConnection, tenant_id: str, window: Window) -> Slice[EndpointRow]:
    """Newest first."""
    params = {"tenant": tenant_id, "skip": window.skip, "take": window.take}
    rows = (await conn.execute(_PAGE, params)).mappings().all()
    total = int(rows[0]["total"]) if rows else await count_of_tenant(conn, tenant_id)
    return Slice(total, [EndpointRow.of(r) for r in rows])


@dataclass(frozen=True)
class EndpointChanges:
    """A PATCH: None leaves a field as it is (`description` is cleared with `clear_description`)."""

    url: str | None = None
    event_types: Sequence[str] | None = None
    description: str | None = None
    clear_description: bool = False
    enabled: bool | None = None


_UPDATE = text(
    f"""
    UPDATE webhook_endpoints SET
        url = COALESCE(:url, url),
        event_types = COALESCE(CAST(:types AS varchar(40)[]), event_types),
        description = CASE WHEN :clear THEN NULL ELSE COALESCE(:description, description) END,
        enabled = COALESCE(:enabled, enabled),
        updated_at = now()
    WHERE id = :id
    RETURNING {_COLUMNS}
    """
)


async def update_endpoint(
    conn: AsyncConnection, endpoint_id: str, changes: EndpointChanges
) -> EndpointRow | None:
    """The endpoint as changed; None when it is gone (deleted meanwhile)."""
    params = {
        "id": endpoint_id,
        "url": changes.url,
        "types": None if changes.event_types is None else list(changes.event_types),
        "description": changes.description,
        "clear": changes.clear_description,
        "enabled": changes.enabled,
    }
    row = (await conn.execute(_UPDATE, params)).mappings().first()
    return None if row is None else EndpointRow.of(row)


_ROTATE = text(
    """
    UPDATE webhook_endpoints SET previous_secret = secret, previous_secret_until = :until,
        secret = :secret, updated_at = now()
    WHERE id = :id
    RETURNING id
    """
)


async def rotate_secret(
    conn: AsyncConnection, endpoint_id: str, sealed_secret: str, previous_until: datetime
) -> bool:
    """Install a new secret; the old one keeps signing (alongside) until `previous_until`. False
    when the endpoint is gone (deleted meanwhile)."""
    params = {"id": endpoint_id, "secret": sealed_secret, "until": previous_until}
    return (await conn.execute(_ROTATE, params)).first() is not None


_DELETE = text("DELETE FROM webhook_endpoints WHERE id = :id")


async def delete_endpoint(conn: AsyncConnection, endpoint_id: str) -> None:
    """Remove the endpoint and its dead letters (its workflow ends at its next look)."""
    await conn.execute(_DELETE, {"id": endpoint_id})


_DELIVERED = text(
    """
    UPDATE webhook_endpoints SET
        cursor_xid = CASE WHEN :move THEN CAST(:xid AS xid8) ELSE cursor_xid END,
        cursor_id = CASE WHEN :move THEN :cid ELSE cursor_id END,
        delivered_count = delivered_count + :n, last_success_at = :at, failing_since = NULL
    WHERE id = :id
      AND (NOT :move OR (cursor_xid = CAST(:from_xid AS xid8) AND cursor_id = :from_id))
    """
)


async def record_delivered(
    conn: AsyncConnection, endpoint_id: str, read_at: Position, to: Position | None, count: int, at: datetime
) -> bool:
    """A 2xx for `count` events: move the position from `read_at` to `to` (None: a replay, which
    moves nothing) and clear the failure; False when another attempt moved it first."""
    params = {
        "id": endpoint_id,
        "move": to is not None,
        "xid": (to or read_at).xid,
        "cid": (to or read_at).id,
        "from_xid": read_at.xid,
        "from_id": read_at.id,
        "n": count,
        "at": at,
    }
    return (await conn.execute(_DELIVERED, params)).rowcount == 1


_SKIPPED = text(
    """
    UPDATE webhook_endpoints SET cursor_xid = CAST(:xid AS xid8), cursor_id = :cid
    WHERE id = :id AND cursor_xid = CAST(:from_xid AS xid8) AND cursor_id = :from_id
    """
)


async def move_position(conn: AsyncConnection, endpoint_id: str, read_at: Position, to: Position) -> None:
    """Pass over events the endpoint does not subscribe to, or that were just dead-lettered."""
    params = {"id": endpoint_id, "xid": to.xid, "cid": to.id, "from_xid": read_at.xid, "from_id": read_at.id}
    await conn.execute(_SKIPPED, params)


_FAILED = text(
    """
    UPDATE webhook_endpoints SET failed_attempts = failed_attempts + 1, last_error_at = :at,
        last_error = :error, failing_since = COALESCE(failing_since, :at)
    WHERE id = :id
    RETURNING failing_since
    """
)


async def record_failure(
    conn: AsyncConnection, endpoint_id: str, error: str, at: datetime
) -> datetime | None:
    """One failed attempt; returns since when the endpoint has been failing without a success."""
    row = (await conn.execute(_FAILED, {"id": endpoint_id, "error": error[:500], "at": at})).first()
    return None if row is None else row[0]
