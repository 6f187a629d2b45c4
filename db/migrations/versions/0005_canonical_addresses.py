"""Canonical addresses: stored emails and phones rewritten to the one form the API now stores

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02 04:30:00

Before this revision an email was stored as written (`Ada <ada@example.com>`, `ADA@Example.com`)
while the suppression list held it lower-cased, so a rule recorded under one spelling missed the
other although the message reached the same mailbox. Consent is now decided by plain equality of
canonical forms (core.addresses), so every stored address is rewritten to that form:

- Customer emails, in SQL: trimmed; a display name and angle brackets dropped when the brackets
  hold the address (`Ada <ada@example.com>` -> `ada@example.com`); `(comments)` dropped;
  lower-cased. A value that is still not a bare `local@domain` (stray brackets, spaces, several
  @, no dot in the domain) is set to NULL: the customer then has no email address (skipped
  NO_ADDRESS) rather than one the mail client might read differently from the suppression list.
  Emails with non-ASCII characters (rare) go through core.addresses in Python, so their domain is
  stored in its IDNA form exactly as the API stores it; those it refuses are set to NULL too.
- Suppression list entries, the same way per channel, except that an entry is never dropped for
  being malformed (removing a suppression is the unsafe direction): it keeps its normalised text.
  Entries that become equal are merged into the oldest (its id, note and author are kept).
- Phones were already checked E.164; a number written with its national trunk prefix after the
  country code (`+4407700900123`) becomes the number it dials (`+447700900123`), again merging
  suppression entries that become equal.

It also adds the partial indexes that let a send find, cheaply, another record of the tenant with
the same address that was unsubscribed or hard-bounced (db.audience.CONSENT_COLUMNS).

Downgrade drops the indexes only: the rewritten addresses cannot be un-rewritten, and the old
code reads canonical addresses correctly.
"""
import re
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from core.addresses import canonical_email, canonical_phone

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHITESPACE = r"E' \t\r\n\f\v'"


def _sql_canonical(column: str) -> str:
    """SQL for the email in `column` with brackets, comments and whitespace removed, lower-cased."""
    extracted = f"COALESCE(substring({column} FROM '<([^<>]*)>'), {column})"
    uncommented = f"regexp_replace({extracted}, '\\([^()]*\\)', '', 'g')"
    return f"lower(btrim({uncommented}, {WHITESPACE}))"


# A bare address: one @, nothing a mail client could parse around (spaces, brackets, quotes,
# commas...), a dot in the domain and no empty label.
BARE_EMAIL = r"^[^\s@<>()\[\]\\,;:\"]+@[^\s@<>()\[\]\\,;:\".]+(\.[^\s@<>()\[\]\\,;:\".]+)+$"
ASCII_ONLY = "octet_length({c}) = char_length({c})"


def _python_canonical_email(value: str) -> str | None:
    """The same steps as _sql_canonical, then the API's own rule; None when no address comes out."""
    inner = re.search(r"<([^<>]*)>", value)
    text = re.sub(r"\([^()]*\)", "", inner.group(1) if inner else value).strip()
    try:
        return canonical_email(text)
    except ValueError:
        return None


def _python_canonical_phone(value: str) -> str | None:
    try:
        return canonical_phone(value)
    except ValueError:
        return None


def upgrade() -> None:
    conn = op.get_bind()
    _customer_emails(conn)
    _customer_phones(conn)
    _suppressions(conn)
    op.create_index(
        'ix_customers_email_unsubscribed', 'customers', ['tenant_id', 'email'],
        postgresql_where=sa.text('email_unsubscribed_at IS NOT NULL'),
    )
    op.create_index(
        'ix_customers_email_bounced', 'customers', ['tenant_id', 'email'],
        postgresql_where=sa.text('email_bounced_at IS NOT NULL'),
    )
    op.create_index(
        'ix_customers_sms_unsubscribed', 'customers', ['tenant_id', 'phone'],
        postgresql_where=sa.text('sms_unsubscribed_at IS NOT NULL'),
    )


def _customer_emails(conn: sa.Connection) -> None:
    conn.execute(sa.text(
        f"""
        UPDATE customers c SET email = n.email, updated_at = now()
        FROM (
            SELECT id, CASE WHEN e ~ :bare THEN e END AS email
            FROM (SELECT id, {_sql_canonical('email')} AS e FROM customers
                  WHERE email IS NOT NULL AND {ASCII_ONLY.format(c='email')}) AS x
        ) AS n
        WHERE c.id = n.id AND c.email IS DISTINCT FROM n.email
        """
    ), {"bare": BARE_EMAIL})
    unicode = conn.execute(sa.text(
        f"SELECT DISTINCT email FROM customers WHERE email IS NOT NULL AND NOT ({ASCII_ONLY.format(c='email')})"
    )).scalars().all()
    changes = [{"old": v, "new": _python_canonical_email(v)} for v in unicode]
    changes = [c for c in changes if c["new"] != c["old"]]
    if changes:
        conn.execute(
            sa.text("UPDATE customers SET email = :new, updated_at = now() WHERE email = :old"), changes
        )


# A country code (1 to 3 digits) followed by a 0: the only E.164 strings whose canonical form can
# differ (a national trunk prefix written after the country code). The rest are already canonical.
TRUNK_ZERO = r"^\+[1-9][0-9]{0,2}0"


def _customer_phones(conn: sa.Connection) -> None:
    candidates = conn.execute(sa.text(
        "SELECT DISTINCT phone FROM customers WHERE phone ~ :trunk"
    ), {"trunk": TRUNK_ZERO}).scalars().all()
    changes = [{"old": v, "new": _python_canonical_phone(v) or v} for v in candidates]
    changes = [c for c in changes if c["new"] != c["old"]]
    if changes:
        conn.execute(
            sa.text("UPDATE customers SET phone = :new, updated_at = now() WHERE phone = :old"), changes
        )


def _suppressions(conn: sa.Connection) -> None:
    """Each entry's canonical address in a scratch table, then merge the equal ones and rewrite."""
    conn.execute(sa.text(
        f"""
        CREATE TEMPORARY TABLE suppression_canonical ON COMMIT DROP AS
        SELECT id, tenant_id, channel, created_at, address AS old,
               CASE WHEN channel = 'EMAIL' AND {ASCII_ONLY.format(c='address')}
                    THEN COALESCE(NULLIF({_sql_canonical('address')}, ''), address)
                    ELSE btrim(address, {WHITESPACE}) END AS address
        FROM suppressions
        """
    ))
    rows = conn.execute(sa.text(
        f"""
        SELECT id, channel, address FROM suppression_canonical
        WHERE (channel = 'EMAIL' AND NOT ({ASCII_ONLY.format(c='address')}))
           OR (channel = 'SMS' AND address ~ :trunk)
        """
    ), {"trunk": TRUNK_ZERO}).all()
    changes = []
    for entry_id, channel, address in rows:
        canonical = (_python_canonical_email if channel == "EMAIL" else _python_canonical_phone)(address)
        if canonical is not None and canonical != address:
            changes.append({"id": entry_id, "address": canonical})
    if changes:
        conn.execute(sa.text("UPDATE suppression_canonical SET address = :address WHERE id = :id"), changes)
    conn.execute(sa.text(
        """
        DELETE FROM suppressions s
        USING (SELECT id, row_number() OVER (PARTITION BY tenant_id, channel, address
                                             ORDER BY created_at, id) AS n
               FROM suppression_canonical) AS d
        WHERE s.id = d.id AND d.n > 1
        """
    ))
    conn.execute(sa.text(
        """
        UPDATE suppressions s SET address = t.address
        FROM suppression_canonical t
        WHERE s.id = t.id AND s.address <> t.address
        """
    ))


def downgrade() -> None:
    op.drop_index('ix_customers_sms_unsubscribed', table_name='customers')
    op.drop_index('ix_customers_email_bounced', table_name='customers')
    op.drop_index('ix_customers_email_unsubscribed', table_name='customers')
