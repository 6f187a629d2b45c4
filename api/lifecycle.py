"""The only door from the API into Temporal: start, update, query a campaign workflow.

Maps Temporal's answers to the contract's errors in one place: an illegal transition (refused by
an update validator or handler) is a 409 naming the current status; a campaign that fails the
pre-send check is a 422; a workflow that is gone is reported by the caller from the read model.
"""

import logging
from typing import Any, TypeVar

from pydantic import BaseModel
from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.errors import Problem
from core.constants import (
    CAMPAIGN_WORKFLOW,
    ERR_CAMPAIGN_INVALID,
    ERR_ILLEGAL_TRANSITION,
    RESEND_WORKFLOW,
    SA_CAMPAIGN_STATUS,
    SA_CAMPAIGN_TYPE,
    SA_CLUB_ID,
    SA_TENANT_ID,
    campaign_workflow_id,
)
from core.enums import CampaignStatus, CampaignType
from core.messages import CampaignWorkflowInput, ResendInput

log = logging.getLogger("campaigns.api.lifecycle")
R = TypeVar("R", bound=BaseModel)


class CampaignControl:
    def __init__(
        self, client: Client, task_queue: str, *, search_attributes: bool = True, batches_per_run: int = 200
    ) -> None:
        self.client = client
        self.task_queue = task_queue
        self.search_attributes = search_attributes
        self.batches_per_run = batches_per_run

    async def start(
        self,
        campaign_id: str,
        tenant_id: str,
        club_id: str | None,
        type_: str,
        *,
        name: str = "",
        created_by: str | None = None,
    ) -> None:
        """Start the campaign's workflow in DRAFT, labelled for operators in the Temporal UI.

        Idempotent: a second start of the same campaign (a retry after a lost answer) joins the
        workflow already running, and one that has ended is never started again (a campaign's
        workflow id is used once), so a campaign never gets two workflows."""
        attrs = None
        if self.search_attributes:
            pairs: list[SearchAttributePair[Any]] = [
                SearchAttributePair(SA_CAMPAIGN_STATUS, CampaignStatus.DRAFT.value),
                SearchAttributePair(SA_CAMPAIGN_TYPE, type_),
                SearchAttributePair(SA_TENANT_ID, tenant_id),
            ]
            if club_id:
                pairs.append(SearchAttributePair(SA_CLUB_ID, club_id))
            attrs = TypedSearchAttributes(pairs)
        try:
            await self._start(campaign_id, tenant_id, club_id, type_, name, created_by, attrs)
        except WorkflowAlreadyStartedError:
            pass  # its workflow ran and ended (a deleted DRAFT): nothing to start

    async def _start(
        self,
        campaign_id: str,
        tenant_id: str,
        club_id: str | None,
        type_: str,
        name: str,
        created_by: str | None,
        attrs: TypedSearchAttributes | None,
    ) -> None:
        await self.client.start_workflow(
            CAMPAIGN_WORKFLOW,
            CampaignWorkflowInput(
                campaign_id=campaign_id,
                tenant_id=tenant_id,
                club_id=club_id,
                type=CampaignType(type_),
                batches_per_run=self.batches_per_run,
            ),
            id=campaign_workflow_id(campaign_id),
            task_queue=self.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=attrs,
            memo={
                "campaignId": campaign_id,
                "campaignName": name,
                "tenantId": tenant_id,
                "clubId": club_id,
                "type": type_,
                "createdBy": created_by,
            },
            static_summary=f'{type_} campaign "{name}" ({campaign_id}) of tenant {tenant_id}'[:400],
            static_details=(
                f"**{name}**\n\n- campaign: `{campaign_id}`\n- type: {type_}\n- tenant: `{tenant_id}`"
                f"\n- club: `{club_id or '-'}`\n- created by: `{created_by or '-'}`\n\n"
                "Signals `pause`, `resume`, `cancel` steer it; the `progress` query shows live counts; "
                "the current details say where it stands."
            ),
        )

    async def workflow_exists(self, campaign_id: str) -> bool | None:
        """Whether the campaign's workflow was ever started; None when Temporal cannot say."""
        try:
            await self.client.get_workflow_handle(campaign_workflow_id(campaign_id)).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            log.warning("cannot tell whether campaign %s has a workflow: %s", campaign_id, err)
            return None
        except Exception as err:  # the connection itself failed
            log.warning("cannot tell whether campaign %s has a workflow: %r", campaign_id, err)
            return None
        return True

    async def update(
        self, campaign_id: str, name: str, result_type: type[R], arg: Any = None, *, status: str
    ) -> R:
        """Run a lifecycle update; `status` (from the read model) names the state if the workflow
        has already ended."""
        handle = self.client.get_workflow_handle(campaign_workflow_id(campaign_id))
        args = [] if arg is None else [arg]
        try:
            result: R = await handle.execute_update(name, args=args, result_type=result_type)
            return result
        except WorkflowUpdateFailedError as err:
            raise _problem_from(err.cause, name) from None
        except RPCError as err:
            if err.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.FAILED_PRECONDITION):
                # The workflow has finished (COMPLETED/CANCELLED) or is gone.
                raise Problem(
                    409,
                    f"cannot {name} a campaign that is {status}",
                    currentStatus=status,
                ) from None
            log.error("temporal update %s failed: %s", name, err)
            raise Problem(503, "the workflow service is unavailable, try again") from None

    async def start_resend(self, campaign_id: str, tenant_id: str) -> str:
        """Start the resend of UNKNOWN deliveries; one at a time per campaign (else 409)."""
        workflow_id = f"{campaign_workflow_id(campaign_id)}-resend"
        try:
            await self.client.start_workflow(
                RESEND_WORKFLOW,
                ResendInput(campaign_id=campaign_id, tenant_id=tenant_id),
                id=workflow_id,
                task_queue=self.task_queue,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
            )
        except WorkflowAlreadyStartedError:
            raise Problem(409, "a resend of this campaign is already running") from None
        return workflow_id


def _problem_from(cause: BaseException | None, action: str) -> Problem:
    if isinstance(cause, ApplicationError):
        details = cause.details[0] if cause.details else {}
        details = details if isinstance(details, dict) else {}
        if cause.type == ERR_ILLEGAL_TRANSITION:
            return Problem(409, cause.message, currentStatus=details.get("status"))
        if cause.type == ERR_CAMPAIGN_INVALID:
            problems = details.get("problems") or [cause.message]
            errors = [_error_item(p) for p in problems]
            if "field" in details:
                errors = [{"path": f"$.{details['field']}", "message": cause.message}]
            return Problem(422, cause.message, errors=errors)
        return Problem(422, cause.message)
    log.error("update %s failed unexpectedly: %r", action, cause)
    return Problem(500, "internal error")


def _error_item(problem: str) -> dict[str, str]:
    field, _, message = problem.partition(": ")
    if message and field.replace("_", "").isalnum():
        return {"path": f"$.{field}", "message": message}
    return {"path": "$", "message": problem}
