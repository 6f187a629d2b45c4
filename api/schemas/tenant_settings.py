"""A tenant's workspace settings at the API edge (docs/tenants-and-providers.md).

Every value has a default, so a tenant that never set any behaves as before settings existed:
no default identity or accounts (the platform's From, relay and SMS account), `UTC`, the standard
SMS help text, and the sending policy's own defaults (`policy`, the same document as
`/tenants/{tenantId}/policy`, stored there).
"""

from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, field_validator

from api.schemas.common import ApiIn, ApiOut, NoNul
from core.policy import TenantPolicy
from db.tenant_settings import DEFAULT_SMS_HELP

RefId = Annotated[str, Field(min_length=1, max_length=40), NoNul]


def check_timezone(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("timezone must be an IANA zone name, like Europe/Berlin") from None
    return value


class TenantSettingsPublic(ApiOut):
    default_sender_identity_id: str | None = None
    default_email_account_id: str | None = None
    default_sms_account_id: str | None = None
    timezone: str = "UTC"
    sms_help_text: str = DEFAULT_SMS_HELP
    policy: TenantPolicy


class TenantSettingsPatch(ApiIn):
    """JSON merge-patch (RFC 7396): a field sent is set, `null` puts it back to its default, a
    field left out is kept; `policy` is merged into the current policy the same way."""

    default_sender_identity_id: RefId | None = None
    default_email_account_id: RefId | None = None
    default_sms_account_id: RefId | None = None
    timezone: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    sms_help_text: Annotated[str, Field(min_length=1, max_length=320), NoNul] | None = None
    policy: dict[str, Any] | None = None

    _zone = field_validator("timezone")(check_timezone)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396: objects merge key by key, `null` removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged
