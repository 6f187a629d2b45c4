"""The reconciliation every fault case ends with (issue 8), and the figures for the README table.

For one campaign and the audience of its snapshot it proves, from the ledger API, the sinks and the
stats API:
- every recipient has exactly one outcome per channel: SENT, SKIPPED/FAILED/BOUNCED with a reason,
  or UNKNOWN (never PENDING, never two rows); a cancelled campaign may leave recipients unreached;
- recipients that were never eligible are SKIPPED with the right reason, eligible ones never are;
- the sinks hold every SENT message exactly once (the very message: its Message-ID or SMS sid is
  the ledger's providerMessageId) and nothing outside SENT and UNKNOWN; no address got two;
- UNKNOWN stays within the bound the case allows (the messages in flight at its faults);
- the counts of GET /campaigns/:id and of /stats equal the ledger.
"""

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from tests.conftest import Stack
from tests.factories import Audience
from tests.helpers import ledger

FINAL = {"SENT", "SKIPPED", "FAILED", "BOUNCED", "UNKNOWN"}


@dataclass
class Figures:
    """One row of the README's fault table."""

    case: str
    faults: str
    recipients: int
    messages: int = 0  # ledger rows: recipients x channels (less any a cancel left unreached)
    sent: int = 0
    received: int = 0  # messages the sinks hold for this audience
    skipped: int = 0
    failed: int = 0
    bounced: int = 0
    unknown: int = 0
    unknown_arrived: int = 0  # UNKNOWN messages the sinks do hold (the answer was lost, not the message)
    unknown_bound: int = 0
    duplicates: int = 0
    skips_without_reason: int = 0
    unreached: int = 0


# Figures of the cases run in this session, for the summary table (tests/faults/conftest.py).
COLLECTED: list[Figures] = []


def expected_skip(customer: dict[str, Any], channel: str) -> str | None:
    """The skip reason of a recipient as created by tests.factories (no other reason applies)."""
    if channel == "EMAIL":
        if not customer["email"]:
            return "NO_ADDRESS"
        return None if customer["email_opt_in"] else "NO_CONSENT"
    if not customer["phone"]:
        return "NO_ADDRESS"
    return None if customer["sms_opt_in"] else "NO_CONSENT"


async def reconcile(
    stack: Stack,
    campaign_id: str,
    audience: Audience,
    *,
    case: str,
    faults: str,
    unknown_bound: int,
    channels: tuple[str, ...] = ("EMAIL", "SMS"),
    expect_unknown: set[str] | None = None,
    unreached_ok: bool = False,
) -> Figures:
    """Assert everything above; `expect_unknown` (addresses), when given, is the exact UNKNOWN set."""
    body = (await stack.call("GET", f"/campaigns/{campaign_id}")).json()
    stats = (await stack.call("GET", f"/campaigns/{campaign_id}/stats")).json()
    rows = await ledger(stack, campaign_id)
    figures = Figures(case=case, faults=faults, recipients=len(audience.customers))
    figures.unknown_bound = unknown_bound

    by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in rows:
        by_key.setdefault((row["customerId"], row["channel"]), []).append(row)
    figures.duplicates = sum(len(v) - 1 for v in by_key.values() if len(v) > 1)
    assert figures.duplicates == 0, "two ledger rows for one (recipient, channel)"
    members = {c["id"] for c in audience.customers}
    strangers = {key for key in by_key if key[0] not in members}
    assert not strangers, f"ledger rows for customers outside the snapshot: {sorted(strangers)[:5]}"

    outcomes = Counter(row["outcome"] for row in rows)
    assert set(outcomes) <= FINAL, f"rows without a final outcome: {outcomes}"
    figures.skips_without_reason = sum(1 for row in rows if row["outcome"] != "SENT" and not row["reason"])
    assert figures.skips_without_reason == 0, "an outcome other than SENT without a reason"

    email_ids = stack.smtp.message_ids({c["email"] for c in audience.customers if c["email"]})
    sms_sids: dict[str, list[str]] = {}
    phones = {c["phone"] for c in audience.customers if c["phone"]}
    for m in list(stack.sms.messages):
        if m.to in phones:
            sms_sids.setdefault(m.to, []).append(m.sid)
    held = {**{("EMAIL", a): v for a, v in email_ids.items()}, **{("SMS", p): v for p, v in sms_sids.items()}}
    figures.received = sum(len(v) for v in held.values())
    figures.duplicates += sum(len(v) - 1 for v in held.values() if len(v) > 1)
    assert figures.duplicates == 0, "an address received one message twice"

    reached: set[tuple[str, str]] = set()
    unknown_addresses: set[str] = set()
    for customer in audience.customers:
        for channel in channels:
            found = by_key.get((customer["id"], channel))
            address = customer["email"] if channel == "EMAIL" else customer["phone"]
            if found is None:
                assert unreached_ok, f"no outcome for {customer['id']} on {channel}: silently skipped"
                assert (channel, address) not in held, f"{address} received a message with no ledger row"
                figures.unreached += 1
                continue
            row = found[0]
            reached.add((channel, address))
            skip = expected_skip(customer, channel)
            if skip is not None:
                assert (row["outcome"], row["reason"]) == ("SKIPPED", skip), (customer, channel, row)
            else:
                assert row["outcome"] != "SKIPPED", f"an eligible recipient was skipped: {row}"
            copies = held.get((channel, address), [])
            if row["outcome"] == "SENT":
                assert len(copies) == 1, f"SENT but the sink holds {len(copies)}: {row}"
                assert row["providerMessageId"] == copies[0], f"the sink holds another message: {row}"
            elif row["outcome"] == "UNKNOWN":
                unknown_addresses.add(address)
                figures.unknown_arrived += len(copies)
            else:
                assert not copies, f"{row['outcome']} but the sink holds it: {row}"

    figures.messages = len(rows)
    figures.sent = outcomes["SENT"]
    figures.skipped = outcomes["SKIPPED"]
    figures.failed = outcomes["FAILED"]
    figures.bounced = outcomes["BOUNCED"]
    figures.unknown = outcomes["UNKNOWN"]
    assert figures.sent <= figures.received <= figures.sent + figures.unknown
    if expect_unknown is not None:
        odd = [r for r in rows if (r["outcome"] == "UNKNOWN") != (r["address"] in expect_unknown)]
        assert not odd, f"UNKNOWN is not exactly the messages whose answer was lost: {odd[:5]}"
    assert figures.unknown <= unknown_bound, f"{figures.unknown} UNKNOWN, at most {unknown_bound} allowed"
    # targets = sent + skipped + failed + bounced + unknown (+ unreached after a cancel), per channel.
    assert figures.messages + figures.unreached == len(audience.customers) * len(channels)

    _check_stats(body, stats, rows, len(audience.customers))
    COLLECTED.append(figures)
    _write_report(figures)
    return figures


def _check_stats(
    body: dict[str, Any],
    stats: dict[str, Any],
    rows: list[dict[str, Any]],
    targets: int,
) -> None:
    """GET /campaigns/:id and /stats count exactly what the ledger holds.

    README "Delivery guarantees (the ledger)" and "Stats" state what they count."""

    def recipients(outcome: str) -> int:
        return len({row["customerId"] for row in rows if row["outcome"] == outcome})

    def messages(outcome: str, channel: str | None = None) -> int:
        return sum(1 for r in rows if r["outcome"] == outcome and channel in (None, r["channel"]))

    expected = {
        "targetCount": targets,
        "sentCount": recipients("SENT"),
        "bouncedCount": recipients("BOUNCED"),
        "failedCount": recipients("FAILED"),
        "skippedCount": messages("SKIPPED"),
        "unknownCount": messages("UNKNOWN"),
    }
    for source, counts in (("GET /campaigns/:id", body), ("/stats", stats)):
        wrong = {k: (counts[k], expected[k]) for k in expected if counts[k] != expected[k]}
        assert not wrong, f"{source} disagrees with the ledger ((shown, ledger) per field): {wrong}"
    by_channel = stats["byChannel"]
    assert by_channel["EMAIL"]["sent"] == messages("SENT", "EMAIL")
    assert by_channel["EMAIL"]["bounced"] == messages("BOUNCED", "EMAIL")
    assert by_channel["SMS"]["sent"] == messages("SENT", "SMS")
    assert by_channel["SMS"]["failed"] == messages("FAILED", "SMS")


def _write_report(figures: Figures) -> None:
    """Append the figures as a JSON line to CAMPAIGNS_FAULTS_REPORT, when set (for the README)."""
    path = os.environ.get("CAMPAIGNS_FAULTS_REPORT")
    if path:
        with open(path, "a", encoding="utf-8") as out:
            out.write(json.dumps(asdict(figures)) + "\n")
