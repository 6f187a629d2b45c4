"""The raw ceiling: the fastest bare client we can write, pushing campaign-sized messages into the
same local sinks a campaign sends to (no Temporal, no database, no rendering).

    .venv/bin/python -m bench.ceiling [--messages 20000] [--channel EMAIL|SMS|both]

Campaign throughput divided by this is the share of the wire's speed the orchestration keeps
(issue 7). The sinks run in their own process, as in the campaign bench. Email: `--connections`
persistent connections, each sending back to back, with the campaign's own SMTP client
(`providers.smtp.SmtpPool`, one lease per connection as the send pipeline holds them; its
transactions run on providers.smtp_session) or, with `--email-client aiosmtplib`, with
aiosmtplib's `sendmail` (the ceiling of the figures before the campaign's client was lean).
SMS: the campaign's own client (`providers.sms.SmsClient`, a lean HTTP/1.1 client on kept-alive
connections) with `--concurrency` as its `max_in_flight`, one lease per slot as the send pipeline
holds them; the texts are formatted before the clock starts, so the ceiling costs only what the
wire does.
"""

import argparse
import asyncio
import multiprocessing
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import aiosmtplib
import uvloop

from bench.harness import free_port, run_sinks, wait_port
from devstack.sinks import SmsSink
from providers.sms import SmsClient, SmsVerdict
from providers.smtp import SmtpConfig, SmtpPool, SmtpVerdict

EMAIL_CLIENTS = ("session", "aiosmtplib")

# A campaign email as it leaves our client: multipart text + HTML, tracking links, ~3 KB.
BODY_HTML = "\r\n".join(
    [
        "<p>Hi First123 Last123, tier gold."
        ' <a href="http://127.0.0.1:8000/t/c/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA">Offer</a></p>'
    ]
    * 16
)


def email_bytes(i: int) -> bytes:
    return (
        f"From: Campaigns <campaigns@example.com>\r\nTo: m{i}@bench.example.com\r\n"
        f"Subject: Hello First{i}\r\nMessage-ID: <delivery_{i:016x}@campaigns>\r\n"
        'MIME-Version: 1.0\r\nContent-Type: multipart/alternative; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
        f"Hi First{i}, tier gold.\r\n"
        "--b\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        f"{BODY_HTML}\r\n--b--\r\n"
    ).encode()


@dataclass
class Ceiling:
    channel: str
    messages: int
    seconds: float
    cpu: float = 0.0  # CPU seconds of this process (the bare client; the sinks run in their own)

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


async def email_ceiling(port: int, messages: int, connections: int, client: str = "session") -> Ceiling:
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(messages):
        queue.put_nowait(i)
    pool = SmtpPool(SmtpConfig("127.0.0.1", port, pool_size=connections))

    async def lean_sender() -> None:
        async with pool.lease() as lease:
            while not queue.empty():
                i = queue.get_nowait()
                result = await lease.send("campaigns@example.com", f"m{i}@bench.example.com", email_bytes(i))
                assert result.verdict == SmtpVerdict.ACCEPTED, result

    async def aiosmtplib_sender() -> None:
        smtp = aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False)
        await smtp.connect()
        while not queue.empty():
            i = queue.get_nowait()
            await smtp.sendmail("campaigns@example.com", [f"m{i}@bench.example.com"], email_bytes(i))
        await smtp.quit()

    sender = lean_sender if client == "session" else aiosmtplib_sender
    return await _timed("EMAIL", messages, [sender() for _ in range(connections)], pool.close)


async def sms_ceiling(port: int, messages: int, concurrency: int) -> Ceiling:
    texts = [
        (f"+4477{i:08d}", f"Hi First{i}, see you at the club!", f"delivery_{i:016x}") for i in range(messages)
    ]
    pending = iter(texts)
    client = SmsClient(
        f"http://127.0.0.1:{port}/messages", SmsSink.token, "+15550000000", max_in_flight=concurrency
    )

    async def sender() -> None:
        async with client.lease() as lease:
            for to, body, key in pending:
                result = await lease.send(to, body, key)
                assert result.verdict == SmsVerdict.ACCEPTED, result

    return await _timed("SMS", messages, [sender() for _ in range(concurrency)], client.close)


async def _timed(
    channel: str,
    messages: int,
    senders: list[Coroutine[Any, Any, None]],
    close: Callable[[], Awaitable[None]],
) -> Ceiling:
    """Run the senders together and time them (wall clock and this process's CPU), then close
    the client whatever happened."""
    started, cpu = time.perf_counter(), time.process_time()
    try:
        await asyncio.gather(*senders)
    finally:
        await close()
    return Ceiling(channel, messages, time.perf_counter() - started, time.process_time() - cpu)


async def measure(
    messages: int, channel: str, connections: int, concurrency: int, email_client: str = "session"
) -> list[Ceiling]:
    smtp_port, sms_port = free_port(), free_port()
    sinks = multiprocessing.get_context("spawn").Process(
        target=run_sinks, args=(smtp_port, sms_port), daemon=True
    )
    sinks.start()
    try:
        await wait_port(smtp_port)
        await wait_port(sms_port)
        results = []
        if channel in ("EMAIL", "both"):
            results.append(await email_ceiling(smtp_port, messages, connections, email_client))
        if channel in ("SMS", "both"):
            results.append(await sms_ceiling(sms_port, messages, concurrency))
        return results
    finally:
        sinks.kill()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--channel", choices=["EMAIL", "SMS", "both"], default="both")
    parser.add_argument("--connections", type=int, default=4, help="SMTP connections")
    parser.add_argument("--concurrency", type=int, default=16, help="SMS requests in flight")
    parser.add_argument("--email-client", choices=EMAIL_CLIENTS, default="session")
    args = parser.parse_args()
    results = uvloop.run(  # the loop the worker runs on (worker.py)
        measure(args.messages, args.channel, args.connections, args.concurrency, args.email_client)
    )
    print("\n| channel | messages | seconds | raw ceiling | client CPU per message |")
    print("|---|---|---|---|---|")
    for r in results:
        cpu = f"{1000 * r.cpu / r.messages:.3f} ms"
        print(f"| {r.channel} | {r.messages:,} | {r.seconds:.2f} | {r.rate:,.0f} msg/s | {cpu} |")


if __name__ == "__main__":
    main()
