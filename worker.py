"""Runs a campaign worker: the CampaignWorkflow and every activity it needs.

`python worker.py` reads `CAMPAIGNS_*` settings from the environment.
"""

import asyncio
import logging
from datetime import timedelta

from temporalio.client import Client
from temporalio.worker import Worker

from activities.deps import ActivityDeps
from activities.registry import all_activities
from core.settings import Settings, get_settings
from core.temporal import connect
from db.engine import make_engine, resolve_database_url
from workflows.campaign import CampaignWorkflow
from workflows.resend import ResendUnknownWorkflow

log = logging.getLogger("campaigns.worker")


def build_worker(client: Client, settings: Settings, deps: ActivityDeps) -> Worker:
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[CampaignWorkflow, ResendUnknownWorkflow],
        activities=all_activities(deps),
        max_concurrent_activities=50,
        # Frequent heartbeats: a cancelled or halted batch hears about it quickly.
        max_heartbeat_throttle_interval=timedelta(seconds=1),
        default_heartbeat_throttle_interval=timedelta(seconds=1),
    )


async def run_worker(settings: Settings) -> None:
    engine = make_engine(resolve_database_url(settings), pool_size=settings.send_concurrency + 4)
    deps = ActivityDeps.build(settings, engine)
    client = await connect(settings)
    worker = build_worker(client, settings, deps)
    log.info("worker polling task queue %s at %s", settings.task_queue, settings.temporal_address)
    try:
        await worker.run()
    finally:
        await deps.close()
        await engine.dispose()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        asyncio.run(run_worker(get_settings()))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
