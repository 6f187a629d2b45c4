"""Template endpoints (README "Templates"): create and edit with checks, read, list, preview in the sandbox.

Saving checks what the template may do (providers.rendering.check_template): its syntax, that it
reads only recipient fields, and that it reaches for nothing private. Every change of content is a
new version (db.template_versions); a running send keeps the version its snapshot pinned.

Checks and previews run in the render pool (providers.render_pool), as sends do: compiling a huge
template or rendering a slow one holds a process of the pool for at most the render time limit,
never this event loop, and over the limit it is the caller's 422.
"""

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter
from sqlalchemy.ext.asyncio import AsyncConnection

from api.deps import TEMPLATE, ConnDep, EditedTemplate, OwnedTemplate, PrincipalDep, RenderPoolDep, get_owned
from api.errors import Problem, invalid
from api.schemas.common import ClubIdQuery, PageWindow, TenantIdQuery, paginate
from api.schemas.templates import (
    CHANNEL_FIELDS,
    EmailPreview,
    PreviewRequest,
    SmsPreview,
    TemplateCreate,
    TemplatePublic,
    TemplatesPublic,
    TemplateUpdate,
    content_errors,
    foreign_field_errors,
)
from core.enums import Channel, SkipReason
from db.customers import owned_customer
from db.template_versions import record_first_version, record_new_version, template_content
from db.templates import TemplateFilter, insert_template, page_templates, relabel
from providers.render_pool import EmailSource, RenderPool, RenderProblem
from providers.rendering import recipient_context
from providers.sms_encoding import sms_encoding

router = APIRouter(prefix="/templates", tags=["templates"])

MAX_MESSAGE_CHARS = 300


def _short(err: Exception) -> str:
    message = str(err) or type(err).__name__
    return message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + "…"


async def _check_sources(
    pool: RenderPool, tenant: str, sources: dict[str, str | None]
) -> list[dict[str, str]]:
    """The problems of each template source (syntax, unknown variables, private access, or a
    template too large to compile within the render limits), checked in the render pool."""
    present = {name: (source, name == "html") for name, source in sources.items() if source}
    if not present:
        return []
    problems = await pool.check(tenant, present)
    return [
        {"path": f"$.{name}", "message": f"template error: {_short(problems[name])}"}
        for name in present
        if name in problems
    ]


@router.post("", status_code=201, response_model=TemplatePublic, response_model_by_alias=True)
async def create_template(
    body: TemplateCreate, principal: PrincipalDep, conn: ConnDep, pool: RenderPoolDep
) -> TemplatePublic:
    principal.require(body.tenant_id)
    fields = CHANNEL_FIELDS[body.channel]
    sources = {name: getattr(body, name) for name in fields}
    errors = body.shape_errors() + await _check_sources(pool, body.tenant_id, sources)
    if errors:
        raise Problem(422, f"this is not a valid {body.channel.value} template", errors=errors)
    template_id = await insert_template(
        conn,
        tenant_id=body.tenant_id,
        club_id=body.club_id,
        name=body.name,
        channel=body.channel,
        content=sources,
    )
    await record_first_version(conn, template_id)
    created = await get_owned(TEMPLATE, template_id, [body.tenant_id], conn)
    return TemplatePublic.model_validate(created, from_attributes=True)


@router.patch("/{template_id}", response_model=TemplatePublic, response_model_by_alias=True)
async def update_template(
    template: EditedTemplate,
    body: TemplateUpdate,
    principal: PrincipalDep,
    conn: ConnDep,
    pool: RenderPoolDep,
) -> TemplatePublic:
    """Change the name, club or content; a change of content is version `version + 1`.

    Sends already running keep the version their snapshot pinned; a campaign that has not started
    sending yet (DRAFT, SCHEDULED) will send the new version.
    """
    channel = Channel(template.channel)
    stored = asdict(template)
    sent = body.model_dump(include=body.model_fields_set)
    if "name" in sent and sent["name"] is None:
        raise invalid("$.name", "a template needs a name")
    fields = CHANNEL_FIELDS[channel]
    content = {name: sent.get(name, stored[name]) for name in fields}
    changed = {name: value for name, value in content.items() if value != stored[name]}
    errors = foreign_field_errors(channel, sent) + content_errors(channel, content)
    errors += await _check_sources(pool, template.tenant_id, changed)
    if errors:
        raise Problem(422, f"this is not a valid {channel.value} template", errors=errors)
    if changed:
        await record_new_version(conn, template.id, content)
    labels: dict[str, Any] = {name: sent[name] for name in ("name", "club_id") if name in sent}
    if labels:
        await relabel(conn, template.id, labels)
    edited = await get_owned(TEMPLATE, template.id, principal.tenants, conn)
    return TemplatePublic.model_validate(edited, from_attributes=True)


@router.get("", response_model=TemplatesPublic, response_model_by_alias=True)
async def list_templates(
    principal: PrincipalDep,
    conn: ConnDep,
    tenant_id: TenantIdQuery,
    window: PageWindow,
    club_id: ClubIdQuery = None,
    channel: Channel | None = None,
) -> TemplatesPublic:
    """Newest first, without the content (ask `GET /templates/:id` for it)."""
    principal.require(tenant_id)
    rows = await page_templates(conn, TemplateFilter(tenant_id, club_id=club_id, channel=channel), window)
    return paginate(TemplatesPublic, rows, window)


@router.get("/{template_id}", response_model=TemplatePublic, response_model_by_alias=True)
async def get_template(template: OwnedTemplate) -> TemplatePublic:
    return TemplatePublic.model_validate(template, from_attributes=True)


@router.post("/{template_id}/preview", response_model=EmailPreview | SmsPreview, response_model_by_alias=True)
async def preview_template(
    template: OwnedTemplate, body: PreviewRequest, conn: ConnDep, pool: RenderPoolDep
) -> EmailPreview | SmsPreview:
    """Render the current version for a stored customer of the template's tenant, or for a sample
    recipient: the same content loader and render pool as a send, so a customer's preview is what
    they receive (and what a send would refuse, a preview refuses)."""
    tenant = template.tenant_id
    channel = Channel(template.channel)
    context = recipient_context(await _recipient(conn, tenant, body))
    content = await template_content(conn, tenant, template.id, channel, None)
    assert content is not None  # the template was just read in this transaction
    if channel == Channel.SMS:
        (text,) = await pool.render_sms(tenant, content["body"], [context])
        if isinstance(text, RenderProblem):
            raise _unrenderable(text)
        encoded = sms_encoding(text)
        return SmsPreview(body=text, encoding=encoded.encoding, segments=encoded.segments)
    source = EmailSource(content["subject"], content["html"], content["text"])
    (parts,) = await pool.render_email(tenant, source, [context], locate=True)
    if isinstance(parts, RenderProblem):
        raise _unrenderable(parts)
    return EmailPreview(subject=parts.subject, html=parts.html or "", text=parts.text or "")


async def _recipient(conn: AsyncConnection, tenant_id: str, body: PreviewRequest) -> dict[str, Any]:
    if body.customer_id is not None and body.sample is not None:
        raise invalid("$.sample", "give customerId or sample, not both")
    if body.customer_id is None:
        return body.sample.model_dump() if body.sample else {}
    customer = await owned_customer(conn, [tenant_id], body.customer_id)
    if customer is None:
        raise invalid("$.customerId", "no such customer in the template's tenant")
    return asdict(customer)


def _unrenderable(err: RenderProblem) -> Problem:
    """A template that fails at render time (an unsafe access, 1/0, a render limit, a text longer
    than a message may be) is the caller's 422, at the part that failed when that is known."""
    path = f"template.{err.field}" if err.field else "template"
    if err.reason == SkipReason.TOO_LONG:
        return invalid(path, f"the rendered message is too long: {_short(err)}")
    return invalid(path, f"the template cannot be rendered: {_short(err)}")
