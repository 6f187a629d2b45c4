"""A large run is cut into larger pages (activities/planning.py, README "Pages of a large run"):
each page costs a fixed share of CPU, so the run's size picks the page size, between
CAMPAIGNS_BATCH_SIZE and CAMPAIGNS_LARGE_BATCH_SIZE, and each page is sent with the largest
planned size as its limit, so it loads every recipient in its bounds."""

from collections import Counter
from typing import Any

from activities.planning import page_size
from core.messages import PlanPagesInput, PlanPagesResult, SendBatchInput
from core.settings import AccountRateLimit, Settings
from tests.conftest import Stack, StackFactory
from tests.factories import make_audience, make_templates
from tests.helpers import create_campaign, ledger, received_emails, wait_for
from tests.history import activity_inputs, activity_results, campaign_history


def _settings(**values: Any) -> Settings:
    return Settings(environment="test", **values)


def test_a_run_is_cut_into_pages_that_grow_with_it() -> None:
    s = _settings(batch_size=2000, large_batch_size=10_000, pages_in_flight=2)
    assert page_size(None, s) == 2000  # a history from before: the batch size
    assert page_size(0, s) == 2000
    assert page_size(12_000, s) == 2000  # small runs keep several pages per window round
    assert page_size(16_000, s) == 2000
    assert page_size(40_000, s) == 5000  # 40,000 / (2 in flight x 4 rounds)
    assert page_size(100_000, s) == 10_000
    assert page_size(5_000_000, s) == 10_000  # never over the largest
    assert page_size(40_000, _settings(batch_size=2000, large_batch_size=10_000, pages_in_flight=4)) == 2500
    # The largest below the batch size: the batch size rules.
    assert page_size(100_000, _settings(batch_size=2000, large_batch_size=1000)) == 2000


def test_a_rate_limit_does_not_shrink_pages() -> None:
    # A throttled page sends for its time budget per attempt (tests/test_page_time_budget.py).
    limited = _settings(batch_size=2000, rate_limits={"sms": AccountRateLimit(per_second=50)})
    assert page_size(1_000_000, limited) == 10_000


async def _sent(make_stack: StackFactory, recipients: int) -> tuple[Stack, str, Counter[str]]:
    """A ONE_TIME email campaign of `recipients`, with batch 10 and largest pages of 40, sent to
    the end: the stack, the campaign and what the sink received per address."""
    stack = await make_stack(batch_size=10, large_batch_size=40, pages_in_flight=2, send_concurrency=4)
    audience = await make_audience(stack.engine, stack.tenant, recipients)
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, None)
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    await wait_for(stack, cid, "COMPLETED")
    return stack, cid, received_emails(stack, audience)


async def test_a_large_run_goes_out_in_larger_pages_each_loaded_whole(make_stack: StackFactory) -> None:
    stack, cid, received = await _sent(make_stack, 400)
    # Every recipient got exactly one email, and the ledger holds one SENT row each.
    assert len(received) == 400 and set(received.values()) == {1}
    assert Counter(r["outcome"] for r in await ledger(stack, cid)) == {"SENT": 400}
    events = await campaign_history(stack, cid)
    plans = activity_inputs(events, "plan_pages", PlanPagesInput)
    assert plans and {p.run_size for p in plans} == {400}
    # 400 / (2 in flight x 4 rounds) = 50, over the largest: pages of 40, sent with 40 as their limit.
    assert {r.page_size for r in activity_results(events, "plan_pages", PlanPagesResult)} == {40}
    pages = activity_inputs(events, "send_batch", SendBatchInput)
    assert len(pages) == 10 and {p.limit for p in pages} == {40}


async def test_a_small_run_keeps_pages_of_the_batch_size(make_stack: StackFactory) -> None:
    stack, cid, received = await _sent(make_stack, 60)
    assert len(received) == 60 and set(received.values()) == {1}
    # 60 / 8 = 7, under the batch size: pages of 10.
    pages = activity_inputs(await campaign_history(stack, cid), "send_batch", SendBatchInput)
    assert len(pages) == 6 and {p.limit for p in pages} == {10}
