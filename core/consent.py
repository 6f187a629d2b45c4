"""Consent and suppression as one pure rule (README "Consent and suppression"): the send's consent
gate and the estimate before sending both apply it, so they cannot disagree."""

from collections.abc import Mapping
from typing import Any

from core.enums import Channel, SkipReason


def skip_reason(customer: Mapping[Any, Any], channel: str) -> SkipReason | None:
    """Why a recipient gets nothing on a channel (README "Consent and suppression"), or None when eligible.

    `customer` holds db.audience.CONSENT_COLUMNS. The first reason that applies is the one
    recorded: no address, unsubscribed, hard-bounced (email), on the suppression list, no opt-in.
    """
    if customer["present"] is None:
        return SkipReason.CUSTOMER_DELETED
    if channel == Channel.EMAIL:
        if not customer["email"]:
            return SkipReason.NO_ADDRESS
        if customer["email_unsubscribed_at"] is not None:
            return SkipReason.UNSUBSCRIBED
        if customer["email_bounced_at"] is not None:
            return SkipReason.HARD_BOUNCED
        if customer["email_suppressed"]:
            return _listed(customer["email_suppressed"])
        if not customer["email_opt_in"]:
            return SkipReason.NO_CONSENT
        return None
    if not customer["phone"]:
        return SkipReason.NO_ADDRESS
    if customer["sms_unsubscribed_at"] is not None:
        return SkipReason.UNSUBSCRIBED
    if customer["sms_suppressed"]:
        return _listed(customer["sms_suppressed"])
    if not customer["sms_opt_in"]:
        return SkipReason.NO_CONSENT
    return None


def _listed(entry: object) -> SkipReason:
    """The reason of a suppression-list entry: the one the service stored with it (COMPLAINED,
    UNSUBSCRIBED, ... from a provider's webhook), else SUPPRESSED (an operator's entry)."""
    if isinstance(entry, str) and entry in SkipReason.__members__:
        return SkipReason(entry)
    return SkipReason.SUPPRESSED
