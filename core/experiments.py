"""A/B tests (README "A/B tests"): variants, who gets which, and how the winner is picked.

Pure code, shared by the API (validation), the send gates and the workflow's decision activity.
A campaign's test slice is a stable draw from the campaign and customer ids (`test_percent` of
the audience), split evenly between the variants by the same draw; everyone else waits for the
winner. The winner is the variant with the best rate on the chosen metric when a two-proportion
z-test says it beats the runner-up at the chosen confidence; otherwise (a tie, too small a sample,
no data) the first variant wins. An operator may pick the winner at any time before that.
"""

import hashlib
import math
from enum import StrEnum
from statistics import NormalDist
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic.alias_generators import to_camel

VariantKey = Annotated[str, Field(pattern=r"^[A-D]$", max_length=1, description="A, B, C or D")]


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class Metric(StrEnum):
    """Rates as `/stats` computes them: opened / delivered (sent, when the provider reports no
    deliveries), clicked / opened, converted / clicked."""

    OPEN_RATE = "OPEN_RATE"
    CLICK_RATE = "CLICK_RATE"
    CONVERSION_RATE = "CONVERSION_RATE"


class Variant(_Model):
    key: VariantKey
    email_template_id: str | None = Field(None, max_length=40)
    sms_template_id: str | None = Field(None, max_length=40)
    # Replaces the email template's subject for this variant (rendered like the template's).
    subject: str | None = Field(None, min_length=1, max_length=500)


class ABTest(_Model):
    variants: list[Variant] = Field(min_length=2, max_length=4)
    test_percent: float = Field(20.0, gt=0, le=100)
    metric: Metric = Metric.CLICK_RATE
    duration_hours: float = Field(4.0, gt=0, le=24 * 30)
    confidence: float = Field(0.95, ge=0.5, lt=1)
    # Send this variant to everyone, without a test phase.
    winner: VariantKey | None = None

    @model_validator(mode="after")
    def _keys(self) -> "ABTest":
        keys = [v.key for v in self.variants]
        if keys != sorted(set(keys)) or keys[0] != "A":
            raise ValueError("variants are keyed A, B, C, D in order")
        if self.winner is not None and self.winner not in keys:
            raise ValueError(f"winner {self.winner!r} is not a variant")
        return self

    def variant(self, key: str) -> Variant:
        return next(v for v in self.variants if v.key == key)

    def assign(self, campaign_id: str, customer_id: str, winner: str | None) -> str | None:
        """The variant a person gets: their test-slice variant, else the winner; None while the
        winner is not known (they wait for the decision)."""
        preset = self.winner or None
        if preset is not None:
            return preset
        digest = hashlib.sha256(f"ab\x1f{campaign_id}\x1f{customer_id}".encode()).digest()
        u = int.from_bytes(digest[:8], "big") / 2**64
        share = self.test_percent / 100
        if u < share:
            return self.variants[min(len(self.variants) - 1, int(u / share * len(self.variants)))].key
        return winner


class VariantCounts(_Model):
    key: str
    sent: int
    delivered: int
    opened: int
    clicked: int
    converted: int

    def rate(self, metric: Metric) -> tuple[int, int]:
        """(successes, trials) of the metric."""
        if metric == Metric.OPEN_RATE:
            return self.opened, self.delivered or self.sent
        if metric == Metric.CLICK_RATE:
            return self.clicked, self.opened
        return self.converted, self.clicked


class Decision(_Model):
    winner: str
    rule: str
    metric: Metric
    rates: dict[str, float | None]
    z: float | None = None
    p_value: float | None = None
    by_operator: bool = False


def decide(test: ABTest, counts: list[VariantCounts]) -> Decision:
    """The winner and why (module docstring)."""
    rates: dict[str, float | None] = {}
    for c in counts:
        hits, trials = c.rate(test.metric)
        rates[c.key] = hits / trials if trials else None
    ranked = sorted((c for c in counts if rates[c.key] is not None), key=lambda c: -(rates[c.key] or 0.0))
    first = test.variants[0].key
    if len(ranked) < 2:
        return Decision(
            winner=first, rule="too little data: the first variant", metric=test.metric, rates=rates
        )
    best, second = ranked[0], ranked[1]
    h1, n1 = best.rate(test.metric)
    h2, n2 = second.rate(test.metric)
    pooled = (h1 + h2) / (n1 + n2)
    spread = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
    z = (h1 / n1 - h2 / n2) / spread if spread > 0 else 0.0
    p_value = 1 - NormalDist().cdf(z)
    if p_value <= 1 - test.confidence:
        rule = f"{best.key} beats {second.key} (one-sided z-test, p={p_value:.4f})"
        return Decision(winner=best.key, rule=rule, metric=test.metric, rates=rates, z=z, p_value=p_value)
    rule = f"no variant beats the others at {test.confidence:.0%} confidence: the first variant"
    return Decision(winner=first, rule=rule, metric=test.metric, rates=rates, z=z, p_value=p_value)


class Lift(_Model):
    """What a holdout group says (README "Holdout groups"): each group's conversion rate (the
    converted share of its recipients), the difference, and the lift relative to the holdout,
    with a normal-approximation confidence interval of the difference (Wald); the relative
    interval divides it by the holdout's rate. Null where a group is empty or converts nobody."""

    messaged: int
    messaged_converted: int
    holdout: int
    holdout_converted: int
    messaged_rate: float | None
    holdout_rate: float | None
    difference: float | None
    difference_interval: tuple[float, float] | None
    lift: float | None
    lift_interval: tuple[float, float] | None
    confidence: float


def lift(
    messaged: int, converted: int, holdout: int, holdout_converted: int, confidence: float = 0.95
) -> Lift:
    p_t = converted / messaged if messaged else None
    p_h = holdout_converted / holdout if holdout else None
    difference = interval = relative = relative_interval = None
    if p_t is not None and p_h is not None:
        difference = p_t - p_h
        z = NormalDist().inv_cdf(0.5 + confidence / 2)
        spread = z * math.sqrt(p_t * (1 - p_t) / messaged + p_h * (1 - p_h) / holdout)
        interval = (round(difference - spread, 6), round(difference + spread, 6))
        if p_h > 0:
            relative = difference / p_h
            relative_interval = (round(interval[0] / p_h, 6), round(interval[1] / p_h, 6))
    return Lift(
        messaged=messaged,
        messaged_converted=converted,
        holdout=holdout,
        holdout_converted=holdout_converted,
        messaged_rate=p_t,
        holdout_rate=p_h,
        difference=difference,
        difference_interval=interval,
        lift=relative,
        lift_interval=relative_interval,
        confidence=confidence,
    )
