"""The estimate before sending (README "Sending policies"): what a campaign's send would do with its
audience as it is now, without sending or writing anything.

It applies the same rules as the send, in the same order (consent and suppression, quiet hours at
the instant the send would start, frequency caps, then rendering), so on an unchanged audience the
estimate is what the ledger then records. A segment larger than EXACT_LIMIT is estimated from its
first EXACT_LIMIT members (ids are random, so they are a fair sample) and scaled (`exact: false`):
one tenant's estimate costs bounded time and memory whatever its audience.
"""

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from api.schemas.estimates import CampaignEstimate, ChannelEstimate, WaveEstimate
from core.consent import skip_reason
from core.enums import Channel, SkipReason
from core.policy import CapMode, Effective, QuietMode, in_holdout
from db import estimate as reads
from db.audience import member_ids_after, segment_size
from db.campaign_content import SendContent
from db.segments import SegmentRow
from providers.render_pool import EmailSource, RenderPool, RenderProblem
from providers.rendering import recipient_context
from providers.sms_encoding import sms_encoding

EXACT_LIMIT = 20_000
CHUNK = 2_000


class _Tally:
    def __init__(self) -> None:
        self.audience = 0
        self.to_send = 0
        self.held = 0
        self.skipped: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.segments = 0
        self.held_until: datetime | None = None
        self.waves: Counter[datetime] = Counter()

    def hold(self, until: datetime, *, wave: bool = False) -> None:
        """A message that waits for `until` (a local-time wave, a quiet window's end, a cap)."""
        self.held += 1
        self.held_until = until if self.held_until is None else min(self.held_until, until)
        if wave:
            self.waves[until] += 1


async def estimate(
    conn: AsyncConnection,
    pool: RenderPool,
    *,
    campaign_id: str,
    tenant_id: str,
    segment: SegmentRow,
    content: SendContent,
    policy: Effective,
    at: datetime,
    rates: dict[str, float | None],
) -> CampaignEstimate:
    """Walk the segment (up to EXACT_LIMIT members) through the send's rules, per channel."""
    size = await segment_size(conn, segment)
    tallies = {channel: _Tally() for channel in content.channels}
    seen, after = 0, None
    while seen < min(size, EXACT_LIMIT):
        ids = await member_ids_after(conn, segment, after, min(CHUNK, EXACT_LIMIT - seen))
        if not ids:
            break
        after, seen = ids[-1], seen + len(ids)
        rows = await reads.recipients(conn, tenant_id, ids)
        for channel in content.channels:
            rules = _Rules(conn, pool, channel, campaign_id, tenant_id, content, policy, at)
            await _chunk(rules, tallies[channel], rows)
    scale = size / seen if seen and size > seen else 1.0
    channels = {channel: _public(t, scale, channel) for channel, t in tallies.items()}
    waves: Counter[datetime] = Counter()
    for t in tallies.values():
        waves.update(t.waves)
    return CampaignEstimate(
        waves=[WaveEstimate(at=w, messages=round(n * scale)) for w, n in sorted(waves.items())],
        campaign_id=campaign_id,
        at=at,
        audience=size,
        exact=scale == 1.0,
        channels=channels,
        expected_duration_seconds=_duration(channels, rates),
    )


@dataclass(frozen=True)
class _Rules:
    """One channel's walk through the send's rules, at the instant the send would start."""

    conn: AsyncConnection
    pool: RenderPool
    channel: str
    campaign_id: str
    tenant_id: str
    content: SendContent
    policy: Effective
    at: datetime

    def verdict(self, row: RowMapping) -> SkipReason | tuple[datetime, bool] | None:
        """Consent, holdout, local time and quiet hours for one recipient: a skip, the instant
        the message waits for (and whether it is a local-time wave), or None (it goes now)."""
        reason = skip_reason(row, self.channel)
        if reason is None and in_holdout(self.campaign_id, row["id"], self.policy.holdout_percent):
            reason = SkipReason.HOLDOUT
        if reason is not None:
            return reason
        zone = self.policy.zone_for(row["timezone"])
        if self.policy.deliver_at is not None:
            local = self.policy.deliver_at.instant(self.at, zone)
            if local > self.at:  # a local-time wave; the later rules are judged again then
                return local, True
        window = self.policy.quiet_hours.get(self.channel)
        ends = window.ends_at(self.at, zone) if window is not None else None
        if ends is None:
            return None
        return SkipReason.QUIET_HOURS if self.policy.quiet_mode == QuietMode.SKIP else (ends, False)

    async def capped(self, tally: "_Tally", passed: list[RowMapping]) -> set[str]:
        """The people at the frequency cap: skipped, or held when the campaign defers."""
        cap = self.policy.frequency_caps.get(self.channel)
        if cap is None or not passed:
            return set()
        people = [r["id"] for r in passed]
        counts = await reads.messages_in_window(
            self.conn, self.tenant_id, self.channel, people, cap.window, self.at
        )
        capped: set[str] = set()
        for person, (n, oldest) in counts.items():
            if n < cap.max_messages:
                continue
            frees_at = oldest + cap.window
            deferring = self.policy.frequency_cap_mode == CapMode.DEFER
            if deferring and self.at < frees_at <= self.at + self.policy.defer_limit:
                tally.hold(frees_at)  # it waits for the cap to free a place, then goes
            else:
                tally.skipped[SkipReason.FREQUENCY_CAP.value] += 1
                capped.add(person)
        return capped


async def _chunk(rules: _Rules, tally: "_Tally", rows: Sequence[RowMapping]) -> None:
    """One chunk of the audience on one channel. Held messages go out later but are counted as
    to be sent: `to_send` includes them."""
    tally.audience += len(rows)
    passed: list[RowMapping] = []
    for row in rows:
        verdict = rules.verdict(row)
        if isinstance(verdict, SkipReason):
            tally.skipped[verdict.value] += 1
            continue
        if verdict is not None:
            tally.hold(verdict[0], wave=verdict[1])
        passed.append(row)
    capped = await rules.capped(tally, passed)
    passed = [r for r in passed if r["id"] not in capped]
    for result in await _render(rules.pool, rules.tenant_id, rules.channel, rules.content, passed):
        if isinstance(result, RenderProblem):
            tally.failed[result.reason] += 1
            continue
        tally.to_send += 1
        if isinstance(result, str):
            tally.segments += sms_encoding(result).segments


async def _render(
    pool: RenderPool, tenant_id: str, channel: str, content: SendContent, rows: Sequence[RowMapping]
) -> Sequence[Any]:
    if not rows:
        return []
    template = content.templates[Channel(channel)]
    contexts = [recipient_context(dict(r)) for r in rows]
    if template is None:
        return [RenderProblem(f"the campaign has no {channel} template") for _ in rows]
    if channel == Channel.EMAIL:
        source = EmailSource(template["subject"], template["html"], template["text"])
        return await pool.render_email(tenant_id, source, contexts)
    return await pool.render_sms(tenant_id, template["body"], contexts)


def _public(t: _Tally, scale: float, channel: str) -> ChannelEstimate:
    def n(value: int) -> int:
        return round(value * scale)

    return ChannelEstimate(
        audience=n(t.audience),
        to_send=n(t.to_send),
        held=n(t.held),
        first_held_until=t.held_until,
        skipped={k: n(v) for k, v in sorted(t.skipped.items())},
        failed={k: n(v) for k, v in sorted(t.failed.items())},
        sms_segments=n(t.segments) if channel == Channel.SMS else None,
    )


def _duration(channels: dict[str, ChannelEstimate], rates: dict[str, float | None]) -> float | None:
    """Seconds the sends take at the provider accounts' rate limits (channels in parallel); None
    when no channel is rate-limited (then the provider and the workers set the pace)."""
    spans = [c.to_send / rate for ch, c in channels.items() if (rate := rates.get(ch))]
    return max(spans) if spans else None
