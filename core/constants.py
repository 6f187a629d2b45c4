"""Names shared by the API, the worker and the workflows: task queue, ids, search attributes.

Pure module (no I/O, no settings) so the workflow sandbox can import it.
"""

import hashlib

from temporalio.common import SearchAttributeKey

DEFAULT_TASK_QUEUE = "campaigns"
CAMPAIGN_WORKFLOW = "CampaignWorkflow"
RESEND_WORKFLOW = "ResendUnknownWorkflow"
CAMPAIGN_SEND_WORKFLOW = "CampaignSendWorkflow"
JOURNEY_WORKFLOW = "JourneyWorkflow"

SA_CAMPAIGN_STATUS = SearchAttributeKey.for_keyword("CampaignStatus")
SA_CAMPAIGN_TYPE = SearchAttributeKey.for_keyword("CampaignType")
SA_TENANT_ID = SearchAttributeKey.for_keyword("TenantId")
SA_CLUB_ID = SearchAttributeKey.for_keyword("ClubId")
SEARCH_ATTRIBUTES = (SA_CAMPAIGN_STATUS, SA_CAMPAIGN_TYPE, SA_TENANT_ID, SA_CLUB_ID)

# Error types carried by ApplicationError from workflow handlers to the API.
ERR_ILLEGAL_TRANSITION = "IllegalTransition"
ERR_CAMPAIGN_INVALID = "CampaignInvalid"


def campaign_workflow_id(campaign_id: str) -> str:
    """Workflow ids derive from business ids so every caller can address a campaign."""
    return f"campaign-{campaign_id}"


def run_id_for(campaign_id: str, run_number: int) -> str:
    """A send run is one snapshot of the audience; ONE_TIME campaigns have run 1 only."""
    return f"{campaign_id}.r{run_number}"


def trigger_control_run_id(campaign_id: str) -> str:
    """The run row of a TRIGGERED campaign that carries its halt epoch (each event has its own run)."""
    return f"{campaign_id}.t"


def event_run_prefix(campaign_id: str) -> str:
    """The run of one event routed to a TRIGGERED campaign is this prefix + the match's `seq` (the
    ledger's at-most-once key); db.ledger.triggers.take appends the seq in SQL, for a whole page."""
    return f"{campaign_id}.e"


def journey_run_id(campaign_id: str, send_key: str) -> str:
    """The run of one journey child send: the same send key is the same run (never sent twice)."""
    return f"{campaign_id}.j{hashlib.sha256(send_key.encode()).hexdigest()[:16]}"
