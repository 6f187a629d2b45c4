"""A tenant's workspace settings (docs/tenants-and-providers.md): one JSON document per tenant in
`tenant_settings`; a tenant without a row has every default, and behaves as before they existed.
The sending policy is not here: it stays in `tenant_policies` (db.policies).
"""

from dataclasses import dataclass, fields
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.sql.expression import bindparam

DEFAULT_SMS_HELP = "Reply STOP to unsubscribe, START to subscribe again."


@dataclass(frozen=True)
class WorkspaceSettings:
    """Stored under the API's camelCase names; a missing key reads its default."""

    default_sender_identity_id: str | None = None  # None: the platform's From and sender
    default_email_account_id: str | None = None  # None: the platform's SMTP relay
    default_sms_account_id: str | None = None  # None: the platform's SMS provider
    timezone: str = "UTC"
    sms_help_text: str = DEFAULT_SMS_HELP


_KEYS = {
    "default_sender_identity_id": "defaultSenderIdentityId",
    "default_email_account_id": "defaultEmailAccountId",
    "default_sms_account_id": "defaultSmsAccountId",
    "timezone": "timezone",
    "sms_help_text": "smsHelpText",
}


def _from_document(document: dict[str, Any]) -> WorkspaceSettings:
    values = {f.name: document[_KEYS[f.name]] for f in fields(WorkspaceSettings) if _KEYS[f.name] in document}
    return WorkspaceSettings(**values)


async def workspace_settings(conn: AsyncConnection, tenant_id: str) -> WorkspaceSettings:
    row = (
        await conn.execute(
            text("SELECT settings FROM tenant_settings WHERE tenant_id = :t"), {"t": tenant_id}
        )
    ).first()
    return WorkspaceSettings() if row is None else _from_document(row[0])


_PUT = text(
    """
    INSERT INTO tenant_settings (tenant_id, settings, updated_at) VALUES (:t, :s, now())
    ON CONFLICT (tenant_id) DO UPDATE SET settings = EXCLUDED.settings, updated_at = now()
    """
).bindparams(bindparam("s", type_=JSONB))


async def put_workspace_settings(conn: AsyncConnection, tenant_id: str, value: WorkspaceSettings) -> None:
    """Store the settings whole (only the values that differ from their defaults)."""
    default = WorkspaceSettings()
    document = {
        _KEYS[f.name]: getattr(value, f.name)
        for f in fields(WorkspaceSettings)
        if getattr(value, f.name) != getattr(default, f.name)
    }
    await conn.execute(_PUT, {"t": tenant_id, "s": document})
