"""The FastAPI application: `uvicorn api.main:app` serves it with settings from the environment."""

import importlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from sqlalchemy import text

from api import errors
from api.deps import AppState, StateDep, storable_query
from api.edge import EdgeLimits
from api.lifecycle import CampaignControl
from api.limits import BodySizeLimit
from api.observability import ObservabilityMiddleware, bind_route_ids, metrics_endpoint
from api.routes import campaigns
from core import logs, tracing
from core.settings import Settings, get_settings
from core.temporal import connect
from db.engine import api_timeouts, make_engine, resolve_database_url
from providers.render_pool import RenderPool

log = logging.getLogger("campaigns.api")


def create_app(settings: Settings | None = None, state: AppState | None = None) -> FastAPI:
    """Build the app; tests pass a ready `state`, production builds it from settings at startup."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if state is not None:
            app.state.campaigns = state
            yield
            return
        cfg = settings or get_settings()
        logs.configure(cfg.log_level, cfg.log_format)
        tracing.configure(cfg.otlp_endpoint, "campaigns-api")
        engine = make_engine(resolve_database_url(cfg), timeouts=api_timeouts(cfg))
        client = await connect(cfg)
        render_pool = RenderPool.from_settings(cfg)
        app.state.campaigns = AppState(
            settings=cfg,
            engine=engine,
            control=CampaignControl(client, cfg.task_queue, batches_per_run=cfg.batches_per_run),
            render_pool=render_pool,
        )
        try:
            yield
        finally:
            await render_pool.close()
            await engine.dispose()
            tracing.shutdown()

    app = FastAPI(
        title="Campaigns API",
        version="0.1.0",
        description="Campaign lifecycle management, scheduling, and statistics.",
        lifespan=lifespan,
        # Once routing knows the route: campaign and tenant ids for the request's log lines.
        # Then: no query parameter holds a NUL character (a 422 instead of a database error).
        dependencies=[Depends(bind_route_ids), Depends(storable_query)],
    )
    if state is not None:
        app.state.campaigns = state
    errors.install(app)
    limit = (settings or (state.settings if state else None) or get_settings()).max_body_bytes
    app.add_middleware(BodySizeLimit, limit=limit)
    app.add_middleware(EdgeLimits)  # header sizes and rate budgets, before any route runs
    app.add_middleware(ObservabilityMiddleware)  # outermost: counts and times every answer
    app.add_api_route("/metrics", metrics_endpoint, methods=["GET"], include_in_schema=False)
    for module in _route_modules():
        app.include_router(module.router)

    @app.get("/health", tags=["health"])
    async def health(st: StateDep) -> dict[str, str]:
        async with st.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
        return {"status": "ok"}

    return app


def _route_modules() -> list[Any]:
    modules: list[Any] = [campaigns]
    for name in (
        "customers",
        "segments",
        "templates",
        "suppressions",
        "tracking",
        "webhooks",
        "events",
        "stats",
        "resend",
    ):
        try:
            modules.append(importlib.import_module(f"api.routes.{name}"))
        except ModuleNotFoundError as err:
            if err.name != f"api.routes.{name}":
                raise
    return modules


app = create_app()
