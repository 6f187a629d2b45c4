"""`POST /campaigns/:id/test-send`: the campaign's content to a few given addresses, marked as a
test and counted in no stats (api.test_sends; README "Test sends")."""

from fastapi import APIRouter

from api.deps import PrincipalDep, StateDep
from api.errors import Problem
from api.routes.campaigns import load_campaign
from api.schemas.test_sends import TestSendBody, TestSendResult
from api.test_sends import check_budget, records, sample_customer, send_tests
from db import test_sends
from db.campaign_content import send_content
from providers.render_pool import RenderPool

router = APIRouter(prefix="/campaigns", tags=["campaigns"])


@router.post("/{campaign_id}/test-send", response_model=TestSendResult, response_model_by_alias=True)
async def test_send(
    campaign_id: str, body: TestSendBody, principal: PrincipalDep, state: StateDep
) -> TestSendResult:
    async with state.engine.begin() as conn:
        row = await load_campaign(conn, principal, campaign_id)
        tenant_id = row["tenant_id"]
        await check_budget(conn, tenant_id, len(body.emails) + len(body.phones))
        content = await send_content(conn, campaign_id=campaign_id, tenant_id=tenant_id, run_id="")
        if content is None or content.missing is not None:
            raise Problem(409, "a template of the campaign no longer exists", currentStatus=row["status"])
        customer = await sample_customer(conn, tenant_id, row["segment_id"], body.customer_id)
    pool = state.render_pool or RenderPool.shared(state.settings)
    outcomes = await send_tests(
        engine=state.engine,
        settings=state.settings,
        pool=pool,
        campaign_id=campaign_id,
        tenant_id=tenant_id,
        content=content,
        customer=customer,
        body=body,
    )
    async with state.engine.begin() as conn:
        await test_sends.record(conn, records(tenant_id, campaign_id, principal.subject, outcomes))
    return TestSendResult(campaign_id=campaign_id, results=outcomes)
