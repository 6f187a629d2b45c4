"""The tenant workspace's rules between the API and the database (docs/tenants-and-providers.md):
what a new or patched identity or account becomes, what a response may show, and the checks that
need more than one row (an account named by an identity must be the tenant's, of the right kind).

Secrets (DKIM private keys, SMTP passwords, SMS tokens) are sealed here, before anything is
stored, and no function here returns one: responses carry flags (`hasPassword`) and the public
DKIM record only.
"""

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy.ext.asyncio import AsyncConnection

from api.errors import Problem, invalid
from api.schemas.provider_accounts import (
    ProviderAccountCreate,
    ProviderAccountPatch,
    ProviderAccountPublic,
    SmsPublic,
    SmtpPublic,
)
from api.schemas.sender_identities import (
    DkimIn,
    DkimPublic,
    DnsRecord,
    SenderIdentityCreate,
    SenderIdentityPatch,
    SenderIdentityPublic,
)
from core.enums import Channel
from core.ids import new_id
from core.secrets import seal
from db.provider_accounts import AccountRow, get_account
from db.sender_identities import IdentityRow, get_identity
from providers import dkim
from providers.dns_check import DnsUnavailable, TxtResolver, UnsafeHost, check_host

# ---- sender identities ----------------------------------------------------------------------------


def _dkim_key(spec: DkimIn) -> tuple[str, str]:
    """(sealed private PEM, public p=) of a generated or uploaded key; a bad upload is a 422."""
    try:
        key = dkim.generate_key() if spec.generate else dkim.load_key(spec.private_key or "")
    except dkim.DkimKeyError as err:
        raise invalid("body.dkim.privateKey", str(err)) from None
    return seal(dkim.private_pem(key)), dkim.public_b64(key)


def new_identity(body: SenderIdentityCreate) -> IdentityRow:
    selector, key, public = None, None, None
    if body.from_address is not None:
        spec = body.dkim or DkimIn(generate=True)
        selector = spec.selector
        key, public = _dkim_key(spec)
    return IdentityRow(
        id=new_id("sender"),
        tenant_id=body.tenant_id,
        club_id=body.club_id,
        name=body.name,
        from_name=body.from_name,
        from_address=body.from_address,
        reply_to=body.reply_to,
        sms_sender=body.sms_sender,
        email_account_id=body.email_account_id,
        sms_account_id=body.sms_account_id,
        dkim_selector=selector,
        dkim_key=key,
        dkim_public=public,
        verified_at=None,
    )


def patched_identity(row: IdentityRow, body: SenderIdentityPatch) -> IdentityRow:
    """The identity with the patch applied; a new domain or key must be verified again."""
    sent = body.model_fields_set - {"dkim"}
    if "name" in sent and body.name is None:
        raise invalid("body.name", "an identity keeps a name")
    changed = replace(row, **{name: getattr(body, name) for name in sent})
    if changed.from_address is None and changed.sms_sender is None:
        raise invalid("body", "an identity needs a `fromAddress`, an `smsSender`, or both")
    if changed.from_address is None:
        return replace(
            changed, reply_to=None, from_name=None, dkim_selector=None, dkim_key=None, dkim_public=None
        )
    if body.dkim is not None or changed.dkim_key is None:
        spec = body.dkim or DkimIn(generate=True)
        key, public = _dkim_key(spec)
        changed = replace(changed, dkim_selector=spec.selector, dkim_key=key, dkim_public=public)
    if changed.domain != row.domain or changed.dkim_public != row.dkim_public:
        changed = replace(changed, verified_at=None)
    return changed


def usable(row: IdentityRow) -> bool:
    """A campaign may send as the identity: SMS-only, or its email domain's key was verified."""
    return row.from_address is None or row.verified_at is not None


def identity_public(row: IdentityRow) -> SenderIdentityPublic:
    public = None
    if row.domain and row.dkim_selector and row.dkim_public:
        public = DkimPublic(
            domain=row.domain,
            selector=row.dkim_selector,
            dns_record=DnsRecord(
                name=dkim.record_name(row.dkim_selector, row.domain), value=dkim.record_value(row.dkim_public)
            ),
            verified=row.verified_at is not None,
            verified_at=row.verified_at,
        )
    return SenderIdentityPublic(
        id=row.id,
        tenant_id=row.tenant_id,
        club_id=row.club_id,
        name=row.name,
        from_name=row.from_name,
        from_address=row.from_address,
        reply_to=row.reply_to,
        sms_sender=row.sms_sender,
        email_account_id=row.email_account_id,
        sms_account_id=row.sms_account_id,
        dkim=public,
        verified=usable(row),
        verified_at=row.verified_at,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


async def check_campaign_identity(
    conn: AsyncConnection, tenant_id: str, identity_id: str | None, channels: Sequence[str]
) -> None:
    """A campaign's `senderIdentityId`: the tenant's own identity (else 422), verified when the
    campaign sends email (else 409: publish the record and verify first)."""
    if identity_id is None:
        return
    row = await get_identity(conn, [tenant_id], identity_id)
    if row is None:
        raise invalid("$.senderIdentityId", "no such sender identity in this tenant")
    if Channel.EMAIL in channels and not usable(row):
        raise Problem(409, f"the sender identity's domain {row.domain} is not verified yet")


async def check_identity_accounts(conn: AsyncConnection, row: IdentityRow) -> None:
    """The accounts an identity names are the tenant's, of the channel they are named for."""
    for field, kind, account_id in (
        ("emailAccountId", "SMTP", row.email_account_id),
        ("smsAccountId", "SMS", row.sms_account_id),
    ):
        await check_account_ref(conn, row.tenant_id, f"body.{field}", kind, account_id)


async def check_account_ref(
    conn: AsyncConnection, tenant_id: str, path: str, kind: str, account_id: str | None
) -> None:
    if account_id is None:
        return
    account = await get_account(conn, [tenant_id], account_id)
    if account is None:
        raise invalid(path, "no such provider account in this tenant")
    if account.kind != kind:
        raise invalid(path, f"the account is a {account.kind} account, not {kind}")


async def verified_now(row: IdentityRow, resolver: TxtResolver) -> IdentityRow:
    """The identity marked verified when its domain publishes its key; else a 422 saying what
    DNS holds (503 when DNS does not answer)."""
    if row.domain is None or row.dkim_selector is None or row.dkim_public is None:
        raise Problem(409, "an identity without an email address has no domain to verify")
    name = dkim.record_name(row.dkim_selector, row.domain)
    try:
        records = await resolver.txt(name)
    except DnsUnavailable as err:
        raise Problem(503, f"DNS did not answer for {name}: try again later ({err})") from None
    keys = [dkim.record_key(r) for r in records]
    if row.dkim_public in keys:
        return replace(row, verified_at=datetime.now(UTC))
    found = (
        "no TXT record" if not records else "a DKIM record with another key" if any(keys) else "no DKIM key"
    )
    raise Problem(422, f"{name} holds {found}: publish the record this identity shows, then verify again")


# ---- provider accounts ----------------------------------------------------------------------------


def _config_of(kind: str, fields: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(what may be shown, the credential) of an account's fields."""
    secret_name = "password" if kind == "SMTP" else "auth_token"
    secret = fields.pop(secret_name, None)
    return fields, secret


async def new_account(body: ProviderAccountCreate, allow_private: bool) -> AccountRow:
    part = body.smtp if body.kind == "SMTP" else body.sms
    other = body.sms if body.kind == "SMTP" else body.smtp
    section = body.kind.lower()
    if part is None or other is not None:
        raise invalid(f"body.{section}", f"a {body.kind} account gives `{section}` (and only that)")
    config, secret = _config_of(body.kind, part.model_dump())
    await check_account_host(body.kind, config, allow_private)
    now = datetime.now(UTC)
    return AccountRow(
        id=new_id("account"),
        tenant_id=body.tenant_id,
        kind=body.kind,
        name=body.name,
        config=config,
        secret=None if secret is None else seal(secret),
        created_at=now,
        updated_at=now,
    )


async def patched_account(row: AccountRow, body: ProviderAccountPatch, allow_private: bool) -> AccountRow:
    section = row.kind.lower()
    part = body.smtp if row.kind == "SMTP" else body.sms
    if (body.sms if row.kind == "SMTP" else body.smtp) is not None:
        raise invalid("body", f"a {row.kind} account is patched through `{section}`")
    if "name" in body.model_fields_set and body.name is None:
        raise invalid("body.name", "an account keeps a name")
    config, secret = dict(row.config), row.secret
    if part is not None:
        sent = part.model_dump(include=part.model_fields_set)
        fields, new_secret = _config_of(row.kind, sent)
        for name, value in fields.items():
            if value is None and name in ("host", "port", "starttls", "url"):
                raise invalid(f"body.{section}.{name}", "this field cannot be cleared")
            config[name] = value
        if "password" in sent or "auth_token" in sent:
            secret = None if new_secret is None else seal(new_secret)
        await check_account_host(row.kind, config, allow_private)
    return replace(row, name=body.name or row.name, config=config, secret=secret)


async def check_account_host(kind: str, config: dict[str, Any], allow_private: bool) -> None:
    host = config["host"] if kind == "SMTP" else urlsplit(config["url"]).hostname or ""
    try:
        await check_host(host.strip("[]"), allow_private)
    except UnsafeHost as err:
        raise invalid(f"body.{kind.lower()}", str(err)) from None


def account_public(row: AccountRow) -> ProviderAccountPublic:
    c = row.config
    smtp = sms = None
    if row.kind == "SMTP":
        smtp = SmtpPublic(
            host=c["host"],
            port=c["port"],
            starttls=c["starttls"],
            username=c.get("username"),
            has_password=row.secret is not None,
        )
    else:
        sms = SmsPublic(
            provider=c["provider"],
            url=c["url"],
            account_sid=c.get("account_sid"),
            has_auth_token=row.secret is not None,
        )
    return ProviderAccountPublic(
        id=row.id,
        tenant_id=row.tenant_id,
        name=row.name,
        kind=row.kind,
        smtp=smtp,
        sms=sms,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
