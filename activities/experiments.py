"""decide_winner: the end of an A/B test's test phase (core.experiments; README "A/B tests").

Reads each variant's distinct recipients (sent, delivered, opened, clicked, converted) from the
ledger and the interactions (opens and clicks of people only: machine ones, such as privacy
proxies and link scanners, never choose a winner; README "Honest engagement"), decides by the
campaign's metric and confidence (or takes the operator's pick), and records the winner once: a
retried or repeated decision keeps the first.
"""

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.deps import ActivityDeps
from core.constants import ERR_CAMPAIGN_INVALID
from core.experiments import ABTest, Decision, decide
from core.messages import DecideInput, DecideResult
from db import experiments, policies


class ExperimentActivities:
    def __init__(self, deps: ActivityDeps) -> None:
        self._deps = deps

    @activity.defn(name="decide_winner")
    async def decide_winner(self, inp: DecideInput) -> DecideResult:
        async with self._deps.engine.begin() as conn:
            stored = await experiments.experiment(conn, inp.campaign_id, inp.tenant_id)
            if stored is None or stored["ab_test"] is None:
                raise ApplicationError(
                    "the campaign has no A/B test", type=ERR_CAMPAIGN_INVALID, non_retryable=True
                )
            if stored["ab_winner"] is not None:
                if inp.now is not None:
                    await policies.make_due(conn, inp.campaign_id, inp.now)
                return DecideResult(winner=stored["ab_winner"])
            test = ABTest.model_validate(stored["ab_test"])
            counts = await experiments.variant_counts(conn, inp.campaign_id, test)
            decision = decide(test, counts)
            if inp.forced is not None:
                decision = Decision(
                    winner=inp.forced,
                    rule=f"picked by an operator ({decision.rule} by then)",
                    metric=test.metric,
                    rates=decision.rates,
                    z=decision.z,
                    p_value=decision.p_value,
                    by_operator=True,
                )
            await experiments.record_decision(conn, inp.campaign_id, inp.tenant_id, decision)
            if inp.now is not None:
                await policies.make_due(conn, inp.campaign_id, inp.now)
            stored = await experiments.experiment(conn, inp.campaign_id, inp.tenant_id)
        winner = stored["ab_winner"] if stored is not None else decision.winner
        return DecideResult(winner=str(winner))
