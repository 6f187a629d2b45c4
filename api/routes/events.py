"""POST /events: customer events from other services; here they record conversions (contract §8).

An event `{id, type, tenantId, clubId?, customerId, occurredAt, data}` converts, for every campaign
of its tenant whose `conversion_event` equals `type`, a recipient who was SENT a message of that
campaign at most `conversion_window_hours` (default 7 days) before `occurredAt`. One query finds
all such campaigns with each one's latest qualifying message (last-touch: CONVERTED carries that
message's channel). CONVERTED is recorded at most once per (campaign, recipient): its event key is
`converted:<campaign>:<customer>`, so a repeated or a second event changes nothing.
"""

from fastapi import APIRouter
from sqlalchemy import text

from api.deps import ConnDep, PrincipalDep
from api.schemas.events import EventAccepted, EventCreate
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


@router.post("", status_code=202, response_model=EventAccepted, response_model_by_alias=True)
async def post_event(body: EventCreate, principal: PrincipalDep, conn: ConnDep) -> EventAccepted:
    principal.require(body.tenant_id)
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
    if recorded:
        await roll_up(conn, ids=recorded)
    return EventAccepted(id=body.id, conversions_recorded=len(recorded))
