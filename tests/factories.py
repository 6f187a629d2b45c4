"""Direct-to-database builders for test audiences (fast bulk setup; the API is tested elsewhere)."""

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from core.ids import new_id
from db.models import Customer, Segment, SegmentMember, Template


@dataclass
class Audience:
    segment_id: str
    customers: list[dict[str, Any]]

    def emails(self) -> set[str]:
        return {c["email"] for c in self.customers if c["email"] and c["email_opt_in"]}

    def phones(self) -> set[str]:
        return {c["phone"] for c in self.customers if c["phone"] and c["sms_opt_in"]}


async def make_audience(
    engine: AsyncEngine,
    tenant: str,
    n: int,
    *,
    no_phone_every: int = 0,
    email_opt_out_every: int = 0,
    club_id: str = "club_1",
    prefix: str | None = None,
) -> Audience:
    """n customers in a STATIC segment; every k-th has no phone / opted out of email."""
    tag = tenant.replace("_", "-")
    # Sinks are shared by the whole session: phones must be unique per audience, like emails.
    phone_base = secrets.randbelow(90_000) + 10_000
    prefix = prefix or f"member{secrets.token_hex(2)}-"
    customers = []
    for i in range(n):
        customers.append(
            {
                "id": new_id("customer"),
                "tenant_id": tenant,
                "external_id": f"{prefix}-{i}",
                "club_id": club_id,
                "email": f"{prefix}{i}@{tag}.example.com",
                "phone": None if no_phone_every and i % no_phone_every == 0 else f"+44{phone_base}{i:06d}",
                "first_name": f"First{i}",
                "last_name": f"Last{i}",
                "attributes": {"tier": "gold" if i % 2 else "silver"},
                "email_opt_in": not (email_opt_out_every and i % email_opt_out_every == 1),
                "sms_opt_in": True,
            }
        )
    segment_id = new_id("segment")
    async with engine.begin() as conn:
        for start in range(0, n, 5000):
            await conn.execute(insert(Customer), customers[start : start + 5000])
        await conn.execute(
            insert(Segment).values(
                id=segment_id, tenant_id=tenant, club_id=club_id, name="Members", type="STATIC"
            )
        )
        for start in range(0, n, 5000):
            await conn.execute(
                insert(SegmentMember),
                [{"segment_id": segment_id, "customer_id": c["id"]} for c in customers[start : start + 5000]],
            )
    return Audience(segment_id, customers)


async def make_templates(engine: AsyncEngine, tenant: str) -> tuple[str, str]:
    email_id, sms_id = new_id("template"), new_id("template")
    async with engine.begin() as conn:
        await conn.execute(
            insert(Template),
            [
                {
                    "id": email_id,
                    "tenant_id": tenant,
                    "name": "Newsletter",
                    "channel": "EMAIL",
                    "subject": "Hello {{ firstName }}",
                    "html": "<p>Hi {{ firstName }} {{ lastName }}, tier {{ attributes.tier }}."
                    ' <a href="https://example.com/offer">Offer</a></p>',
                    "text": "Hi {{ firstName }}, tier {{ attributes.tier }}.",
                    "body": None,
                },
                {
                    "id": sms_id,
                    "tenant_id": tenant,
                    "name": "SMS",
                    "channel": "SMS",
                    "subject": None,
                    "html": None,
                    "text": None,
                    "body": "Hi {{ firstName }}, see you at the club!",
                },
            ],
        )
    return email_id, sms_id
