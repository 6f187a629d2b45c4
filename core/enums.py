"""Enumerations of the API and the ledger, as the seed and contract spell them."""

from enum import StrEnum


class CampaignStatus(StrEnum):
    DRAFT = "DRAFT"
    SCHEDULED = "SCHEDULED"
    ACTIVE = "ACTIVE"
    PAUSED = "PAUSED"
    COMPLETED = "COMPLETED"
    CANCELLED = "CANCELLED"

    @property
    def is_final(self) -> bool:
        return self in (CampaignStatus.COMPLETED, CampaignStatus.CANCELLED)


class CampaignType(StrEnum):
    ONE_TIME = "ONE_TIME"
    RECURRING = "RECURRING"
    TRIGGERED = "TRIGGERED"
    JOURNEY = "JOURNEY"


class Channel(StrEnum):
    EMAIL = "EMAIL"
    SMS = "SMS"


class SegmentType(StrEnum):
    STATIC = "STATIC"
    DYNAMIC = "DYNAMIC"


class Outcome(StrEnum):
    """Ledger outcome of one (run, recipient, channel) message (README "Delivery guarantees (the ledger)")."""

    PENDING = "PENDING"
    SENT = "SENT"
    SKIPPED = "SKIPPED"
    FAILED = "FAILED"
    BOUNCED = "BOUNCED"
    UNKNOWN = "UNKNOWN"


class SkipReason(StrEnum):
    NO_ADDRESS = "NO_ADDRESS"
    NO_CONSENT = "NO_CONSENT"
    UNSUBSCRIBED = "UNSUBSCRIBED"
    HARD_BOUNCED = "HARD_BOUNCED"
    SUPPRESSED = "SUPPRESSED"  # the address is on the tenant's suppression list
    # The address is on the suppression list because its owner reported a message as spam (a
    # provider's complaint event; README "Provider webhooks").
    COMPLAINED = "COMPLAINED"
    PROVIDER_ERROR = "PROVIDER_ERROR"
    CRASHED_IN_FLIGHT = "CRASHED_IN_FLIGHT"
    CUSTOMER_DELETED = "CUSTOMER_DELETED"
    # FAILED before any provider call: the template could not be rendered for this recipient (an
    # error, or a render limit), or its rendered text is longer than a message may be.
    TEMPLATE_ERROR = "TEMPLATE_ERROR"
    TOO_LONG = "TOO_LONG"
    # Sending policies (README "Sending policies"): inside the recipient's quiet hours with a
    # campaign that skips rather than waits, or at the tenant's frequency cap for the channel.
    QUIET_HOURS = "QUIET_HOURS"
    FREQUENCY_CAP = "FREQUENCY_CAP"
    # The recipient is in the campaign's holdout (control) group: counted, never messaged.
    HOLDOUT = "HOLDOUT"


class InteractionType(StrEnum):
    SENT = "SENT"
    DELIVERED = "DELIVERED"
    OPENED = "OPENED"
    CLICKED = "CLICKED"
    CONVERTED = "CONVERTED"
    UNSUBSCRIBED = "UNSUBSCRIBED"
    BOUNCED = "BOUNCED"
    FAILED = "FAILED"
