"""Outcome rules shared by the send path and the lifecycle (README "Delivery guarantees (the ledger)").

- `mark_orphans_unknown` / `mark_campaign_orphans_unknown`: the in-flight rule. A PENDING row is a
  claim whose answer never came: the message may have left, so it becomes UNKNOWN with reason
  CRASHED_IN_FLIGHT and is never resent by itself (only an operator's resend does).
- `mark_email_bounced`: a hard bounce marks the customer, so no later campaign emails them.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection


@dataclass(frozen=True)
class MessageOutcome:
    """What every ledger row says about its message: whose, on which channel, to which address,
    and how it ended (outcome, reason, detail). The rows of the ledger's readers and writers
    extend it."""

    customer_id: str
    channel: str
    outcome: str
    reason: str | None
    detail: str | None
    address: str | None


# The in-flight rule, once; each scope below only narrows the rows it applies to.
_PENDING_TO_UNKNOWN = (
    "UPDATE deliveries SET outcome = 'UNKNOWN', reason = 'CRASHED_IN_FLIGHT', updated_at = now()"
    " WHERE outcome = 'PENDING'"
)
_ORPHANS_OF_PAGE = text(
    _PENDING_TO_UNKNOWN
    + " AND run_id = ANY(:runs) AND customer_id BETWEEN :first AND :last"
    + " AND (channel <> 'SMS' OR NOT :keep_sms)"
)
_ORPHANS_OF_CAMPAIGN = text(_PENDING_TO_UNKNOWN + " AND campaign_id = :c")

# COALESCE keeps the first bounce: a later one (a resend, another webhook) does not move it.
_EMAIL_BOUNCED = text(
    """
    UPDATE customers c SET email_bounced_at = COALESCE(c.email_bounced_at, b.at), updated_at = now()
    FROM unnest(CAST(:customers AS text[]), CAST(:times AS timestamptz[])) AS b(customer_id, at)
    WHERE c.id = b.customer_id AND c.tenant_id = :tenant
    """
)


async def mark_orphans_unknown(
    conn: AsyncConnection, *, runs: Sequence[str], first: str, last: str, keep_sms: bool = False
) -> int:
    """A retried page's claims that a dead attempt never answered become UNKNOWN (the in-flight
    rule above); returns how many.

    The page is its runs (a TRIGGERED page holds one run per event) and its customer id range
    `first`..`last` (inclusive), exact for a one-run page. With `keep_sms` (an SMS provider that
    deduplicates on the idempotency key) in-flight SMS rows stay PENDING: the page posts them again
    under the same delivery id, and the provider recognises the ones it already has.
    """
    params = {"runs": list(runs), "first": first, "last": last, "keep_sms": keep_sms}
    return int((await conn.execute(_ORPHANS_OF_PAGE, params)).rowcount)


async def mark_campaign_orphans_unknown(conn: AsyncConnection, campaign_id: str) -> int:
    """Every run of a campaign that sends nothing more: a row still PENDING (a page cut off by a
    cancel its grace period did not cover) becomes UNKNOWN; returns how many."""
    return int((await conn.execute(_ORPHANS_OF_CAMPAIGN, {"c": campaign_id})).rowcount)


async def mark_email_bounced(
    conn: AsyncConnection,
    tenant_id: str,
    customer_ids: Sequence[str],
    at: datetime | Sequence[datetime],
) -> None:
    """Mark the customers' email as hard-bounced, so no later campaign emails them.

    `at` is one time for every customer, or one per customer (same order). The first bounce
    recorded for a customer stays (a customer named twice keeps the earliest time); only customers
    of `tenant_id` are touched. The customers are passed in id order, so concurrent callers ask
    for their rows in the same order.
    """
    times = [at] * len(customer_ids) if isinstance(at, datetime) else list(at)
    first: dict[str, datetime] = {}
    for customer_id, when in zip(customer_ids, times, strict=True):
        if customer_id not in first or when < first[customer_id]:
            first[customer_id] = when
    if not first:
        return
    keys = sorted(first)
    await conn.execute(
        _EMAIL_BOUNCED, {"tenant": tenant_id, "customers": keys, "times": [first[k] for k in keys]}
    )
