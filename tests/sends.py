"""Run a campaign's snapshot and send activities directly (no workflow), for tests that need to act
between the two: edit a template, unsubscribe or suppress someone after the snapshot."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert, text
from temporalio.testing import ActivityEnvironment

from activities.deps import ActivityDeps
from activities.sending import SendingActivities
from activities.snapshot import SnapshotActivities
from core.constants import run_id_for
from core.ids import new_id
from core.messages import SendBatchInput, SendBatchResult, SnapshotInput, SnapshotResult
from db.models import Campaign
from tests.conftest import Stack


async def insert_campaign(
    stack: Stack,
    segment_id: str,
    *,
    email_template_id: str | None = None,
    sms_template_id: str | None = None,
) -> str:
    """An ACTIVE ONE_TIME campaign row, as the workflow would have left it (no workflow runs)."""
    campaign_id = new_id("campaign")
    channels = [c for c, t in (("EMAIL", email_template_id), ("SMS", sms_template_id)) if t]
    async with stack.engine.begin() as conn:
        await conn.execute(
            insert(Campaign).values(
                id=campaign_id,
                tenant_id=stack.tenant,
                name="direct",
                type="ONE_TIME",
                status="ACTIVE",
                channels=channels,
                segment_id=segment_id,
                email_template_id=email_template_id,
                sms_template_id=sms_template_id,
            )
        )
    return campaign_id


class DirectRun:
    """One send run of a campaign, driven step by step."""

    def __init__(self, stack: Stack, campaign_id: str, number: int = 1) -> None:
        self.stack = stack
        self.campaign_id = campaign_id
        self.run_id = run_id_for(campaign_id, number)
        self.number = number
        self.deps = ActivityDeps.build(stack.settings, stack.engine)
        self.env = ActivityEnvironment()

    async def snapshot(self) -> SnapshotResult:
        after: str | None = None
        while True:
            inp = SnapshotInput(
                campaign_id=self.campaign_id,
                tenant_id=self.stack.tenant,
                run_id=self.run_id,
                run_number=self.number,
                after=after,
            )
            result: SnapshotResult = await self.env.run(SnapshotActivities(self.deps).snapshot_audience, inp)
            if result.done:
                return result
            after = result.last_customer_id

    async def send(self) -> list[SendBatchResult]:
        results: list[SendBatchResult] = []
        after: str | None = None
        while True:
            inp = SendBatchInput(
                campaign_id=self.campaign_id,
                tenant_id=self.stack.tenant,
                run_id=self.run_id,
                after=after,
                epoch=1,
            )
            result: SendBatchResult = await self.env.run(SendingActivities(self.deps).send_batch, inp)
            results.append(result)
            if result.exhausted:
                return results
            after = result.next_cursor

    async def ledger(self) -> dict[tuple[str, str], tuple[str, str | None]]:
        """(customer id, channel) -> (outcome, reason) of this run."""
        async with self.stack.engine.connect() as conn:
            rows: Sequence[Any] = (
                await conn.execute(
                    text("SELECT customer_id, channel, outcome, reason FROM deliveries WHERE run_id = :r"),
                    {"r": self.run_id},
                )
            ).all()
        return {(r[0], r[1]): (r[2], r[3]) for r in rows}

    async def close(self) -> None:
        await self.deps.close()
