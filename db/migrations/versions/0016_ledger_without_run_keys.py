"""The ledger's rows name their run without a foreign key (issue 14)

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 08:10:00

`deliveries.run_id` and `run_recipients.run_id` referenced `send_runs` with ON DELETE CASCADE. The
check ran for every inserted row: each claim of a send and each member a snapshot copies looked up
its run and locked it FOR KEY SHARE, and the two commit lanes, the next page and the snapshot
locking the same run row at once made Postgres write multixacts for it. Measured in the running
system (`pg_stat_statements`, 100,000 SMS): the snapshot's insert cost 183-200 ms per chunk of
10,000 with the keys and 98-105 ms without, and Postgres's CPU per SMS fell 7-11 %.

What the keys guarded holds by construction (docs/architecture.md, "The ledger's keys"): a run is
written before any of its rows (the snapshot's first chunk writes it in the same transaction; an
event or journey send writes it before it claims), and a run is never deleted: only a DRAFT
campaign is, which has no runs. Every test's stack checks at its end (tests/conftest.py) that no
ledger row its sends wrote names a run that does not exist.

The downgrade puts the keys back NOT VALID (rows written meanwhile are not re-checked at once) and
then validates them, which reads both tables once but blocks no writer.
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0016'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute("ALTER TABLE deliveries DROP CONSTRAINT IF EXISTS deliveries_run_id_fkey")
    op.execute("ALTER TABLE run_recipients DROP CONSTRAINT IF EXISTS run_recipients_run_id_fkey")


def downgrade() -> None:
    for table in ("deliveries", "run_recipients"):
        op.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {table}_run_id_fkey FOREIGN KEY (run_id)"
            " REFERENCES send_runs (id) ON DELETE CASCADE NOT VALID"
        )
        op.execute(f"ALTER TABLE {table} VALIDATE CONSTRAINT {table}_run_id_fkey")
