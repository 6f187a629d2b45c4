"""Two attempts of one page sending at once (a retried activity whose first attempt still runs).

Each attempt claims a message as a slot takes it, while the slot's previous message is on the wire
(activities/send/pipeline.py). A claim the other attempt won first is lost: the slot takes the next
ready message instead. Both attempts run the real pipeline (plain-template renderer, ledger writer
on Postgres, SMS slots on the Twilio-style sink), so the race is the ledger's own: every message
goes to the sink once, its row is SENT once, and the attempts' counts add up to the page.
"""

import asyncio
from collections import Counter
from typing import cast

from sqlalchemy import RowMapping, text
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.send.deliverers import SmsDeliverer
from activities.send.model import Content, Message
from activities.send.pipeline import Pipeline
from activities.send.renderer import Renderer
from activities.send.writer import LedgerWriter
from core.ids import new_id
from core.settings import Settings
from db.bench_seed import seed_ledger_run
from devstack.sinks import SmsSink
from providers.render_pool import RenderPool
from providers.sms import SmsClient

MESSAGES = 400
OUTCOMES = text("SELECT outcome, count(*) FROM deliveries WHERE run_id = :r GROUP BY outcome")


def _messages(run: str, prefix: str) -> list[Message]:
    customers = [
        {"id": f"customer_{i:05d}", "run_id": run, "phone": f"{prefix}{i:05d}", "email": None}
        for i in range(MESSAGES)
    ]
    return [Message(cast(RowMapping, c), "SMS") for c in customers]


async def test_two_attempts_of_a_page_send_each_message_once(engine: AsyncEngine, sms_sink: SmsSink) -> None:
    tenant, campaign = new_id("tenant"), new_id("campaign")
    run = f"{campaign}.r1"
    async with engine.begin() as conn:
        await seed_ledger_run(conn, tenant=tenant, campaign=campaign, run=run, targets=MESSAGES)
    prefix = f"+1{abs(hash(run)) % 10_000:04d}7"  # this test's numbers only, in the shared sink
    settings = Settings(sms_url=sms_sink.url, sms_token=sms_sink.token, sms_in_flight=8, send_concurrency=50)
    content = Content(["SMS"], None, {"body": "Hi {{ phone }}, see you at the club"})
    pool = RenderPool(processes=1)
    clients = [SmsClient(sms_sink.url, sms_sink.token, "+15550000000", max_in_flight=8) for _ in range(2)]
    writers = [LedgerWriter(engine, campaign_id=campaign, tenant_id=tenant) for _ in clients]
    pipelines = [
        Pipeline(
            tenant_id=tenant,
            renderer=Renderer(pool, tenant, content),
            deliverers=[SmsDeliverer(client, settings, tenant_id=tenant)],
            writer=writer,
            chunk=settings.send_concurrency,
        )
        for client, writer in zip(clients, writers, strict=True)
    ]
    try:
        # The same messages, one attempt from each end: they meet and contend for the same claims.
        messages = _messages(run, prefix)
        await asyncio.gather(pipelines[0].run(messages), pipelines[1].run(messages[::-1]))
    finally:
        for writer in writers:
            await writer.close()
        for client in clients:
            await client.close()
        await pool.close()

    received = Counter(m.to for m in sms_sink.messages if m.to.startswith(prefix))
    assert len(received) == MESSAGES and set(received.values()) == {1}, received.most_common(3)
    assert sum(p.sent for p in pipelines) == MESSAGES
    assert all(p.sent > 0 for p in pipelines)  # both attempts sent, and met halfway
    async with engine.connect() as conn:
        outcomes = {str(o): int(n) for o, n in await conn.execute(OUTCOMES, {"r": run})}
    assert outcomes == {"SENT": MESSAGES}
