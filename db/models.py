"""The Postgres data model: audience, content, campaigns (read model), the ledger and stats roll-ups.

The campaign workflow is the source of truth for lifecycle state; the `campaigns` table is its
read model for listing and filtering. Every table is tenant-scoped through `tenant_id` (directly or
through its campaign) and every query the API makes has an index.

The tables are defined by what they hold, in `db.models_audience`, `db.models_campaigns` and
`db.models_engagement`, on the one `Base` of `db.model_base`; this module names them all, so that
importing it registers every table in `Base.metadata` (the migrations compare against it).
"""

from db.model_base import TS, Base
from db.models_audience import Customer, Segment, SegmentMember, Suppression, Template, TemplateVersion
from db.models_campaigns import Campaign, Delivery, RunRecipient, SendRun
from db.models_engagement import (
    CampaignCounter,
    CampaignHourly,
    CustomerEvent,
    FrequencyHold,
    HeldMessage,
    HoldoutConversion,
    Interaction,
    InteractionFirst,
    RateLimitAccount,
    RateLimitLane,
    TenantPolicy,
    TestSend,
    TriggerMatch,
)

__all__ = [
    "TS",
    "Base",
    "Campaign",
    "CampaignCounter",
    "CampaignHourly",
    "Customer",
    "CustomerEvent",
    "Delivery",
    "FrequencyHold",
    "HeldMessage",
    "HoldoutConversion",
    "Interaction",
    "InteractionFirst",
    "RateLimitAccount",
    "RateLimitLane",
    "RunRecipient",
    "Segment",
    "SegmentMember",
    "SendRun",
    "Suppression",
    "Template",
    "TemplateVersion",
    "TenantPolicy",
    "TestSend",
    "TriggerMatch",
]
