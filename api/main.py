"""The FastAPI application: `uvicorn api.main:app` serves it with settings from the environment."""

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI

from api import errors
from api.campaign_create import BackgroundReconcile
from api.deps import AppState, StateDep, storable_query
from api.edge import EdgeLimits
from api.lifecycle import CampaignControl
from api.limits import BodySizeLimit
from api.observability import ObservabilityMiddleware, bind_route_ids, metrics_endpoint
from api.rollup import BackgroundRollup
from api.routes import (
    approvals,
    campaigns,
    customers,
    estimate,
    events,
    experiments,
    follow_ups,
    policies,
    provider_accounts,
    provider_webhooks,
    resend,
    segments,
    sender_identities,
    stats,
    suppressions,
    templates,
    tenant_settings,
    test_sends,
    tracking,
    webhook_endpoints,
    webhooks,
)
from core import logs, tracing
from core.gc_tuning import tune_for_service
from core.settings import Settings, get_settings
from core.temporal import connect
from db.engine import api_timeouts, make_engine, resolve_database_url
from db.health import ping
from db.read_pool import ReadPool
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
        url = resolve_database_url(cfg)
        engine = make_engine(url, timeouts=api_timeouts(cfg), pre_ping=False)
        read_engine = make_engine(
            url,
            pool_size=cfg.api_read_pool_size,
            max_overflow=0,
            timeouts=api_timeouts(cfg),
            pre_ping=False,
            read_only=True,
        )
        read_pool = ReadPool(url, cfg.api_read_pool_size, api_timeouts(cfg))
        await read_pool.open()
        client = await connect(cfg)
        render_pool = RenderPool.from_settings(cfg)
        app.state.campaigns = AppState(
            settings=cfg,
            engine=engine,
            control=CampaignControl(client, cfg.task_queue, batches_per_run=cfg.batches_per_run),
            render_pool=render_pool,
            read_engine=read_engine,
            read_pool=read_pool,
        )
        rollup = BackgroundRollup(engine)  # counts what tracking appends (api.rollup)
        rollup.start()
        # Finishes or removes the creates a crash cut short (api.campaign_create).
        reconcile = BackgroundReconcile(engine, app.state.campaigns.control)
        reconcile.start()
        tune_for_service()
        try:
            yield
        finally:
            await app.state.campaigns.close_tracking()
            await reconcile.stop()
            await rollup.stop()
            await render_pool.close()
            await read_pool.close()
            await read_engine.dispose()
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
    for router in ROUTERS:
        app.include_router(router)

    @app.get("/health/live", tags=["health"])
    async def live() -> dict[str, str]:
        """The process answers (no database): the cheapest route, the benchmarks' baseline."""
        return {"status": "ok"}

    @app.get("/health", tags=["health"])
    async def health(st: StateDep) -> dict[str, str]:
        async with st.engine.connect() as conn:
            await ping(conn)
        return {"status": "ok"}

    return app


# Every router, included explicitly. Tracking comes first: its routes are the hottest (a burst of
# opens after a big send) and route matching walks the list in order.
ROUTERS = (
    tracking.router,
    campaigns.router,
    customers.router,
    segments.router,
    templates.router,
    suppressions.router,
    webhooks.router,
    events.router,
    stats.router,
    resend.router,
    policies.router,
    estimate.router,
    approvals.router,
    test_sends.router,
    experiments.router,
    webhook_endpoints.router,
    follow_ups.router,
    sender_identities.router,
    provider_accounts.router,
    tenant_settings.router,
    provider_webhooks.router,
)


app = create_app()
