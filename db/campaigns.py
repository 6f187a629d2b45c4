"""Campaign records as the API writes and reads them: each statement in one function, every record
a typed `CampaignRow`.

The lifecycle columns (status and its timestamps, the counts) are the workflow's, written by
db.campaign_state; this module writes what a user sets (create, PATCH of the plain fields, delete)
and answers the reads of the API. A row whose `state_version` is still 0 has never been written by
its workflow: the create that wrote it may not have started the workflow yet, and
`unconfirmed_campaigns` lists such rows for the reconcile step (docs/architecture.md "Creating a
campaign").
"""

from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, fields
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import CursorResult, RowMapping, and_, delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from db.driver import driver_of
from db.models import Campaign
from db.pages import Slice, Window
from db.rows import row_of

FINAL_STATUSES = ("COMPLETED", "CANCELLED")


@dataclass(frozen=True)
class NewCampaign:
    """What a create writes: the user's fields, already checked and in their stored form.

    A new user field is one more attribute here (and one line in api.campaign_writes)."""

    id: str
    tenant_id: str
    club_id: str | None
    name: str
    type: str
    description: str | None
    status: str
    channels: list[str]
    segment_id: str | None
    email_template_id: str | None
    sms_template_id: str | None
    timezone: str
    conversion_event: str | None
    conversion_window_hours: int | None
    schedule: dict[str, Any] | None
    trigger_event: str | None
    trigger_conditions: dict[str, Any] | None
    policy: dict[str, Any] | None
    deliver_at: dict[str, Any] | None
    holdout_percent: float
    ab_test: dict[str, Any] | None
    sender_identity_id: str | None
    created_by: str | None
    idempotency_key: str | None
    idempotency_hash: str | None


@dataclass(frozen=True)
class CampaignRow(NewCampaign):
    """One stored campaign: what its create wrote, and what its workflow and the API wrote since
    (its status and timestamps, the counts of its runs, its approval, its A/B winner...)."""

    scheduled_at: datetime | None
    target_count: int | None
    skipped_count: int
    unknown_count: int
    started_at: datetime | None
    paused_at: datetime | None
    resumed_at: datetime | None
    cancelled_at: datetime | None
    completed_at: datetime | None
    next_run_at: datetime | None
    last_run_at: datetime | None
    run_count: int
    last_error: str | None
    approved_by: str | None
    approved_at: datetime | None
    expected_finish_at: datetime | None
    ab_winner: str | None
    ab_decision: dict[str, Any] | None
    state_version: int
    created_at: datetime
    updated_at: datetime
    source_campaign_id: str | None = None
    follow_up: dict[str, Any] | None = None

    @classmethod
    def of(cls, row: RowMapping) -> "CampaignRow":
        return row_of(cls, row)

    def as_mapping(self) -> dict[str, Any]:
        """The row as a mapping of column names, for the readers that take one."""
        return asdict(self)


@dataclass(frozen=True)
class CampaignFilter:
    """A listing's conditions: one tenant, optionally one club, status and type."""

    tenant_id: str
    club_id: str | None = None
    status: str | None = None
    type: str | None = None


# The columns a PATCH writes outside the workflow (the DRAFT-only ones go through its edit).
PLAIN_FIELDS = frozenset(
    {
        "name",
        "description",
        "timezone",
        "conversion_event",
        "conversion_window_hours",
        "policy",
        "deliver_at",
        "ab_test",
        "holdout_percent",
        "sender_identity_id",
    }
)


def _one(result: CursorResult[Any]) -> CampaignRow | None:
    row = result.mappings().first()
    return None if row is None else CampaignRow.of(row)


def campaign_columns(alias: str) -> str:
    """Every column of `campaigns` as a select list (`alias.col, ...`), in CampaignRow's field
    order: a driver row of them is spread into CampaignRow by position, without a dict per row."""
    return ", ".join(f"{alias}.{f.name}" for f in fields(CampaignRow))


# The columns in CampaignRow's order: the row is spread into it by position.
_OWNED = (
    f"SELECT {campaign_columns('c')} FROM campaigns c"
    " WHERE id = %(id)s AND tenant_id = ANY(%(tenants)s) LIMIT 1"
)


async def owned_campaign(
    conn: AsyncConnection, tenants: Collection[str], campaign_id: str
) -> CampaignRow | None:
    """The campaign with this id if it belongs to one of `tenants`. Every route naming a campaign
    reads it first, so it goes straight to the driver, prepared (`driver_of`)."""
    driver = await driver_of(conn)
    async with driver.cursor() as cursor:
        await cursor.execute(_OWNED, {"id": campaign_id, "tenants": list(tenants)}, prepare=True)
        row = await cursor.fetchone()
    return None if row is None else CampaignRow(*row)


async def lock_idempotency_key(conn: AsyncConnection, tenant_id: str, key: str) -> None:
    """Make requests with one key take turns until this transaction ends: a concurrent retry then
    finds the first one's campaign instead of a unique-key error."""
    lock = func.hashtextextended(f"{tenant_id}\u001f{key}", 0)
    await conn.execute(select(func.pg_advisory_xact_lock(lock)))


async def campaign_by_idempotency_key(conn: AsyncConnection, tenant_id: str, key: str) -> CampaignRow | None:
    """The campaign a create with this Idempotency-Key wrote, if any."""
    keyed = select(Campaign.__table__).where(Campaign.tenant_id == tenant_id, Campaign.idempotency_key == key)
    return _one(await conn.execute(keyed.limit(1)))


async def insert_campaign(conn: AsyncConnection, new: NewCampaign) -> None:
    """Write a new campaign (an IntegrityError when its Idempotency-Key is taken)."""
    await conn.execute(insert(Campaign).values(**asdict(new)))


async def update_plain_fields(conn: AsyncConnection, campaign_id: str, values: Mapping[str, Any]) -> bool:
    """Write `values` (columns of PLAIN_FIELDS) unless the campaign is final; False if it is."""
    unknown = set(values) - PLAIN_FIELDS
    if unknown:
        raise ValueError(f"not plain campaign fields: {sorted(unknown)}")
    result = await conn.execute(
        update(Campaign)
        .where(Campaign.id == campaign_id, Campaign.status.not_in(FINAL_STATUSES))
        .values(**values, updated_at=datetime.now(UTC))
    )
    return bool(result.rowcount)


async def delete_campaign(conn: AsyncConnection, campaign_id: str) -> None:
    """Remove the campaign's row (a deleted DRAFT)."""
    await conn.execute(delete(Campaign).where(Campaign.id == campaign_id))


async def delete_unconfirmed(conn: AsyncConnection, campaign_id: str) -> bool:
    """Remove the campaign only while its workflow has never written it; False if it has since."""
    result = await conn.execute(
        delete(Campaign).where(
            Campaign.id == campaign_id, Campaign.state_version == 0, Campaign.status == "DRAFT"
        )
    )
    return bool(result.rowcount)


# The list's count and page in ONE statement, a constant (so psycopg prepares one plan): a filter
# not given is NULL and drops out; the tenant's (tenant_id, created_at) index serves both parts.
_FILTERS = """tenant_id = %(tenant_id)s
    AND (CAST(%(club_id)s AS text) IS NULL OR club_id = %(club_id)s)
    AND (CAST(%(status)s AS text) IS NULL OR status = %(status)s)
    AND (CAST(%(type)s AS text) IS NULL OR type = %(type)s)"""
_PAGE = f"""
    SELECT t.page_total, {campaign_columns("p")}
    FROM (SELECT count(*) AS page_total FROM campaigns WHERE {_FILTERS}) t
    LEFT JOIN LATERAL (
        SELECT * FROM campaigns WHERE {_FILTERS}
        ORDER BY created_at DESC, id DESC OFFSET %(skip)s LIMIT %(take)s
    ) p ON true
"""


async def campaign_page(conn: AsyncConnection, where: CampaignFilter, window: Window) -> Slice[CampaignRow]:
    """One page of a tenant's campaigns, newest first (the order and count of db.pages.newest_first),
    as ONE prepared statement straight to the driver (`driver_of`): the count, and the page joined
    to it laterally, so an empty page still carries the count (a row whose columns are all null)."""
    params = {
        "tenant_id": where.tenant_id,
        "club_id": where.club_id,
        "status": where.status,
        "type": where.type,
        "skip": window.skip,
        "take": window.take,
    }
    driver = await driver_of(conn)
    async with driver.cursor() as cursor:
        await cursor.execute(_PAGE, params, prepare=True)
        rows = await cursor.fetchall()
    total = int(rows[0][0]) if rows else 0
    # The columns are named in CampaignRow's order: each row is spread into it by position.
    return Slice(total, [CampaignRow(*r[1:]) for r in rows if r[1] is not None])


async def unconfirmed_campaigns(
    conn: AsyncConnection, created_before: datetime, tenant_id: str | None = None, limit: int = 100
) -> list[CampaignRow]:
    """DRAFT campaigns created before `created_before` (of one tenant, if given) that their
    workflow has never written, oldest first."""
    # A create writes DRAFT; a row in another status was not written by a create.
    where = and_(
        Campaign.state_version == 0, Campaign.status == "DRAFT", Campaign.created_at < created_before
    )
    if tenant_id is not None:
        where = and_(where, Campaign.tenant_id == tenant_id)
    result = await conn.execute(
        select(Campaign.__table__).where(where).order_by(Campaign.created_at).limit(limit)
    )
    return [CampaignRow.of(r) for r in result.mappings()]
