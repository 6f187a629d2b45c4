"""How fast pause, resume and cancel answer while a campaign is sending.

    .venv/bin/python -m bench.lifecycle_bench --recipients 5000 --rounds 5

Same real parts as `send_bench` (own Temporal dev server, sinks in their own process, in-process
worker, local Postgres scratch database). A pause or cancel answers only once the running batch
has stopped starting messages and its in-flight ones are done, so its latency is what an operator
waits for "nothing more will be sent".
"""

import argparse
import asyncio
import statistics
import time

import httpx
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.harness import bench_stack
from db import measurements
from db.measurements import database_clock
from db.seed import make_audience, make_templates


async def timed(api: httpx.AsyncClient, path: str) -> float:
    t0 = time.perf_counter()
    r = await api.post(path)
    assert r.status_code == 200, r.text
    return (time.perf_counter() - t0) * 1000


async def main(recipients: int, rounds: int) -> None:
    pauses: list[float] = []
    resumes: list[float] = []
    cancels: list[float] = []
    lasts: list[float] = []
    after: list[int] = []
    async with bench_stack("lifebench", "tenant_life") as stack:
        api = stack.api
        email_t, _ = await make_templates(stack.engine, stack.tenant)
        for _ in range(rounds):
            audience = await make_audience(stack.engine, stack.tenant, recipients)
            body = {
                "tenantId": stack.tenant,
                "name": "bench",
                "segmentId": audience.segment_id,
                "channels": ["EMAIL"],
                "emailTemplateId": email_t,
            }
            cid = (await api.post("/campaigns", json=body)).json()["id"]
            await api.post(f"/campaigns/{cid}/execute")
            await asyncio.sleep(2.0)  # mid-send
            requested = await db_now(stack.engine)
            pauses.append(await timed(api, f"/campaigns/{cid}/pause"))
            answered = await db_now(stack.engine)
            await asyncio.sleep(1.0)  # anything still arriving would be recorded by now
            last, late = await last_sent(stack.engine, cid, answered)
            lasts.append((last - requested) * 1000)
            after.append(late)
            resumes.append(await timed(api, f"/campaigns/{cid}/resume"))
            await asyncio.sleep(1.0)
            t0 = time.perf_counter()
            r = await api.post(f"/campaigns/{cid}/cancel")
            if r.status_code == 200:  # a small campaign may have completed by now
                cancels.append((time.perf_counter() - t0) * 1000)
        concurrency = stack.settings.send_concurrency
    print(f"{rounds} campaigns of {recipients} recipients, concurrency {concurrency}")
    for label, values in (("pause", pauses), ("resume", resumes), ("cancel", cancels)):
        if values:
            print(f"{label:<7} median {statistics.median(values):6.0f} ms   max {max(values):6.0f} ms")
    print(
        f"pause request -> last message recorded: median {statistics.median(lasts):.0f} ms,"
        f" max {max(lasts):.0f} ms; messages recorded after the pause answer: {sum(after)}"
    )


async def db_now(engine: AsyncEngine) -> float:
    """The database clock (the ledger's timestamps come from it), as epoch seconds."""
    async with engine.connect() as conn:
        return await database_clock(conn)


async def last_sent(engine: AsyncEngine, campaign_id: str, answered: float) -> tuple[float, int]:
    """When the last SENT row was recorded (right after the SMTP answer), and how many were
    recorded after the pause answer (a pause that means it: 0)."""
    async with engine.connect() as conn:
        return await measurements.last_sent(conn, campaign_id, answered)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.recipients, args.rounds))
