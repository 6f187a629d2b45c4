"""The ledger settled on provider evidence (README "Provider webhooks").

An UNKNOWN delivery is one whose send got no answer: the message may or may not have left. A
provider's later word about it is evidence that it did: a delivery (or any event only a sent
message can have) settles it to SENT, a hard bounce to BOUNCED. Only UNKNOWN rows move, so a
delivery event never downgrades a BOUNCED row nor rewrites a SENT one. Every event acted on
for a message is kept in `delivery_evidence` (provider, event id, type, time), whether or not it
moved the row; `settled` says which outcome it set, if any.
"""

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from core.enums import Outcome


@dataclass(frozen=True)
class Evidence:
    """What one provider event said about one of our messages."""

    delivery_id: str
    provider: str
    event_id: str
    event_type: str
    occurred_at: datetime
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class EvidenceRow:
    delivery_id: str
    provider: str
    event_id: str
    event_type: str
    occurred_at: datetime
    settled: str | None


_SETTLE = text(
    """
    UPDATE deliveries SET outcome = CAST(:outcome AS text), reason = CAST(:reason AS text),
        sent_at = CASE WHEN CAST(:outcome AS text) = 'FAILED' THEN sent_at
                       ELSE COALESCE(sent_at, CAST(:at AS timestamptz)) END,
        updated_at = now()
    WHERE id = :id AND outcome = 'UNKNOWN'
    RETURNING campaign_id
    """
)
_RECOUNT_UNKNOWN = text(
    """
    UPDATE campaigns SET updated_at = now(),
        unknown_count = (SELECT count(*) FROM deliveries WHERE campaign_id = :c AND outcome = 'UNKNOWN')
    WHERE id = :c
    """
)
_ADD = text(
    """
    INSERT INTO delivery_evidence
        (delivery_id, provider, event_id, event_type, occurred_at, settled, detail)
    VALUES (:delivery, :provider, :event, :type, :at, :settled, CAST(:detail AS jsonb))
    ON CONFLICT ON CONSTRAINT pk_delivery_evidence DO NOTHING
    """
)
_OF_DELIVERY = text(
    """
    SELECT delivery_id, provider, event_id, event_type, occurred_at, settled
    FROM delivery_evidence WHERE delivery_id = :delivery ORDER BY occurred_at, event_id
    """
)


async def settle_unknown(
    conn: AsyncConnection, evidence: Evidence, outcome: Outcome, reason: str | None = None
) -> bool:
    """Move the delivery from UNKNOWN to `outcome` on this evidence, record the evidence, and
    recount the campaign's UNKNOWN rows; False (evidence still recorded) when it was not UNKNOWN."""
    campaign_id = (
        await conn.execute(
            _SETTLE,
            {
                "id": evidence.delivery_id,
                "outcome": outcome.value,
                "reason": reason,
                "at": evidence.occurred_at,
            },
        )
    ).scalar_one_or_none()
    await add_evidence(conn, evidence, outcome if campaign_id is not None else None)
    if campaign_id is None:
        return False
    await conn.execute(_RECOUNT_UNKNOWN, {"c": campaign_id})
    return True


async def add_evidence(conn: AsyncConnection, evidence: Evidence, settled: Outcome | None = None) -> None:
    """Keep what the provider said about the message (once per provider event)."""
    await conn.execute(
        _ADD,
        {
            "delivery": evidence.delivery_id,
            "provider": evidence.provider,
            "event": evidence.event_id[:300],
            "type": evidence.event_type,
            "at": evidence.occurred_at,
            "settled": None if settled is None else settled.value,
            "detail": json.dumps(evidence.detail),
        },
    )


async def evidence_of(conn: AsyncConnection, delivery_id: str) -> list[EvidenceRow]:
    """Every provider event recorded for one message, oldest first."""
    rows = await conn.execute(_OF_DELIVERY, {"delivery": delivery_id})
    return [EvidenceRow(**row) for row in rows.mappings()]
