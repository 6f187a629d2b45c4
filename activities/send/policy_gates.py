"""The sending-policy gates of a campaign's sends: recipient-local delivery, quiet hours, then
frequency caps (README "Sending policies").

Both read the campaign's effective policy (core.policy.effective: the tenant's rules with the
campaign's overrides). They run in the transaction that records the page's skips, so a frequency
hold and the skips it causes commit together.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncConnection

from activities.send.gates import ConsentGate, Gate, Hold, Verdict
from activities.send.model import Message
from core.enums import SkipReason
from core.experiments import ABTest
from core.policy import CapMode, DeliverAt, Effective, QuietMode, in_holdout
from db.policies import hold_for_cap


@dataclass(frozen=True)
class When:
    """The workflow's clock for a page: `now` judges quiet hours and due times; `anchor` is when
    the send (or the RECURRING run) started, from which recipient-local delivery counts."""

    now: datetime
    anchor: datetime | None = None


class HoldoutGate:
    """A person in the campaign's holdout group (core.policy.in_holdout) is skipped HOLDOUT on
    every channel: the control group that lift is measured against."""

    name = "holdout"

    def __init__(self, campaign_id: str, percent: float) -> None:
        self._campaign = campaign_id
        self._percent = percent

    async def screen(self, messages: Sequence[Message]) -> Sequence[Verdict]:
        return [
            SkipReason.HOLDOUT if in_holdout(self._campaign, m.customer_id, self._percent) else None
            for m in messages
        ]


class VariantGate:
    """An A/B test: a person outside the test slice waits (`Hold`) until the test ends, when the
    workflow has picked the winner; everyone else passes (their variant is assigned by
    core.experiments.ABTest.assign)."""

    name = "ab-test"

    def __init__(self, policy: Effective, test: ABTest, campaign_id: str, when: When) -> None:
        self._policy = policy
        self._test = test
        self._campaign = campaign_id
        self._ends = (when.anchor or when.now) + timedelta(hours=test.duration_hours)

    async def screen(self, messages: Sequence[Message]) -> Sequence[Verdict]:
        winner = self._policy.ab_winner
        return [
            Hold(self._ends) if self._test.assign(self._campaign, m.customer_id, winner) is None else None
            for m in messages
        ]


class LocalTimeGate:
    """Recipient-local delivery: a message waits (`Hold`) until its recipient's local delivery
    time, computed from the send's start in the recipient's zone (else the campaign's)."""

    name = "local-time"

    def __init__(self, policy: Effective, deliver_at: DeliverAt, when: When) -> None:
        self._policy = policy
        self._deliver_at = deliver_at
        self._when = when

    async def screen(self, messages: Sequence[Message]) -> Sequence[Verdict]:
        anchor = self._when.anchor or self._when.now
        verdicts: list[Verdict] = []
        for m in messages:
            at = self._deliver_at.instant(anchor, self._policy.zone_for(m.customer.get("timezone")))
            verdicts.append(Hold(at) if at > self._when.now else None)
        return verdicts


class QuietHoursGate:
    """A message inside the recipient's quiet hours (their timezone, else the campaign's) waits
    for the window's end (`Hold`), or is skipped QUIET_HOURS when the campaign says so."""

    name = "quiet-hours"

    def __init__(self, policy: Effective, now: datetime) -> None:
        self._policy = policy
        self._now = now

    async def screen(self, messages: Sequence[Message]) -> Sequence[Verdict]:
        verdicts: list[Verdict] = []
        for m in messages:
            window = self._policy.quiet_hours.get(m.channel)
            if window is None:
                verdicts.append(None)
                continue
            ends = window.ends_at(self._now, self._policy.zone_for(m.customer.get("timezone")))
            if ends is None:
                verdicts.append(None)
            elif self._policy.quiet_mode == QuietMode.SKIP:
                verdicts.append(SkipReason.QUIET_HOURS)
            else:
                verdicts.append(Hold(ends))
        return verdicts


class FrequencyCapGate:
    """A person at the tenant's cap for the channel is skipped FREQUENCY_CAP (or, when the
    campaign defers, held until the cap frees a place, if that is within its limit); anyone else
    is let through and counted (db.policies.hold_for_cap). Last of the gates: passing it counts."""

    name = "frequency-cap"

    def __init__(self, policy: Effective, conn: AsyncConnection, tenant_id: str, now: datetime) -> None:
        self._policy = policy
        self._conn = conn
        self._tenant = tenant_id
        self._now = now

    async def screen(self, messages: Sequence[Message]) -> Sequence[Verdict]:
        groups: dict[tuple[str, str], list[str]] = defaultdict(list)
        for m in messages:
            if self._policy.frequency_caps.get(m.channel) is not None:
                groups[(m.channel, m.run_id)].append(m.customer_id)
        capped: dict[tuple[str, str, str], datetime] = {}
        for (channel, run_id), people in groups.items():
            cap = self._policy.frequency_caps[channel]
            if cap is None:  # grouped above only when set
                continue
            at_cap = await hold_for_cap(
                self._conn,
                tenant_id=self._tenant,
                channel=channel,
                run_id=run_id,
                customer_ids=people,
                max_messages=cap.max_messages,
                window=cap.window,
                now=self._now,
            )
            for person, oldest in at_cap.items():
                capped[(channel, run_id, person)] = oldest + cap.window
        return [self._verdict(capped.get((m.channel, m.run_id, m.customer_id))) for m in messages]

    def _verdict(self, frees_at: datetime | None) -> Verdict:
        if frees_at is None:
            return None
        deferring = self._policy.frequency_cap_mode == CapMode.DEFER
        if deferring and self._now < frees_at <= self._now + self._policy.defer_limit:
            return Hold(frees_at)
        return SkipReason.FREQUENCY_CAP


def campaign_gates(
    policy: Effective, conn: AsyncConnection, tenant_id: str, campaign_id: str, when: When
) -> list[Gate]:
    """The gates of a campaign's own sends, in order: consent, holdout, recipient-local
    delivery, quiet hours, frequency caps."""
    gates: list[Gate] = [ConsentGate()]
    if policy.holdout_percent > 0:
        gates.append(HoldoutGate(campaign_id, policy.holdout_percent))
    if policy.ab_test is not None:
        gates.append(VariantGate(policy, policy.ab_test, campaign_id, when))
    if policy.deliver_at is not None:
        gates.append(LocalTimeGate(policy, policy.deliver_at, when))
    gates += [QuietHoursGate(policy, when.now), FrequencyCapGate(policy, conn, tenant_id, when.now)]
    return gates
