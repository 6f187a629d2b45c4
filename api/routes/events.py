"""POST /events: customer events from other services.

README "Campaign types" (TRIGGERED) and "Delivery guarantees (the ledger)" state the rules.

Each event `{id, type, tenantId, clubId?, customerId, occurredAt, data}` is stored once per
(tenant, id): a repeated id is accepted (202) and ignored. A new event, in the same transaction:
- is routed to every TRIGGERED campaign of its tenant that is ACTIVE or PAUSED, whose
  `triggerEvent` equals its type, whose every `triggerConditions` key equals `data[key]` (JSON
  equality), and whose club (if set) is the event's club (when it names one). ACTIVE campaigns
  queue it (their workflow drains the queue and sends to the customer once); PAUSED campaigns
  count it as skipped and never send it;
- converts, for every campaign whose `conversion_event` equals its type, a recipient who was SENT a
  message of that campaign at most `conversion_window_hours` (default 7 days) before `occurredAt`
  (last touch: CONVERTED carries that message's channel), at most once per (campaign, recipient);
  a recipient the campaign held out (SKIPPED HOLDOUT) in that window counts as a holdout
  conversion instead (README "Holdout groups").

`POST /events/batch` takes up to 1,000 events in one transaction, for bursts: routing is one
statement whatever the batch size. Each event of a batch is validated on its own: the valid ones
are recorded and the invalid ones reported in the answer's `rejected` (index, path, message).
"""

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncConnection

from api.deps import ConnDep, PrincipalDep
from api.errors import all_rejected
from api.schemas.common import BatchItemProblem, sort_batch
from api.schemas.events import EventAccepted, EventBatch, EventBatchAccepted, EventCreate
from core.enums import InteractionType
from db.experiments import record_holdout_conversions
from db.ledger.reads import last_touches
from db.ledger.triggers import store_and_route
from db.rollups import NewInteraction, insert_interaction, roll_up

DEFAULT_CONVERSION_WINDOW_HOURS = 7 * 24

router = APIRouter(prefix="/events", tags=["events"])


async def record_conversions(conn: AsyncConnection, body: EventCreate) -> list[str]:
    touches = await last_touches(
        conn, body.tenant_id, body.customer_id, body.type, body.occurred_at, DEFAULT_CONVERSION_WINDOW_HOURS
    )
    recorded: list[str] = []
    for touch in touches:
        interaction_id = await insert_interaction(
            conn,
            NewInteraction(
                tenant_id=touch.tenant_id,
                campaign_id=touch.campaign_id,
                customer_id=body.customer_id,
                channel=touch.channel,
                type=InteractionType.CONVERTED.value,
                occurred_at=body.occurred_at,
                delivery_id=touch.delivery_id,
                metadata={"eventId": body.id, "eventType": body.type},
                event_key=f"converted:{touch.campaign_id}:{body.customer_id}",
            ),
        )
        if interaction_id is not None:
            recorded.append(interaction_id)
    # The control side: a person a campaign held out converts too (README "Holdout groups").
    await record_holdout_conversions(
        conn,
        tenant_id=body.tenant_id,
        customer_id=body.customer_id,
        event_type=body.type,
        event_id=body.id,
        at=body.occurred_at,
        window_hours=DEFAULT_CONVERSION_WINDOW_HOURS,
    )
    return recorded


@router.post("", status_code=202, response_model=EventAccepted, response_model_by_alias=True)
async def post_event(body: EventCreate, principal: PrincipalDep, conn: ConnDep) -> EventAccepted:
    principal.require(body.tenant_id)
    routed = await store_and_route(conn, [body])
    key = (body.tenant_id, body.id)
    if key not in routed.new:
        return EventAccepted(
            id=body.id, duplicate=True, triggered=0, skipped_paused=0, conversions_recorded=0
        )
    recorded = await record_conversions(conn, body)
    if recorded:
        await roll_up(conn, ids=recorded)
    return EventAccepted(
        id=body.id,
        duplicate=False,
        triggered=routed.triggered[key],
        skipped_paused=routed.skipped[key],
        conversions_recorded=len(recorded),
    )


@router.post(
    "/batch",
    status_code=202,
    response_model=EventBatchAccepted,
    response_model_by_alias=True,
    response_model_exclude_none=True,
)
async def post_events(body: EventBatch, principal: PrincipalDep, conn: ConnDep) -> EventBatchAccepted:
    """Up to 1,000 events. Each is judged on its own: the valid ones are recorded (202) and the
    others listed in `rejected` with their index, path and message; a batch with no valid event at
    all is a 422 that records nothing."""
    batch = sort_batch(body.events, "events")
    if not batch.valid:
        raise all_rejected(batch.problems)
    events = batch.valid
    for event in events:
        principal.require(event.tenant_id)
    routed = await store_and_route(conn, events)
    recorded: list[str] = []
    seen: set[tuple[str, str]] = set()
    for event in events:
        key = (event.tenant_id, event.id)
        if key in routed.new and key not in seen:
            seen.add(key)
            recorded.extend(await record_conversions(conn, event))
    if recorded:
        await roll_up(conn, ids=recorded)
    return EventBatchAccepted(
        accepted=len(events),
        duplicates=len(events) - len(seen),
        triggered=sum(routed.triggered.values()),
        skipped_paused=sum(routed.skipped.values()),
        conversions_recorded=len(recorded),
        rejected=[BatchItemProblem(**p) for p in batch.problems] or None,
    )
