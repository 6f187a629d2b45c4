"""Faults at the providers' protocol boundary, all during one campaign on both channels.

SMTP: connections closed by the server when idle for a second, a 4xx window longer than the
in-page backoff (the page is retried later, nothing FAILED) with the server restarted in the middle
of it (pooled connections found dead before DATA are replaced: nothing sent, so not UNKNOWN),
550 for some addresses (BOUNCED, asked once, never again), the connection dropped after every
97th message's data (UNKNOWN, never resent), and addresses no ASCII envelope can carry (FAILED,
the rest of their page unaffected). SMS: a 429 window with Retry-After (honoured, then the page
is retried later), 500 on the first two posts of some messages although the first one was taken
(the retry with the same idempotency key gets it: one message), 500 for good for a few numbers
(never confirmed: UNKNOWN, so an operator may resend them with the same key).
"""

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from activities.send import deliverers
from activities.send.deliverers import PROVIDER_TRIES
from devstack.sinks import SmsSink, SmtpSink
from tests.conftest import StackFactory
from tests.factories import make_audience, make_templates
from tests.faults.conftest import FULL, size
from tests.faults.reconcile import reconcile
from tests.helpers import create_campaign, ledger, wait_for

N = size(2_500, 10_000)
WINDOW_SECONDS = 8.0  # longer than the in-page backoff (0.2 + 0.4 + ... + 3.2 s)
IDLE_SECONDS = 1.0  # the SMTP server closes connections idle this long


@pytest.fixture
async def fault_sinks() -> AsyncIterator[tuple[SmtpSink, SmsSink]]:
    """Sinks of this test alone: their faults never reach other tests."""
    smtp = SmtpSink(idle_timeout=IDLE_SECONDS).start()
    sms = await SmsSink().start()
    yield smtp, sms
    smtp.stop()
    await sms.stop()


async def test_provider_faults_mid_campaign(
    make_stack: StackFactory, fault_sinks: tuple[SmtpSink, SmsSink]
) -> None:
    smtp, sms = fault_sinks
    stack = await make_stack(batch_size=250, smtp_port=smtp.port, sms_url=sms.url)
    stack.smtp, stack.sms = smtp, sms
    audience = await make_audience(stack.engine, stack.tenant, N, no_phone_every=7, email_opt_out_every=9)
    emails = sorted(audience.emails())
    phones = sorted(audience.phones())

    # Every 50th address is refused (550), three others cannot be put in an envelope.
    refused = set(emails[::50])
    poisoned = {c["id"]: c for c in audience.customers if c["email"] in emails[101:104]}
    async with stack.engine.begin() as conn:
        for cid_, customer in poisoned.items():
            customer["email"] = customer["email"].replace("@", "-jürgen@")
            await conn.execute(
                text("UPDATE customers SET email = :e WHERE id = :id"), {"e": customer["email"], "id": cid_}
            )
    poison = {c["email"] for c in poisoned.values()}
    smtp.refuse.update({a: (550, "5.1.1 mailbox unavailable") for a in refused})
    smtp.drop_every = 97
    smtp.defer_window(after_messages=len(emails) // 3, seconds=WINDOW_SECONDS)
    flaky = set(phones[::40])
    failing = {p for p in phones[7::301] if p not in flaky}
    sms.flaky_numbers, sms.failing_numbers = flaky, failing
    sms.throttle_window(after_messages=len(phones) // 2, seconds=WINDOW_SECONDS, retry_after=1)

    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, sms_t)
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    # Restart the SMTP server inside the 4xx window, when no message can be in its DATA phase.
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 120
    while not smtp.deferred:
        assert loop.time() < deadline, "the 4xx window never began"
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    smtp.stop()
    await asyncio.sleep(0.5)
    smtp.start()
    await wait_for(stack, cid, "COMPLETED", timeout=300)

    # Answers never came: exactly these may be UNKNOWN. `cut` holds the dropped ones and any
    # transaction the server restart or an idle timeout (a client stalled on a loaded box) ended
    # between the accepted recipient and the answer to its data.
    lost = set(smtp.dropped) | set(smtp.cut) | failing
    figures = await reconcile(
        stack,
        cid,
        audience,
        case="provider faults",
        faults=(
            f"SMTP: idle connections closed after {IDLE_SECONDS:.0f} s, 451 for {WINDOW_SECONDS:.0f} s"
            f" ({smtp.deferred} answers) with a server restart in it, 550 for {len(refused)}"
            f" addresses, {len(smtp.dropped)} connections dropped after DATA, {len(poison)}"
            f" unencodable addresses; SMS: 429 + Retry-After for {WINDOW_SECONDS:.0f} s"
            f" ({sms.throttled} answers), 500 on the first 2 posts of {len(flaky)} messages"
            f" (the first one taken), 500 for good for {len(failing)} numbers"
        ),
        unknown_bound=len(lost),
        expect_unknown=lost,
    )
    assert smtp.deferred and sms.throttled and smtp.dropped, "a fault was never injected"
    assert set(smtp.dropped) <= set(smtp.cut), "a dropped transaction was not seen as cut"

    rows = await ledger(stack, cid)
    by_outcome: dict[str, set[str]] = {}
    for row in rows:
        by_outcome.setdefault(row["outcome"], set()).add(row["address"])
    # 5xx: BOUNCED, with the reason, and asked exactly once (never retried).
    assert by_outcome["BOUNCED"] == refused
    assert all(r["reason"] == "HARD_BOUNCED" for r in rows if r["outcome"] == "BOUNCED")
    assert all(smtp.refused[a] == 1 for a in refused), "a hard bounce was retried"
    # Deferrals (SMTP 4xx, SMS 429) outlasted the in-page retries and still ended SENT; the only
    # FAILED are the addresses no envelope can carry, and they never held up their pages.
    assert by_outcome["FAILED"] == poison
    assert all(r["reason"] == "PROVIDER_ERROR" for r in rows if r["outcome"] == "FAILED")
    # A 500 after the provider took the message: the retry with the same key got it, once.
    assert flaky <= by_outcome["SENT"]
    flaky_keys = [m.idempotency_key for m in sms.messages if m.to in flaky]
    assert len(flaky_keys) == len(flaky)
    assert all(sms.attempts[key] >= 3 for key in flaky_keys)
    # 500 for good: retried with one key, then reported UNKNOWN (resend-unknown reuses the key).
    assert all(r["reason"] == "PROVIDER_ERROR" for r in rows if r["address"] in failing)
    assert sms.errors >= PROVIDER_TRIES * len(failing)
    assert figures.sent == len(emails) + len(phones) - len(refused) - len(poison) - len(lost)


async def test_an_address_deferred_for_good_never_blocks_the_rest(
    make_stack: StackFactory, fault_sinks: tuple[SmtpSink, SmsSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    """451 for three addresses, forever: everyone else is sent meanwhile; the three end FAILED
    once their page has been retried DEFERRAL_ATTEMPTS times (the workflow's backoff).

    At the full size the real limits run (about 3 minutes of deferral). The CI size lowers the two
    limits in this process, where the worker runs, to 2 provider tries and 5 page attempts (about
    16 s of backoff): the same path, with the same rule deciding when a deferral becomes FAILED.
    """
    if not FULL:
        monkeypatch.setattr(deliverers, "PROVIDER_TRIES", 2)
        monkeypatch.setattr(deliverers, "DEFERRAL_ATTEMPTS", 5)
    smtp, sms = fault_sinks
    stack = await make_stack(batch_size=100, smtp_port=smtp.port, sms_url=sms.url)
    stack.smtp, stack.sms = smtp, sms
    audience = await make_audience(stack.engine, stack.tenant, size(500, 1_000))
    stuck = {c["email"] for c in sorted(audience.customers, key=lambda c: str(c["id"]))[:3]}
    smtp.refuse.update({a: (451, "4.2.2 mailbox full, try again later") for a in stuck})
    email_t, _ = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, None)
    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200

    others = audience.emails() - stuck
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 60
    while sum(smtp.counts(others).values()) < len(others):
        assert loop.time() < deadline, "the deferred addresses held up the rest"
        await asyncio.sleep(0.2)
    assert (await stack.call("GET", f"/campaigns/{cid}")).json()["status"] == "ACTIVE"
    await wait_for(stack, cid, "COMPLETED", timeout=400)

    figures = await reconcile(
        stack,
        cid,
        audience,
        case="deferred for good",
        faults=f"SMTP: 451 forever for {len(stuck)} addresses ({sum(smtp.refused.values())} answers)",
        unknown_bound=0,
        channels=("EMAIL",),
    )
    rows = await ledger(stack, cid)
    failed = {r["address"]: r for r in rows if r["outcome"] == "FAILED"}
    assert set(failed) == stuck and figures.sent == len(others)
    assert all(f"page attempt {deliverers.DEFERRAL_ATTEMPTS}:" in r["detail"] for r in failed.values())
    # Every page attempt asked each stuck address PROVIDER_TRIES times, and then never again.
    assert smtp.refused == {a: deliverers.DEFERRAL_ATTEMPTS * deliverers.PROVIDER_TRIES for a in stuck}
