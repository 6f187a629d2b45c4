"""Outbound webhooks' guards without a stack: the signature scheme against the Standard Webhooks
test vector, the SSRF guard's judgement of addresses, and the delivery client refusing a private
address when it connects (DNS may have changed since the URL was saved)."""

from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from activities.webhook_delivery import Attempt, WebhookDeliveryActivities
from core.secrets import seal
from core.settings import Settings
from core.ssrf import UnsafeTargetError, check_addresses
from core.webhook_signing import new_secret, sign, verify
from db.webhook_endpoints import EndpointRow
from db.webhook_outbox import DeadLetter
from tests.test_outbound_webhooks import Receiver


def test_signatures_match_the_standard_webhooks_test_vector() -> None:
    # The example of the Standard Webhooks specification (and its reference libraries' tests).
    secret, msg_id = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "msg_p5jXN8AQM9LWM0D4loKWxJek"
    ts, body = 1614265330, b'{"test": 2432232314}'
    expected = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    assert sign(secret, msg_id, ts, body) == expected
    assert verify(secret, msg_id, str(ts), f"v1,bm90IGl0 {expected}", body, now=ts + 299)
    assert not verify(secret, msg_id, str(ts), expected, body, now=ts + 301), "a stale timestamp"
    assert not verify(secret, msg_id, str(ts + 1), expected, body, now=ts), "another timestamp"
    assert not verify(new_secret(), msg_id, str(ts), expected, body, now=ts), "another secret"


def test_the_ssrf_guard_judges_every_address() -> None:
    refused = [
        "127.0.0.1",
        "10.0.0.1",
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "fe80::1",
        "fc00::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
    ]
    for address in refused:
        with pytest.raises(UnsafeTargetError):
            check_addresses("h", [address], allow_private=False)
        assert check_addresses("h", [address], allow_private=True)
    assert check_addresses("h", ["93.184.215.14", "2606:2800:21f:cb07:6820:80da:af6b:8b2c"], False)
    with pytest.raises(UnsafeTargetError):  # one bad address of several is enough to refuse
        check_addresses("h", ["93.184.215.14", "10.0.0.1"], allow_private=False)
    with pytest.raises(UnsafeTargetError):
        check_addresses("h", [], allow_private=True)


async def test_delivery_checks_the_address_on_every_connection(engine: AsyncEngine) -> None:
    """A URL saved while allowed (or a name whose DNS changed since) is refused when connecting."""
    receiver = await Receiver().start()
    try:
        port = receiver.url.split(":")[2].split("/")[0]
        for url in (receiver.url, f"http://localhost:{port}/hook"):
            strict = Settings(environment="test", webhook_allow_http=True, webhook_allow_private=False)
            error = await WebhookDeliveryActivities(strict, engine)._post(endpoint_row(url), attempt())
            assert error is not None and error.startswith("refused"), error
            lenient = Settings(environment="test", webhook_allow_http=True, webhook_allow_private=True)
            assert (
                await WebhookDeliveryActivities(lenient, engine)._post(endpoint_row(url), attempt()) is None
            )
    finally:
        await receiver.stop()
    assert len(receiver.requests) == 2  # only the lenient attempts reached it


def endpoint_row(url: str) -> EndpointRow:
    now = datetime.now(UTC)
    return EndpointRow(
        id="whep_t",
        tenant_id="t",
        url=url,
        event_types=["message.sent"],
        description=None,
        enabled=True,
        secret=seal(new_secret()),
        previous_secret=None,
        previous_secret_until=None,
        cursor_xid="0",
        cursor_id=0,
        failing_since=None,
        last_success_at=None,
        last_error_at=None,
        last_error=None,
        delivered_count=0,
        failed_attempts=0,
        created_by=None,
        created_at=now,
        updated_at=now,
    )


def attempt() -> Attempt:
    return Attempt("msg_t", [DeadLetter(1, {"id": "1", "type": "message.sent"}, datetime.now(UTC))])
