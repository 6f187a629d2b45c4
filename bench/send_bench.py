"""Sending throughput: one ONE_TIME campaign end to end on real parts, timed.

    .venv/bin/python -m bench.send_bench --recipients 20000 --channels EMAIL SMS

Starts its own Temporal dev server, SMTP and SMS sinks (in their own process) and an in-process
worker; uses the local Postgres (CAMPAIGNS_BENCH_DATABASE_URL, default
postgresql://postgres@127.0.0.1:5432/postgres) in a scratch database it drops afterwards. Prints
messages/s and the worker's peak RSS.
"""

import argparse
import asyncio
import resource
import time

from bench.harness import bench_stack
from core.settings import Settings
from db.seed import make_audience, make_templates


async def main(recipients: int, channels: list[str], batch_size: int, concurrency: int) -> None:
    async with bench_stack(
        "sendbench", "tenant_bench", batch_size=batch_size, send_concurrency=concurrency
    ) as stack:
        api, engine = stack.api, stack.engine
        t0 = time.perf_counter()
        audience = await make_audience(engine, stack.tenant, recipients, no_phone_every=10)
        email_t, sms_t = await make_templates(engine, stack.tenant)
        setup = time.perf_counter() - t0
        body = {
            "tenantId": stack.tenant,
            "name": "bench",
            "segmentId": audience.segment_id,
            "channels": channels,
            "emailTemplateId": email_t,
            "smsTemplateId": sms_t,
        }
        cid = (await api.post("/campaigns", json=body)).json()["id"]
        t0 = time.perf_counter()
        r = await api.post(f"/campaigns/{cid}/execute")
        assert r.status_code == 200, r.text
        status = ""
        while status != "COMPLETED":
            await asyncio.sleep(0.2)
            status = (await api.get(f"/campaigns/{cid}")).json()["status"]
        elapsed = time.perf_counter() - t0
        sent: dict[str, str | int] = {"outcome": "SENT", "take": 1}
        messages = (await api.get(f"/campaigns/{cid}/recipients", params=sent)).json()["meta"]["total"]
        email = (await api.get(f"/campaigns/{cid}/recipients", params={**sent, "channel": "EMAIL"})).json()[
            "meta"
        ]["total"]
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"recipients={recipients} channels={','.join(channels)}", end=" ")
    print(f"batch={batch_size} concurrency={concurrency}")
    print(f"setup (bulk insert audience): {setup:.1f} s")
    print(f"messages sent: {messages} (email {email}, sms {messages - email})")
    print(f"execute -> COMPLETED: {elapsed:.1f} s  = {messages / elapsed:.0f} messages/s")
    print(f"peak RSS of the worker + API process: {rss_mb:.0f} MiB")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--channels", nargs="+", default=["EMAIL", "SMS"])
    parser.add_argument("--batch-size", type=int, default=Settings(environment="test").batch_size)
    parser.add_argument("--concurrency", type=int, default=Settings(environment="test").send_concurrency)
    args = parser.parse_args()
    asyncio.run(main(args.recipients, args.channels, args.batch_size, args.concurrency))
