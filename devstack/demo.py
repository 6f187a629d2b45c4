"""`campaigns demo`: demo customers, a segment, two templates and a campaign, through the HTTP API.

It talks to a running stack exactly as any REST client would (no database shortcuts), so it also
serves as a smoke test of `campaigns dev`. Output is `KEY=value` lines: `eval "$(campaigns demo)"`.
"""

import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

FINAL_STATUSES = ("COMPLETED", "CANCELLED")

DEMO_PEOPLE = (
    ("Ada", "Lovelace"),
    ("Grace", "Hopper"),
    ("Alan", "Turing"),
)


class DemoError(Exception):
    """The API refused a call or could not be reached; the message says which and why."""


@dataclass
class ApiClient:
    base_url: str
    token: str
    timeout: float = 30.0

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.base_url.rstrip("/") + path,
            data=data,
            method=method,
            headers={"Authorization": f"Bearer {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                payload = response.read()
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise DemoError(f"{method} {path} -> {err.code}: {detail}") from err
        except urllib.error.URLError as err:
            raise DemoError(
                f"cannot reach {self.base_url} ({err.reason}); is `campaigns dev` running?"
            ) from err
        result: dict[str, Any] = json.loads(payload) if payload else {}
        return result


@dataclass
class DemoIds:
    customer_ids: list[str] = field(default_factory=list)
    segment_id: str = ""
    email_template_id: str = ""
    sms_template_id: str = ""
    campaign_id: str = ""

    def lines(self) -> list[str]:
        return [
            f"CUSTOMER_IDS={','.join(self.customer_ids)}",
            f"SEGMENT_ID={self.segment_id}",
            f"EMAIL_TEMPLATE_ID={self.email_template_id}",
            f"SMS_TEMPLATE_ID={self.sms_template_id}",
            f"CAMPAIGN_ID={self.campaign_id}",
        ]


def create_demo(api: ApiClient, tenant: str, run_tag: str) -> DemoIds:
    """Everything a campaign needs, named with `run_tag` so repeated runs do not collide."""
    ids = DemoIds()
    for n, (first, last) in enumerate(DEMO_PEOPLE, start=1):
        customer = api.call(
            "POST",
            "/customers",
            {
                "tenantId": tenant,
                "externalId": f"demo-{run_tag}-{n}",
                "email": f"{first.lower()}.{run_tag}@example.com",
                "phone": f"+1555010{n:04d}",
                "firstName": first,
                "lastName": last,
                "clubId": "club_demo",
                "emailOptIn": True,
                "smsOptIn": True,
                "attributes": {"handicap": 10 + n},
            },
        )
        ids.customer_ids.append(customer["id"])
    ids.segment_id = api.call(
        "POST",
        "/segments",
        {
            "tenantId": tenant,
            "clubId": "club_demo",
            "name": f"Demo golfers {run_tag}",
            "type": "STATIC",
            "customerIds": ids.customer_ids,
        },
    )["id"]
    ids.email_template_id = api.call(
        "POST",
        "/templates",
        {
            "tenantId": tenant,
            "name": f"Demo email {run_tag}",
            "channel": "EMAIL",
            "subject": "Tee time, {{ firstName }}?",
            "html": "<p>Hi {{ firstName }}, the summer tournament is open. "
            "<a href='https://example.com/tournament'>Book a tee time</a></p>",
            "text": "Hi {{ firstName }}, the summer tournament is open: https://example.com/tournament",
        },
    )["id"]
    ids.sms_template_id = api.call(
        "POST",
        "/templates",
        {
            "tenantId": tenant,
            "name": f"Demo SMS {run_tag}",
            "channel": "SMS",
            "body": "Hi {{ firstName }}, the summer tournament is open. Reply STOP to opt out.",
        },
    )["id"]
    ids.campaign_id = api.call(
        "POST",
        "/campaigns",
        {
            "tenantId": tenant,
            "clubId": "club_demo",
            "name": f"Demo summer tournament {run_tag}",
            "type": "ONE_TIME",
            "segmentId": ids.segment_id,
            "channels": ["EMAIL", "SMS"],
            "emailTemplateId": ids.email_template_id,
            "smsTemplateId": ids.sms_template_id,
        },
    )["id"]
    return ids


def execute_and_wait(api: ApiClient, campaign_id: str, timeout: float = 60.0) -> dict[str, Any]:
    """Execute the campaign now and poll it until it reaches a final status."""
    api.call("POST", f"/campaigns/{campaign_id}/execute")
    deadline = time.monotonic() + timeout
    while True:
        campaign = api.call("GET", f"/campaigns/{campaign_id}")
        if campaign.get("status") in FINAL_STATUSES:
            return campaign
        if time.monotonic() > deadline:
            raise DemoError(f"campaign {campaign_id} still {campaign.get('status')} after {timeout:.0f}s")
        time.sleep(0.5)
