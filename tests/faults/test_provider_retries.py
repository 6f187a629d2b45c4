"""The provider clients against the real sinks, one fault at a time (no Temporal, no database)."""

import time
from collections.abc import AsyncIterator
from email.utils import formatdate

import pytest

from devstack.sinks import SmsSink, SmtpSink
from providers.sms import SmsClient, SmsVerdict, _retry_after
from providers.smtp import SmtpConfig, SmtpPool, SmtpVerdict

DATA = b"From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nhello\r\n"


@pytest.fixture
async def smtp() -> AsyncIterator[SmtpSink]:
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
async def sms() -> AsyncIterator[SmsSink]:
    sink = await SmsSink().start()
    yield sink
    await sink.stop()


async def test_a_pooled_connection_the_server_dropped_is_replaced_not_unknown(smtp: SmtpSink) -> None:
    pool = SmtpPool(SmtpConfig("127.0.0.1", smtp.port, pool_size=1))
    try:
        assert (await pool.send("a@example.com", "one@example.com", DATA)).verdict == SmtpVerdict.ACCEPTED
        smtp.stop()  # the server goes away while the pooled connection idles ...
        smtp.start()  # ... and comes back on the same port
        result = await pool.send("a@example.com", "two@example.com", DATA)
        assert result.verdict == SmtpVerdict.ACCEPTED, result  # was AMBIGUOUS: an UNKNOWN for nothing
        assert [m.rcpt_tos for m in smtp.snapshot()] == [["one@example.com"], ["two@example.com"]]
    finally:
        await pool.close()


async def test_smtp_answers_are_classified_and_the_connection_survives_them(smtp: SmtpSink) -> None:
    smtp.refuse["gone@example.com"] = (550, "5.1.1 no such user")
    pool = SmtpPool(SmtpConfig("127.0.0.1", smtp.port, pool_size=1))
    try:
        assert (await pool.send("a@example.com", "gone@example.com", DATA)).verdict == SmtpVerdict.REFUSED
        # An address no ASCII envelope can carry is this message's problem only (it used to raise
        # out of the page and leave its whole wave UNKNOWN).
        assert (await pool.send("a@example.com", "jürgen@example.com", DATA)).verdict == SmtpVerdict.INVALID
        smtp.defer_window(after_messages=0, seconds=60)
        assert (await pool.send("a@example.com", "later@example.com", DATA)).verdict == SmtpVerdict.TEMPORARY
        smtp.defer_window(after_messages=10**9, seconds=0)
        smtp.drop_every = 1
        assert (await pool.send("a@example.com", "cut@example.com", DATA)).verdict == SmtpVerdict.AMBIGUOUS
        smtp.drop_every = 0
        assert (await pool.send("a@example.com", "fine@example.com", DATA)).verdict == SmtpVerdict.ACCEPTED
        assert smtp.count() == 1 and smtp.dropped == ["cut@example.com"]
    finally:
        await pool.close()


async def test_sms_retry_after_is_honoured_and_a_throttled_message_is_not_sent(sms: SmsSink) -> None:
    client = SmsClient(sms.url, sms.token, "+15550000000")
    try:
        sms.throttle_window(after_messages=0, seconds=60, retry_after=1)
        started = time.monotonic()
        result = await client.send("+441234", "hi", "key-1", attempts=3)
        assert result.verdict == SmsVerdict.THROTTLED and result.retry_after == 1.0
        assert time.monotonic() - started >= 2.0  # two waits of Retry-After
        assert sms.count() == 0 and sms.attempts["key-1"] == 3
    finally:
        await client.close()


async def test_sms_500_after_taking_the_message_is_one_message(sms: SmsSink) -> None:
    sms.flaky_numbers = {"+441234"}
    client = SmsClient(sms.url, sms.token, "+15550000000")
    try:
        result = await client.send("+441234", "hi", "key-1", attempts=6)
        assert result.verdict == SmsVerdict.ACCEPTED
        assert sms.attempts["key-1"] == 3 and sms.by_to["+441234"] == 1
        assert result.message_id == sms.by_key["key-1"].sid
    finally:
        await client.close()


async def test_sms_retries_stop_when_the_caller_is_halted(sms: SmsSink) -> None:
    sms.failing_numbers = {"+441234"}
    client = SmsClient(sms.url, sms.token, "+15550000000")

    async def halted(_: float) -> bool:
        return False

    try:
        result = await client.send("+441234", "hi", "key-1", attempts=6, wait=halted)
        assert result.verdict == SmsVerdict.AMBIGUOUS and result.status == 500
        assert sms.attempts["key-1"] == 1
    finally:
        await client.close()


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert _retry_after("7") == 7.0
    assert _retry_after(None) is None and _retry_after("soon") is None
    later = _retry_after(formatdate(time.time() + 30, usegmt=True))
    assert later is not None and 28 <= later <= 30
    assert _retry_after(formatdate(time.time() - 30, usegmt=True)) == 0.0
