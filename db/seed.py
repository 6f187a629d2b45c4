"""Direct-to-database builders of audiences and templates, shared by the tests and the benchmarks.

Bulk setup straight into the tables, thousands of rows a statement: what the API would take minutes
to build is ready in milliseconds, and the API itself is exercised by its own tests. Development and
measurement only: nothing in the service calls these.
"""

import secrets
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, text
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


_GENERATED_CUSTOMERS = text(
    """
    INSERT INTO customers (id, tenant_id, external_id, email, phone, first_name, last_name, attributes)
    SELECT 'customer_' || :tag || lpad(g::text, 8, '0'), :t, :tag || g,
           :tag || g || '@bench.example.com', '+447' || lpad(g::text, 9, '0'),
           'First' || g, 'Last' || g, jsonb_build_object('tier', 'gold')
    FROM generate_series(1, :n) g
    """
)
_STATIC_SEGMENT = text("INSERT INTO segments (id, tenant_id, name, type) VALUES (:s, :t, 'all', 'STATIC')")
_GENERATED_MEMBERS = text(
    "INSERT INTO segment_members (segment_id, customer_id)"
    " SELECT :s, 'customer_' || :tag || lpad(g::text, 8, '0') FROM generate_series(1, :n) g"
)


async def generated_audience(engine: AsyncEngine, tenant: str, tag: str, n: int) -> str:
    """n customers generated inside Postgres (no rows travel: millions take seconds), all in a
    STATIC segment `segment_<tag>`, whose id is returned. `tag` keeps the ids of several
    audiences of one tenant apart."""
    segment = f"segment_{tag}"
    async with engine.begin() as conn:
        await conn.execute(_GENERATED_CUSTOMERS, {"tag": tag, "t": tenant, "n": n})
        await conn.execute(_STATIC_SEGMENT, {"s": segment, "t": tenant})
        await conn.execute(_GENERATED_MEMBERS, {"s": segment, "tag": tag, "n": n})
    return segment
