"""What operators see in the Temporal UI (issue 9): search attributes, memo, summary, details, signals."""

import asyncio
from typing import Any

from temporalio.api.sdk.v1 import WorkflowMetadata

from core.constants import SA_CAMPAIGN_STATUS, SA_CAMPAIGN_TYPE, SA_CLUB_ID, SA_TENANT_ID
from tests.conftest import Stack, StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import create_campaign, wait_for


async def current_details(stack: Stack, campaign_id: str) -> str:
    handle = stack.client.get_workflow_handle(f"campaign-{campaign_id}")
    metadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return str(metadata.current_details)


async def described(stack: Stack, campaign_id: str) -> Any:
    return await stack.client.get_workflow_handle(f"campaign-{campaign_id}").describe()


async def until_status_attribute(stack: Stack, campaign_id: str, status: str) -> Any:
    for _ in range(100):
        d = await described(stack, campaign_id)
        if d.typed_search_attributes.get(SA_CAMPAIGN_STATUS) == status:
            return d
        await asyncio.sleep(0.1)
    raise AssertionError(f"search attribute never became {status}")


async def test_search_attributes_memo_summary_and_details_follow_the_campaign(
    make_stack: StackFactory,
) -> None:
    # Small pages and runs: the labels must survive continue-as-new.
    stack = await make_stack(batch_size=10, send_concurrency=2, batches_per_run=5)
    audience = await make_audience(stack.engine, stack.tenant, 400, club_id="club_ui")
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, None, clubId="club_ui", name="Autumn open day")

    d = await described(stack, cid)
    attrs = d.typed_search_attributes
    assert attrs.get(SA_CAMPAIGN_STATUS) == "DRAFT"
    assert attrs.get(SA_CAMPAIGN_TYPE) == "ONE_TIME"
    assert attrs.get(SA_TENANT_ID) == stack.tenant and attrs.get(SA_CLUB_ID) == "club_ui"
    assert await d.memo_value("campaignName") == "Autumn open day"
    assert await d.memo_value("tenantId") == stack.tenant
    assert "Autumn open day" in (await d.static_summary() or "")
    assert cid in (await d.static_details() or "")

    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    for _ in range(200):
        details = await current_details(stack, cid)
        if "page" in details and "recipients sent" in details:
            break
        await asyncio.sleep(0.05)
    assert details.startswith("ACTIVE: sending page ") and "of 400 recipients sent" in details, details

    # The operator's signal from the UI: pause, then the details and attribute say so.
    await stack.client.get_workflow_handle(f"campaign-{cid}").signal("pause")
    await wait_for(stack, cid, "PAUSED")
    await until_status_attribute(stack, cid, "PAUSED")
    assert (await current_details(stack, cid)).startswith("PAUSED: sending after page ")
    await stack.client.get_workflow_handle(f"campaign-{cid}").signal("resume")
    body = await wait_for(stack, cid, "COMPLETED")
    d = await until_status_attribute(stack, cid, "COMPLETED")
    assert await d.memo_value("campaignName") == "Autumn open day"
    details = await current_details(stack, cid)
    assert details == f"COMPLETED; {body['sentCount']:,} recipients sent", details
