"""Who a page sends as, for the worker: providers.senders resolves it (docs/tenants-and-providers.md);
here an unusable sender becomes the non-retryable ERR_CAMPAIGN_INVALID that pauses the campaign, and
the sender's accounts become this worker's pooled connections."""

from collections.abc import Sequence

from temporalio.exceptions import ApplicationError

from activities.deps import ActivityDeps
from core.constants import ERR_CAMPAIGN_INVALID
from core.settings import Settings
from providers import senders
from providers.accounts import Sender, SmsAccount
from providers.sms import SmsClient
from providers.smtp import SmtpPool


def _invalid(err: senders.SenderUnusable) -> ApplicationError:
    return ApplicationError(str(err), type=ERR_CAMPAIGN_INVALID, non_retryable=True)


def platform_sender(settings: Settings) -> Sender:
    """The platform's sender (providers.senders.platform_sender); a bad platform DKIM key pauses."""
    try:
        return senders.platform_sender(settings)
    except senders.SenderUnusable as err:
        raise _invalid(err) from None


async def resolve_sender(
    deps: ActivityDeps, campaign_id: str, tenant_id: str, channels: Sequence[str]
) -> Sender:
    """The page's sender (providers.senders.resolve_sender); unusable: the campaign pauses."""
    try:
        return await senders.resolve_sender(deps.engine, deps.settings, campaign_id, tenant_id, channels)
    except senders.SenderUnusable as err:
        raise _invalid(err) from None


def smtp_pool(deps: ActivityDeps, sender: Sender) -> SmtpPool:
    """The pool of the sender's SMTP account (the platform's when it has none)."""
    if sender.smtp_account is None:
        return deps.smtp
    return deps.accounts.smtp(sender.smtp_account, deps.settings.smtp_pool_size)


def sms_client(deps: ActivityDeps, sender: Sender) -> SmsClient:
    """The client of the sender's SMS account and number (the platform's when it has neither)."""
    settings = deps.settings
    if sender.sms_account is None:
        if sender.sms_from == settings.sms_from:
            return deps.sms
        platform = SmsAccount("platform", "", "twilio-compatible", settings.sms_url, None, settings.sms_token)
        return deps.accounts.sms(platform, sender.sms_from, settings.sms_in_flight)
    return deps.accounts.sms(sender.sms_account, sender.sms_from, settings.sms_in_flight)
