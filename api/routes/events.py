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
  (last touch: CONVERTED carries that message's channel), at most once per (campaign, recipient).

`POST /events/batch` takes up to 1,000 events in one transaction, for bursts: routing is one
statement whatever the batch size. Each event of a batch is validated on its own: the valid ones
are recorded and the invalid ones reported in the answer's `rejected` (index, path, message).
"""

import json
from dataclasses import dataclass

from fastapi import APIRouter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from api.deps import ConnDep, PrincipalDep
from api.errors import all_rejected
from api.schemas.common import BatchItemProblem, sort_batch
from api.schemas.events import EventAccepted, EventBatch, EventBatchAccepted, EventCreate
from core.enums import InteractionType
from db.rollups import NewInteraction, insert_interaction, roll_up

DEFAULT_CONVERSION_WINDOW_HOURS = 7 * 24

router = APIRouter(prefix="/events", tags=["events"])

_CONVERSIONS = text(
    """
    SELECT c.id AS campaign_id, c.tenant_id, d.id AS delivery_id, d.channel
    FROM campaigns c
    CROSS JOIN LATERAL (
        SELECT d.id, d.channel FROM deliveries d
        WHERE d.campaign_id = c.id AND d.customer_id = :customer AND d.outcome = 'SENT'
          AND d.sent_at <= :at
          AND d.sent_at >= :at - make_interval(hours => COALESCE(c.conversion_window_hours, :window))
        ORDER BY d.sent_at DESC, d.channel
        LIMIT 1
    ) d
    WHERE c.tenant_id = :tenant AND c.conversion_event = :type
    ORDER BY c.id
    """
)


_ROUTE = text(
    """
    WITH v AS (
        SELECT * FROM unnest(CAST(:tenants AS text[]), CAST(:ids AS text[]), CAST(:types AS text[]),
                             CAST(:customers AS text[]), CAST(:clubs AS text[]),
                             CAST(:occurred AS timestamptz[]), CAST(:datas AS text[]))
            AS v(tenant_id, id, type, customer_id, club_id, occurred_at, data)
    ), e AS (
        INSERT INTO customer_events (tenant_id, id, type, customer_id, club_id, occurred_at, data)
        SELECT tenant_id, id, type, customer_id, club_id, occurred_at, CAST(data AS jsonb) FROM v
        ON CONFLICT DO NOTHING
        RETURNING tenant_id, id, type, customer_id, club_id, data
    ), m AS (
        INSERT INTO trigger_matches (campaign_id, tenant_id, event_id, customer_id, state)
        SELECT c.id, c.tenant_id, e.id, e.customer_id,
               CASE WHEN c.status = 'ACTIVE' THEN 'PENDING' ELSE 'SKIPPED_PAUSED' END
        FROM e
        JOIN campaigns c
          ON c.tenant_id = e.tenant_id AND c.type = 'TRIGGERED' AND c.trigger_event = e.type
         AND c.status IN ('ACTIVE', 'PAUSED')
         AND (c.club_id IS NULL OR e.club_id IS NULL OR c.club_id = e.club_id)
         AND NOT EXISTS (
             SELECT 1 FROM jsonb_each(CASE WHEN jsonb_typeof(c.trigger_conditions) = 'object'
                                           THEN c.trigger_conditions ELSE '{}'::jsonb END) kv
             WHERE (e.data -> kv.key) IS DISTINCT FROM kv.value
         )
        ON CONFLICT DO NOTHING
        RETURNING tenant_id, event_id, state
    )
    SELECT e.tenant_id, e.id,
           (SELECT count(*) FROM m WHERE m.tenant_id = e.tenant_id AND m.event_id = e.id
                                     AND m.state = 'PENDING') AS triggered,
           (SELECT count(*) FROM m WHERE m.tenant_id = e.tenant_id AND m.event_id = e.id
                                     AND m.state = 'SKIPPED_PAUSED') AS skipped
    FROM e
    """
)


@dataclass
class Routed:
    new: set[tuple[str, str]]
    triggered: dict[tuple[str, str], int]
    skipped: dict[tuple[str, str], int]


async def store_and_route(conn: AsyncConnection, events: list[EventCreate]) -> Routed:
    rows = (
        await conn.execute(
            _ROUTE,
            {
                "tenants": [e.tenant_id for e in events],
                "ids": [e.id for e in events],
                "types": [e.type for e in events],
                "customers": [e.customer_id for e in events],
                "clubs": [e.club_id for e in events],
                "occurred": [e.occurred_at for e in events],
                "datas": [json.dumps(e.data) for e in events],
            },
        )
    ).all()
    routed = Routed(new=set(), triggered={}, skipped={})
    for tenant, event_id, triggered, skipped in rows:
        routed.new.add((tenant, event_id))
        routed.triggered[(tenant, event_id)] = int(triggered)
        routed.skipped[(tenant, event_id)] = int(skipped)
    return routed


async def record_conversions(conn: AsyncConnection, body: EventCreate) -> list[str]:
    matches = (
        await conn.execute(
            _CONVERSIONS,
            {
                "tenant": body.tenant_id,
                "type": body.type,
                "customer": body.customer_id,
                "at": body.occurred_at,
                "window": DEFAULT_CONVERSION_WINDOW_HOURS,
            },
        )
    ).mappings()
    recorded: list[str] = []
    for m in matches.all():
        interaction_id = await insert_interaction(
            conn,
            NewInteraction(
                tenant_id=m["tenant_id"],
                campaign_id=m["campaign_id"],
                customer_id=body.customer_id,
                channel=m["channel"],
                type=InteractionType.CONVERTED.value,
                occurred_at=body.occurred_at,
                delivery_id=m["delivery_id"],
                metadata={"eventId": body.id, "eventType": body.type},
                event_key=f"converted:{m['campaign_id']}:{body.customer_id}",
            ),
        )
        if interaction_id is not None:
            recorded.append(interaction_id)
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
