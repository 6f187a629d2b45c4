"""The approval rules the campaign routes apply (README "Approvals"): schedule and execute need an
approval when the tenant's policy requires one; an edit of the campaign withdraws it."""

from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from api.errors import Problem
from api.lifecycle import CampaignControl
from core.enums import CampaignStatus
from core.messages import ApprovalRequest, TransitionResult
from core.policy import defaults
from core.settings import Settings
from db import approvals, policies


async def require_approval(conn: AsyncConnection, settings: Settings, row: dict[str, Any]) -> None:
    """409 when the tenant requires approvals and this campaign has none (schedule, execute)."""
    policy = await policies.tenant_policy(conn, row["tenant_id"], defaults(settings.sms_quiet_hours_default))
    if policy.require_approval and row.get("approved_at") is None:
        raise Problem(
            409,
            "the campaign needs an approval from another user before it is sent",
            currentStatus=row["status"],
        )


async def withdraw_approval(control: CampaignControl, conn: AsyncConnection, row: dict[str, Any]) -> None:
    """An edit after approval withdraws it (the approver saw something else)."""
    if row.get("approved_at") is None or row["status"] not in (
        CampaignStatus.DRAFT,
        CampaignStatus.SCHEDULED,
    ):
        return
    await control.update(
        row["id"], "approve", TransitionResult, ApprovalRequest(by=None), status=row["status"]
    )
    await approvals.set_approval(conn, row["id"], None, None)
