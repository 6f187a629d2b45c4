"""Who a campaign sends as (docs/tenants-and-providers.md): the campaign's sender identity, else the
tenant's default one, else the platform's `CAMPAIGNS_EMAIL_FROM`/`CAMPAIGNS_SMS_FROM`; and the
accounts it sends through: the identity's, else the tenant's defaults, else the platform's.

Resolved once per page by the worker (activities.send.identity, with the page's content: a handful
of indexed reads per page of up to `CAMPAIGNS_BATCH_SIZE` messages), never per message, and once
per test send by the API (api.test_sends), so a test goes out exactly as the campaign would. The one
provider module that reads rows through `db/`: both the worker and the API need the same answer. DKIM keys are
unsealed and parsed once per identity and key in a worker (`_signer`), so a message costs one
RSA signature and no key handling. An email identity whose domain was never verified stops the
campaign (`SenderUnusable`; the worker pauses the campaign with it, the API answers 409): nothing
is sent unsigned or as an unproven domain.
"""

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import replace
from email.utils import formataddr
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.enums import Channel
from core.secrets import SealedValueError, unseal
from core.settings import Settings
from db.pages import Window
from db.provider_accounts import AccountRow, get_account
from db.provider_webhooks import page_provider_webhooks
from db.sender_identities import IdentityRow, sending_identity
from db.tenant_settings import workspace_settings
from providers.accounts import Sender, SmsAccount, SmtpAccount
from providers.dkim import DkimKeyError, DkimSigner
from providers.dns_check import UnsafeHost, check_host

_SIGNERS: OrderedDict[tuple[str, str, str], DkimSigner] = OrderedDict()
SIGNER_CACHE = 256


class SenderUnusable(ValueError):
    """The campaign cannot send as it is set up (an unverified domain, a key or credential no
    configured key opens, a provider host inside our network); the message says what to fix."""


def _invalid(message: str) -> SenderUnusable:
    return SenderUnusable(message)


def _signer(domain: str, selector: str, sealed_or_pem: str, sealed: bool) -> DkimSigner:
    """The parsed key of one identity (or the platform's), parsed once per worker."""
    key = (domain, selector, hashlib.sha256(sealed_or_pem.encode()).hexdigest())
    signer = _SIGNERS.get(key)
    if signer is None:
        try:
            pem = unseal(sealed_or_pem) if sealed else sealed_or_pem
            signer = DkimSigner.from_pem(domain, selector, pem)
        except (SealedValueError, DkimKeyError) as err:
            raise _invalid(f"the DKIM key of {domain} cannot be used: {err}") from None
        _SIGNERS[key] = signer
        while len(_SIGNERS) > SIGNER_CACHE:
            _SIGNERS.popitem(last=False)
    _SIGNERS.move_to_end(key)
    return signer


def platform_sender(settings: Settings) -> Sender:
    """The platform's From and sender, signed with `CAMPAIGNS_DKIM_*` when configured."""
    signer = None
    if settings.dkim_domain and settings.dkim_selector and settings.dkim_private_key:
        signer = _signer(
            settings.dkim_domain, settings.dkim_selector, settings.dkim_private_key, sealed=False
        )
    return Sender(email_from=settings.email_from, sms_from=settings.sms_from, signer=signer)


def _smtp_account(row: AccountRow | None) -> SmtpAccount | None:
    if row is None or row.kind != "SMTP":
        return None
    c = row.config
    return SmtpAccount(
        id=row.id,
        version=row.updated_at.isoformat(),
        host=c["host"],
        port=int(c["port"]),
        starttls=bool(c["starttls"]),
        username=c.get("username"),
        password=None if row.secret is None else unseal(row.secret),
    )


def _sms_account(row: AccountRow | None, status_callback: str | None) -> SmsAccount | None:
    if row is None or row.kind != "SMS" or row.secret is None:
        return None
    c = row.config
    return SmsAccount(
        id=row.id,
        version=row.updated_at.isoformat(),
        provider=c["provider"],
        url=c["url"],
        account_sid=c.get("account_sid"),
        token=unseal(row.secret),
        status_callback=status_callback,
    )


def _identity_sender(identity: IdentityRow, base: Sender, channels: Sequence[str]) -> Sender:
    if identity.from_address is None:
        return Sender(
            email_from=base.email_from, sms_from=identity.sms_sender or base.sms_from, signer=base.signer
        )
    if identity.verified_at is None and Channel.EMAIL in channels:
        raise _invalid(
            f"the sender identity's domain {identity.domain} is not verified: publish its DKIM record "
            "and verify it (POST /sender-identities/{id}/verify)"
        )
    signer = None
    if identity.domain and identity.dkim_selector and identity.dkim_key:
        signer = _signer(identity.domain, identity.dkim_selector, identity.dkim_key, sealed=True)
    return Sender(
        email_from=formataddr((identity.from_name or "", identity.from_address)),
        sms_from=identity.sms_sender or base.sms_from,
        reply_to=identity.reply_to,
        signer=signer,
        identity_id=identity.id,
    )


async def resolve_sender(
    engine: AsyncEngine, settings: Settings, campaign_id: str, tenant_id: str, channels: Sequence[str]
) -> Sender:
    """The campaign's sender: identity, accounts and DKIM key (see the module's docstring)."""
    base = platform_sender(settings)
    async with engine.connect() as conn:
        identity = await sending_identity(conn, campaign_id, tenant_id)
        workspace = await workspace_settings(conn, tenant_id)
        email_id = (identity and identity.email_account_id) or workspace.default_email_account_id
        sms_id = (identity and identity.sms_account_id) or workspace.default_sms_account_id
        email_row = None if email_id is None else await get_account(conn, [tenant_id], email_id)
        sms_row = None if sms_id is None else await get_account(conn, [tenant_id], sms_id)
        callback = None if sms_row is None else await _status_callback(conn, tenant_id, settings)
    sender = base if identity is None else _identity_sender(identity, base, channels)
    try:
        smtp, sms = _smtp_account(email_row), _sms_account(sms_row, callback)
    except SealedValueError as err:
        raise _invalid(f"a provider account's credential cannot be opened: {err}") from None
    await _check_hosts(smtp, sms, settings.provider_hosts_allow_private)
    return replace(sender, smtp_account=smtp, sms_account=sms)


async def _status_callback(conn: AsyncConnection, tenant_id: str, settings: Settings) -> str | None:
    """The tenant's Twilio webhook URL (docs/provider-webhooks.md), where its own Twilio account
    reports each message's status; None when it registered none."""
    registered = await page_provider_webhooks(conn, tenant_id, Window(skip=0, take=100))
    twilio = next((row for row in registered.rows if row.provider == "twilio"), None)
    if twilio is None:
        return None
    return f"{settings.public_url.rstrip('/')}/webhooks/providers/twilio/{twilio.id}"


async def _check_hosts(smtp: SmtpAccount | None, sms: SmsAccount | None, allow: bool) -> None:
    """The accounts' hosts point outside our network (again: DNS may have changed since saving)."""
    try:
        if smtp is not None:
            await check_host(smtp.host, allow)
        if sms is not None:
            await check_host(urlsplit(sms.url).hostname or "", allow)
    except UnsafeHost as err:
        raise _invalid(f"the tenant's provider account cannot be used: {err}") from None
