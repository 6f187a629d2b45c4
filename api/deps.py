"""FastAPI dependencies: a route's signature says what it needs (DB, caller, Temporal, settings)."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from api.auth import Principal, decode
from api.errors import Problem
from api.lifecycle import CampaignControl
from core.settings import Settings


@dataclass
class AppState:
    settings: Settings
    engine: AsyncEngine
    control: CampaignControl | None


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.campaigns
    return state


StateDep = Annotated[AppState, Depends(app_state)]


def get_settings_dep(state: StateDep) -> Settings:
    return state.settings


SettingsDep = Annotated[Settings, Depends(get_settings_dep)]


async def get_conn(state: StateDep) -> AsyncIterator[AsyncConnection]:
    """One connection and transaction per request, committed when the route returns normally."""
    async with state.engine.begin() as conn:
        yield conn


# scope="function": the transaction ends when the route function returns, *before* the response is
# sent, so a client never sees a 201 for data that is not committed yet (or that fails to commit).
ConnDep = Annotated[AsyncConnection, Depends(get_conn, scope="function")]


def get_control(state: StateDep) -> CampaignControl:
    if state.control is None:
        raise Problem(503, "the workflow service is unavailable, try again")
    return state.control


ControlDep = Annotated[CampaignControl, Depends(get_control)]


def get_principal(request: Request, settings: SettingsDep) -> Principal:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(401, "missing bearer token")
    return decode(token.strip(), settings)


PrincipalDep = Annotated[Principal, Depends(get_principal)]
