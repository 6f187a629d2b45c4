"""FastAPI dependencies: a route's signature says what it needs (DB, caller, Temporal, settings).

Every dependency is `async def`, even the ones that never wait: FastAPI runs a plain `def`
dependency in a worker thread, and that hop cost more than the rest of a cheap route."""

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Annotated, Generic, TypeVar

from fastapi import Depends, Path, Request, Response
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.auth import Principal, decode
from api.errors import Problem, invalid, not_found
from api.lifecycle import CampaignControl
from api.schemas.common import NUL_MESSAGE
from api.tracking_writer import TrackingWriter
from core.settings import Settings
from db.campaigns import CampaignRow, owned_campaign
from db.customers import CustomerRow, owned_customer
from db.driver import driver_of
from db.read_pool import Driver, ReadPool
from db.segments import SegmentRow, owned_segment
from db.suppressions import SuppressionRow, owned_suppression
from db.templates import TemplateRow, owned_template
from providers.render_pool import RenderPool

R = TypeVar("R")


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    control: CampaignControl | None
    # Tenant templates are checked and rendered here (saves, previews), never on the event loop.
    # An app built without one (tests, benches) uses the process's shared pool for its settings.
    render_pool: RenderPool | None = None
    # Opens and clicks are stored in group commits (api.tracking_writer); built from `engine`.
    tracking: TrackingWriter | None = None
    # GET requests read here, in READ ONLY transactions (db.engine.make_engine(read_only=True) in
    # production: a pool of its own; `engine` with read-only transactions when not given).
    read_engine: AsyncEngine | None = None
    # The one-statement polled reads take a driver connection from here (db.read_pool); an app
    # built without one (in-process tests, benches) lends them one of `read_engine`'s.
    read_pool: ReadPool | None = None
    # The polled reads on `read_engine` queue here for one of its connections (db.read_pool says
    # why: the pool's own waiting cost more than a read once clients outnumbered connections).
    read_turns: asyncio.Semaphore = field(init=False)

    def __post_init__(self) -> None:
        self.read_turns = asyncio.Semaphore(self.settings.api_read_pool_size)
        if self.render_pool is None:
            self.render_pool = RenderPool.shared(self.settings)
        if self.tracking is None:
            self.tracking = TrackingWriter(self.engine)
        if self.read_engine is None:
            self.read_engine = self.engine.execution_options(postgresql_readonly=True)

    async def close_tracking(self) -> None:
        """Store the opens and clicks still queued (at shutdown, before the engine goes)."""
        if self.tracking is not None:
            await self.tracking.close()


async def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.campaigns
    return state


StateDep = Annotated[AppState, Depends(app_state)]


async def get_settings_dep(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


READ_METHODS = frozenset({"GET", "HEAD"})


async def get_conn(request: Request, state: StateDep) -> AsyncIterator[AsyncConnection]:
    """One connection and transaction per request, committed when the route returns normally.

    A GET reads: its transaction is READ ONLY, on the read engine, so a read route can never write
    by mistake. Neither pool pings a connection before lending it (db.engine.make_engine)."""
    engine = state.read_engine if request.method in READ_METHODS else state.engine
    assert engine is not None  # AppState sets read_engine
    async with engine.begin() as conn:
        yield conn


async def get_read_conn(state: StateDep) -> AsyncIterator[AsyncConnection]:
    """A read-pool connection without a transaction (`single_statement`), for the hot reads."""
    async with single_statement(state) as conn:
        yield conn


# The polled reads (the campaign list, /stats, /interactions): no BEGIN and COMMIT round trips. Not
# for a read that needs a transaction (a savepoint, as GET /segments/:id takes, needs one).
ReadConnDep = Annotated[AsyncConnection, Depends(get_read_conn, scope="function")]


# scope="function": the transaction ends when the route function returns, *before* the response is
# sent, so a client never sees a 201 for data that is not committed yet (or that fails to commit).
ConnDep = Annotated[AsyncConnection, Depends(get_conn, scope="function")]


@asynccontextmanager
async def single_statement(state: AppState) -> AsyncIterator[AsyncConnection]:
    """A read-pool connection WITHOUT a transaction (psycopg autocommit), for reads (issue 19): each
    statement is its own snapshot, as it is at READ COMMITTED inside a transaction too, so this
    spares two round trips and changes nothing a read sees. In production the read pool's sessions
    are read-only (`default_transaction_read_only`, db.engine.make_engine), so it cannot write."""
    assert state.read_engine is not None  # AppState sets read_engine
    async with state.read_turns, state.read_engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        yield conn


async def hot_read(state: AppState, read: Callable[[Driver], Awaitable[R]]) -> R:
    """`read` (one statement, straight to psycopg) on a connection of the read pool, in autocommit."""
    if state.read_pool is not None:
        return await state.read_pool.run(read)
    async with single_statement(state) as conn:
        return await read(await driver_of(conn))


def json_response(model: BaseModel, headers: dict[str, str] | None = None) -> Response:
    """A response model serialised once, by pydantic-core, into the body (camelCase aliases, as
    `response_model_by_alias=True` gives): FastAPI's own path validates the returned model again
    before serialising it, which costs a hot read more than building it did."""
    return Response(model.model_dump_json(by_alias=True), media_type="application/json", headers=headers)


async def get_control(state: StateDep) -> CampaignControl:
    if state.control is None:
        raise Problem(503, "the workflow service is unavailable, try again")
    return state.control


ControlDep = Annotated[CampaignControl, Depends(get_control)]


async def get_principal(request: Request, settings: SettingsDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "missing bearer token")
    return decode(token.strip(), settings)


PrincipalDep = Annotated[Principal, Depends(get_principal)]


async def get_render_pool(state: StateDep) -> RenderPool:
    assert state.render_pool is not None  # set by AppState itself
    return state.render_pool


RenderPoolDep = Annotated[RenderPool, Depends(get_render_pool)]


async def storable_query(request: Request) -> None:
    """Every query parameter of every route is text Postgres can compare: a NUL character (`%00`)
    is a 422 naming the parameter, before any route compares it in SQL and fails with a 500.
    (Decoding already turns invalid UTF-8 into U+FFFD, so no unpaired surrogate gets this far.)"""
    for name, value in request.query_params.multi_items():
        if "\x00" in value or "\x00" in name:
            raise invalid(f"query.{name.replace(chr(0), '')[:100]}", NUL_MESSAGE)


# ---- the record a path names ----------------------------------------------------------------------
#
# One way for a route to load the record its path names: `get_owned`, and the `Owned*`
# dependencies. A record of another tenant is answered exactly like a record that does not exist
# (404, the id not echoed; README "Security"), and so is an id no record can hold (one with a NUL
# character, which Postgres would refuse to compare): the caller learns nothing about ids it may
# not see.


@dataclass(frozen=True)
class Kind(Generic[R]):
    """A kind of record a path can name: how a 404 calls it, and how to read one of some tenants."""

    name: str
    load: Callable[[AsyncConnection, Collection[str], str], Awaitable[R | None]]


CAMPAIGN = Kind("campaign", owned_campaign)
CUSTOMER = Kind("customer", owned_customer)
SEGMENT = Kind("segment", owned_segment)
TEMPLATE = Kind("template", owned_template)
# An edit writes the next version from what it read: the row stays locked until the commit.
TEMPLATE_FOR_EDIT = Kind("template", partial(owned_template, for_update=True))
SUPPRESSION = Kind("suppression", owned_suppression)


def refuse_unstorable_id(name: str, id_: str) -> None:
    """The 404 of a missing `name` for an id no record can hold (NUL: Postgres would refuse it)."""
    if "\x00" in id_:
        raise not_found(name, repr(id_))


def found(name: str, id_: str, row: R | None) -> R:
    """`row`, else the 404 of a `name` that does not exist (whether missing or another tenant's)."""
    if row is None:
        raise not_found(name, id_)
    return row


async def get_owned(kind: Kind[R], id_: str, tenants: Collection[str], conn: AsyncConnection) -> R:
    """The record `id_` of one of `tenants`, else the 404 of a record that does not exist."""
    refuse_unstorable_id(kind.name, id_)
    return found(kind.name, id_, await kind.load(conn, tenants, id_))


def owned(kind: Kind[R], param: str) -> Callable[..., Awaitable[R]]:
    """A dependency giving the record named by the path parameter `param`, of the caller's tenants."""

    async def dependency(id_: Annotated[str, Path(alias=param)], principal: PrincipalDep, conn: ConnDep) -> R:
        return await get_owned(kind, id_, principal.tenants, conn)

    return dependency


OwnedCampaign = Annotated[CampaignRow, Depends(owned(CAMPAIGN, "campaign_id"))]
OwnedCustomer = Annotated[CustomerRow, Depends(owned(CUSTOMER, "customer_id"))]
OwnedSegment = Annotated[SegmentRow, Depends(owned(SEGMENT, "segment_id"))]
OwnedTemplate = Annotated[TemplateRow, Depends(owned(TEMPLATE, "template_id"))]
EditedTemplate = Annotated[TemplateRow, Depends(owned(TEMPLATE_FOR_EDIT, "template_id"))]
OwnedSuppression = Annotated[SuppressionRow, Depends(owned(SUPPRESSION, "suppression_id"))]
