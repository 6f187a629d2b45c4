"""Template endpoints (README "Templates"): create and edit with checks, read, list, preview in the sandbox.

Saving checks what the template may do (providers.rendering.check_template): its syntax, that it
reads only recipient fields, and that it reaches for nothing private. Every change of content is a
new version (db.template_versions); a running send keeps the version its snapshot pinned.

Checks and previews run in the render pool (providers.render_pool), as sends do: compiling a huge
template or rendering a slow one holds a process of the pool for at most the render time limit,
never this event loop, and over the limit it is the caller's 422.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from api.auth import Principal
from api.deps import ConnDep, PrincipalDep, RenderPoolDep
from api.errors import Problem, invalid, not_found
from api.schemas.common import PageMeta
from api.schemas.customers import NoNul
from api.schemas.templates import (
    CHANNEL_FIELDS,
    EmailPreview,
    PreviewRequest,
    SmsPreview,
    TemplateCreate,
    TemplatePublic,
    TemplatesPublic,
    TemplateSummary,
    TemplateUpdate,
    content_errors,
    foreign_field_errors,
)
from core.enums import Channel, SkipReason
from core.ids import new_id
from db.models import Customer, Template
from db.template_versions import record_first_version, record_new_version, template_content
from providers.render_pool import EmailSource, RenderPool, RenderProblem
from providers.rendering import recipient_context
from providers.sms_encoding import sms_encoding

router = APIRouter(prefix="/templates", tags=["templates"])

Skip = Annotated[int, Query(ge=0, le=10_000_000)]
Take = Annotated[int, Query(ge=1, le=1000)]
MAX_MESSAGE_CHARS = 300


async def load_template(
    conn: AsyncConnection, principal: Principal, template_id: str, *, for_update: bool = False
) -> Any:
    """A template of one of the caller's tenants, else 404 exactly as if it did not exist."""
    if "\x00" in template_id:  # no id holds one, and Postgres would refuse to compare it
        raise not_found("template", repr(template_id))
    query = select(Template.__table__).where(
        Template.id == template_id, Template.tenant_id.in_(principal.tenants)
    )
    row = (await conn.execute(query.with_for_update() if for_update else query)).mappings().first()
    if row is None:
        raise not_found("template", template_id)
    return row


def to_summary(row: Any) -> TemplateSummary:
    return TemplateSummary(
        id=row["id"],
        tenant_id=row["tenant_id"],
        club_id=row["club_id"],
        name=row["name"],
        channel=Channel(row["channel"]),
        subject=row["subject"],
        version=row["version"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def to_public(row: Any) -> TemplatePublic:
    sms = sms_encoding(row["body"]) if row["channel"] == Channel.SMS and row["body"] else None
    return TemplatePublic(
        **to_summary(row).model_dump(),
        html=row["html"],
        text=row["text"],
        text_from_html=row["channel"] == Channel.EMAIL and not row["text"] and bool(row["html"]),
        body=row["body"],
        encoding=sms.encoding if sms else None,
        segments=sms.segments if sms else None,
    )


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
    template_id = new_id("template")
    await conn.execute(
        insert(Template).values(
            id=template_id,
            tenant_id=body.tenant_id,
            club_id=body.club_id,
            name=body.name,
            channel=body.channel.value,
            subject=body.subject,
            html=body.html,
            text=body.text,
            body=body.body,
        )
    )
    await record_first_version(conn, template_id)
    return to_public(await load_template(conn, principal, template_id))


@router.patch("/{template_id}", response_model=TemplatePublic, response_model_by_alias=True)
async def update_template(
    template_id: str, body: TemplateUpdate, principal: PrincipalDep, conn: ConnDep, pool: RenderPoolDep
) -> TemplatePublic:
    """Change the name, club or content; a change of content is version `version + 1`.

    Sends already running keep the version their snapshot pinned; a campaign that has not started
    sending yet (DRAFT, SCHEDULED) will send the new version.
    """
    template = await load_template(conn, principal, template_id, for_update=True)
    channel = Channel(template["channel"])
    sent = body.model_dump(include=body.model_fields_set)
    if "name" in sent and sent["name"] is None:
        raise invalid("$.name", "a template needs a name")
    fields = CHANNEL_FIELDS[channel]
    content = {name: sent.get(name, template[name]) for name in fields}
    changed = {name: value for name, value in content.items() if value != template[name]}
    errors = foreign_field_errors(channel, sent) + content_errors(channel, content)
    errors += await _check_sources(pool, template["tenant_id"], changed)
    if errors:
        raise Problem(422, f"this is not a valid {channel.value} template", errors=errors)
    if changed:
        await record_new_version(conn, template_id, content)
    labels = {name: sent[name] for name in ("name", "club_id") if name in sent}
    if labels:
        await conn.execute(
            update(Template).where(Template.id == template_id).values(**labels, updated_at=func.now())
        )
    return to_public(await load_template(conn, principal, template_id))


@router.get("", response_model=TemplatesPublic, response_model_by_alias=True)
async def list_templates(
    principal: PrincipalDep,
    conn: ConnDep,
    tenant_id: Annotated[str, Query(alias="tenantId", min_length=1, max_length=100)],
    club_id: Annotated[str | None, Query(alias="clubId", max_length=100), NoNul] = None,
    channel: Channel | None = None,
    skip: Skip = 0,
    take: Take = 25,
) -> TemplatesPublic:
    """Newest first, without the content (ask `GET /templates/:id` for it)."""
    principal.require(tenant_id)
    conditions = [Template.tenant_id == tenant_id]
    if club_id is not None:
        conditions.append(Template.club_id == club_id)
    if channel is not None:
        conditions.append(Template.channel == channel.value)
    where = and_(*conditions)
    total = int((await conn.execute(select(func.count()).select_from(Template).where(where))).scalar_one())
    rows = (
        (
            await conn.execute(
                select(Template.__table__)
                .where(where)
                .order_by(Template.created_at.desc(), Template.id.desc())
                .offset(skip)
                .limit(take)
            )
        )
        .mappings()
        .all()
    )
    return TemplatesPublic(
        data=[to_summary(r) for r in rows], meta=PageMeta(total=total, skip=skip, take=take)
    )


@router.get("/{template_id}", response_model=TemplatePublic, response_model_by_alias=True)
async def get_template(template_id: str, principal: PrincipalDep, conn: ConnDep) -> TemplatePublic:
    return to_public(await load_template(conn, principal, template_id))


@router.post("/{template_id}/preview", response_model=EmailPreview | SmsPreview, response_model_by_alias=True)
async def preview_template(
    template_id: str, body: PreviewRequest, principal: PrincipalDep, conn: ConnDep, pool: RenderPoolDep
) -> EmailPreview | SmsPreview:
    """Render the current version for a stored customer of the template's tenant, or for a sample
    recipient: the same content loader and render pool as a send, so a customer's preview is what
    they receive (and what a send would refuse, a preview refuses)."""
    template = await load_template(conn, principal, template_id)
    tenant = template["tenant_id"]
    channel = Channel(template["channel"])
    context = recipient_context(await _recipient(conn, tenant, body))
    content = await template_content(conn, tenant, template["id"], channel, None)
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
    row = (
        (
            await conn.execute(
                select(Customer.__table__).where(
                    Customer.id == body.customer_id, Customer.tenant_id == tenant_id
                )
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise invalid("$.customerId", "no such customer in the template's tenant")
    return dict(row)


def _unrenderable(err: RenderProblem) -> Problem:
    """A template that fails at render time (an unsafe access, 1/0, a render limit, a text longer
    than a message may be) is the caller's 422, at the part that failed when that is known."""
    path = f"template.{err.field}" if err.field else "template"
    if err.reason == SkipReason.TOO_LONG:
        return invalid(path, f"the rendered message is too long: {_short(err)}")
    return invalid(path, f"the template cannot be rendered: {_short(err)}")
