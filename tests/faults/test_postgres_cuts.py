"""Fault: every connection to the campaign database terminated, several times mid-campaign.

The local Postgres is shared with other test sessions, so the server itself is never restarted:
`pg_terminate_backend` on every backend of this session's database is what a restart looks like
to the service (each open connection breaks at once; new ones work).

Recording a wave's answers is idempotent and retried on a fresh connection, so a cut loses no
answer: the campaign ends with no UNKNOWN at all, and the test requires exactly that. It also
requires that cuts really hit connections in use (a statement or transaction running), since cuts
of idle pooled connections alone would prove nothing about the recording path.
"""

import psycopg

from tests.conftest import StackFactory
from tests.factories import make_audience, make_templates
from tests.faults.conftest import size
from tests.faults.drive import expected_messages, received, until_received
from tests.faults.reconcile import reconcile
from tests.helpers import create_campaign, wait_for

N = size(2_500, 10_000)
CUTS = [0.05 + 0.075 * k for k in range(11)]  # at 5%, 12.5%, ... 80% of the messages

# Every backend but our own; how many of them were busy (in a statement or a transaction).
_TERMINATE = (
    "SELECT count(pg_terminate_backend(pid)), count(*) FILTER (WHERE state <> 'idle')"
    " FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
)


_BUSY = (
    "SELECT count(*) FROM pg_stat_activity"
    " WHERE datname = current_database() AND pid <> pg_backend_pid() AND state <> 'idle'"
)


async def test_postgres_connections_cut_mid_campaign(make_stack: StackFactory, database_url: str) -> None:
    stack = await make_stack(batch_size=250)
    audience = await make_audience(stack.engine, stack.tenant, N, no_phone_every=7, email_opt_out_every=9)
    email_t, sms_t = await make_templates(stack.engine, stack.tenant)
    cid = await create_campaign(stack, audience, email_t, sms_t)
    total = expected_messages(audience)

    assert (await stack.call("POST", f"/campaigns/{cid}/execute")).status_code == 200
    terminated = busy = busy_cuts = 0
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as admin:
        for share in CUTS:
            await until_received(stack, audience, int(total * share))
            # Cut when some statement or transaction is running, if one comes: the send path's
            # statements are short (one autocommit statement per group commit), so look for one
            # first rather than terminating idle connections over and over.
            for _ in range(1000):
                found = await (await admin.execute(_BUSY)).fetchone()
                if found is not None and found[0]:
                    break
            row = await (await admin.execute(_TERMINATE)).fetchone()
            assert row is not None
            terminated, busy = terminated + row[0], busy + row[1]
            if row[1]:
                busy_cuts += 1
    assert received(stack, audience) < total, "the last cut came after the campaign had sent"
    assert busy_cuts >= 1, f"no cut hit a busy connection ({terminated} idle ones terminated)"
    await wait_for(stack, cid, "COMPLETED", timeout=240)

    await reconcile(
        stack,
        cid,
        audience,
        case="Postgres cuts",
        faults=f"{len(CUTS)} x every backend of the database terminated ({busy_cuts} cuts while one"
        f" was busy; {terminated} connections, {busy} busy)",
        # The providers' answers are in memory when a cut breaks the recording: it is retried on a
        # fresh connection, so not one message may be left UNKNOWN.
        unknown_bound=0,
        expect_unknown=set(),
    )
