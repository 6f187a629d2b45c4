"""Template versions: every edit of a template's content is a new version, and a send run pins
the versions it sends when its snapshot starts (README "Templates"; the pins are written and read
by db.ledger.runs), so editing a template used by a SCHEDULED or ACTIVE campaign never changes what
a running send uses.

`templates` holds the current content and `version`; `template_versions` holds the content of
every version, the current one included. A run without pins (one started before versions
existed), and a template without version rows (written straight to the table), read the
current content.
"""

from typing import Any

from sqlalchemy import text
from sqlalchemy.engine import RowMapping
from sqlalchemy.ext.asyncio import AsyncConnection

from core.enums import Channel

CONTENT_FIELDS = ("subject", "html", "text", "body")

# The text template of an EMAIL template without `text`: its html between these two markers, i.e.
# the html rendered escaped as html and then turned into plain text by the `html_to_text` filter
# the renderer installs. providers.rendering holds the same two strings (the renderer is above
# this layer, so it is not imported here); tests/test_architecture.py fails if they differ.
DERIVED_TEXT_OPEN = "{% filter html_to_text %}{% autoescape true %}"
DERIVED_TEXT_CLOSE = "{% endautoescape %}{% endfilter %}"

# The content of one version (NULL: the current one) as it is rendered: `text` is the text
# template, derived from `html` when the template has none (DERIVED_TEXT_OPEN above).
_CONTENT = text(
    """
    SELECT version, subject, html, body, stored_text,
           COALESCE(NULLIF(stored_text, ''),
                    CASE WHEN NULLIF(html, '') IS NOT NULL THEN :open || html || :close END) AS text
    FROM (
        SELECT COALESCE(v.version, t.version) AS version,
               CASE WHEN v.version IS NULL THEN t.subject ELSE v.subject END AS subject,
               CASE WHEN v.version IS NULL THEN t.html ELSE v.html END AS html,
               CASE WHEN v.version IS NULL THEN t.text ELSE v.text END AS stored_text,
               CASE WHEN v.version IS NULL THEN t.body ELSE v.body END AS body
        FROM templates t
        LEFT JOIN template_versions v ON v.template_id = t.id AND v.version = CAST(:version AS integer)
        WHERE t.id = :id AND t.tenant_id = :tenant AND t.channel = :channel
    ) AS content
    """
)
_KEEP_CURRENT = text(
    """
    INSERT INTO template_versions (template_id, version, subject, html, text, body)
    SELECT id, version, subject, html, text, body FROM templates WHERE id = :id
    ON CONFLICT DO NOTHING
    """
)
_NEW_VERSION = text(
    """
    WITH t AS (
        UPDATE templates SET version = version + 1, subject = :subject, html = :html, text = :text,
                             body = :body, updated_at = now()
        WHERE id = :id RETURNING id, version, subject, html, text, body
    )
    INSERT INTO template_versions (template_id, version, subject, html, text, body)
    SELECT id, version, subject, html, text, body FROM t
    RETURNING version
    """
)
_FIRST_VERSION = text(
    "INSERT INTO template_versions (template_id, version, subject, html, text, body)"
    " SELECT id, version, subject, html, text, body FROM templates WHERE id = :id"
)


async def template_content(
    conn: AsyncConnection, tenant_id: str, template_id: str, channel: Channel, version: int | None
) -> RowMapping | None:
    """`version`, `subject`, `html`, `text` (the text template, maybe derived), `stored_text`,
    `body` of a template of the tenant and channel; None when there is no such template."""
    params = {
        "id": template_id,
        "tenant": tenant_id,
        "channel": channel.value,
        "version": version,
        "open": DERIVED_TEXT_OPEN,
        "close": DERIVED_TEXT_CLOSE,
    }
    return (await conn.execute(_CONTENT, params)).mappings().first()


async def record_first_version(conn: AsyncConnection, template_id: str) -> None:
    """Version 1 of a template just inserted."""
    await conn.execute(_FIRST_VERSION, {"id": template_id})


async def record_new_version(conn: AsyncConnection, template_id: str, content: dict[str, Any]) -> int:
    """Write new content as the next version (the row must be locked by the caller)."""
    await conn.execute(_KEEP_CURRENT, {"id": template_id})
    params = {"id": template_id, **{f: content.get(f) for f in CONTENT_FIELDS}}
    return int((await conn.execute(_NEW_VERSION, params)).scalar_one())
