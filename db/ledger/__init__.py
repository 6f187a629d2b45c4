"""The ledger: what was sent to whom, kept so that no message goes out twice.

Four tables (db.models): `send_runs` (one snapshot of a campaign's audience, with its halt epoch and
pinned template versions), `run_recipients` (that snapshot), `deliveries` (one row per run,
recipient and channel, claimed before the provider call; README "Delivery guarantees (the
ledger)") and `trigger_matches` (the queue of events routed to TRIGGERED campaigns).

Every statement on these tables lives in exactly one function of this package, so a rule (what a
hard bounce writes, what becomes of a claim nobody answered) is written once and cannot drift
between callers. Functions take the caller's `AsyncConnection` and never commit: the caller owns
the transaction. Values a caller reads by field come back as small frozen dataclasses.

- `runs`: `send_runs` and `run_recipients`: create a run and its snapshot, page bounds, halt
  epoch, completion, the template versions a run pinned.
- `outcomes`: the outcome rules more than one caller applies: PENDING -> UNKNOWN for claims
  nobody answered (a retried page, a finished campaign) and the customer's hard-bounce mark.
- `reads`: lookups of deliveries for the API and the journey activities (tracking, webhooks,
  conversions, tallies, the recipients listing, per-run stats).
- `triggers`: `trigger_matches`: routing new events, draining the queue, its stats.
- `sends`: the send hot path (a page's recipients and rows, decided rows, claims, answers).
- `resends`: the operator's resend of UNKNOWN rows.
"""
