"""Template endpoints (contract §7): create and edit with checks, read, list, preview in the sandbox.

Saving checks what the template may do (providers.rendering.check_template): its syntax, that it
reads only recipient fields, and that it reaches for nothing private. Every change of content is a
new version (db.template_versions); a running send keeps the version its snapshot pinned.
"""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import and_, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.concurrency import run_in_threadpool

from api.auth import Principal
from api.deps import ConnDep, PrincipalDep
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
from core.enums import Channel
from core.ids import new_id
from db.models import Customer, Template
from db.template_versions import record_first_version, record_new_version, template_content
from providers.email_content import render_parts
from providers.rendering import TemplateSyntaxProblem, check_template, recipient_context, render
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


async def _check_sources(sources: dict[str, str | None]) -> list[dict[str, str]]:
    """The problems of each template source (syntax, unknown variables, private access)."""
    errors: list[dict[str, str]] = []
    for name, source in sources.items():
        if not source:
            continue
        try:
            # Compiling a large template takes a while: off the event loop, other requests go on.
            await run_in_threadpool(check_template, source, html=name == "html")
        except TemplateSyntaxProblem as err:
            errors.append({"path": f"$.{name}", "message": f"template error: {_short(err)}"})
    return errors


@router.post("", status_code=201, response_model=TemplatePublic, response_model_by_alias=True)
async def create_template(body: TemplateCreate, principal: PrincipalDep, conn: ConnDep) -> TemplatePublic:
    principal.require(body.tenant_id)
    fields = CHANNEL_FIELDS[body.channel]
    errors = body.shape_errors() + await _check_sources({name: getattr(body, name) for name in fields})
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
    template_id: str, body: TemplateUpdate, principal: PrincipalDep, conn: ConnDep
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
    errors += await _check_sources(changed)
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
    template_id: str, body: PreviewRequest, principal: PrincipalDep, conn: ConnDep
) -> EmailPreview | SmsPreview:
    """Render the current version for a stored customer of the template's tenant, or for a sample
    recipient: the same content loader and renderer as a send, so a customer's preview is what
    they receive."""
    template = await load_template(conn, principal, template_id)
    channel = Channel(template["channel"])
    context = recipient_context(await _recipient(conn, template["tenant_id"], body))
    content = await template_content(conn, template["tenant_id"], template["id"], channel, None)
    assert content is not None  # the template was just read in this transaction
    if channel == Channel.SMS:
        try:
            text = render(content["body"], context)
        except TemplateSyntaxProblem as err:
            raise _unrenderable("body", err) from None
        encoded = sms_encoding(text)
        return SmsPreview(body=text, encoding=encoded.encoding, segments=encoded.segments)
    try:
        parts = render_parts(content["subject"], content["html"], content["text"], context)
    except TemplateSyntaxProblem as err:
        raise _unrenderable(_failing_part(content, context), err) from None
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


def _unrenderable(field: str, err: TemplateSyntaxProblem) -> Problem:
    """A template that fails at render time (an unsafe access, 1/0, ...) is the caller's 422."""
    return invalid(f"template.{field}", f"the template cannot be rendered: {_short(err)}")


def _failing_part(content: Any, context: dict[str, Any]) -> str:
    """Which part of an email fails to render (asked only once rendering the email failed)."""
    for name, html in (("subject", False), ("html", True), ("text", False)):
        try:
            render(content[name], context, html=html)
        except TemplateSyntaxProblem:
            return name
    return "html"
