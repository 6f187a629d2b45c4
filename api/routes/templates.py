"""Template endpoints (contract §7): create with a syntax check, read, list, preview in the sandbox."""

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy import and_, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.concurrency import run_in_threadpool

from api.auth import Principal
from api.deps import ConnDep, PrincipalDep
from api.errors import Problem, invalid, not_found
from api.schemas.common import PageMeta
from api.schemas.customers import NoNul
from api.schemas.templates import (
    EmailPreview,
    PreviewRequest,
    SmsPreview,
    TemplateCreate,
    TemplatePublic,
    TemplatesPublic,
    TemplateSummary,
)
from core.enums import Channel
from core.ids import new_id
from db.models import Customer, Template
from providers.rendering import TemplateSyntaxProblem, check_syntax, recipient_context, render

router = APIRouter(prefix="/templates", tags=["templates"])

Skip = Annotated[int, Query(ge=0, le=10_000_000)]
Take = Annotated[int, Query(ge=1, le=1000)]
MAX_MESSAGE_CHARS = 300


async def load_template(conn: AsyncConnection, principal: Principal, template_id: str) -> Any:
    """A template of one of the caller's tenants, else 404 exactly as if it did not exist."""
    if "\x00" in template_id:  # no id holds one, and Postgres would refuse to compare it
        raise not_found("template", repr(template_id))
    row = (
        (
            await conn.execute(
                select(Template.__table__).where(
                    Template.id == template_id, Template.tenant_id.in_(principal.tenants)
                )
            )
        )
        .mappings()
        .first()
    )
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
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def to_public(row: Any) -> TemplatePublic:
    return TemplatePublic(
        **to_summary(row).model_dump(), html=row["html"], text=row["text"], body=row["body"]
    )


def _short(err: Exception) -> str:
    message = str(err) or type(err).__name__
    return message if len(message) <= MAX_MESSAGE_CHARS else message[:MAX_MESSAGE_CHARS] + "…"


@router.post("", status_code=201, response_model=TemplatePublic, response_model_by_alias=True)
async def create_template(body: TemplateCreate, principal: PrincipalDep, conn: ConnDep) -> TemplatePublic:
    principal.require(body.tenant_id)
    errors = body.shape_errors()
    for name, source in body.sources().items():
        try:
            # Compiling a large template takes a while: off the event loop, other requests go on.
            await run_in_threadpool(check_syntax, source, html=name == "html")
        except TemplateSyntaxProblem as err:
            errors.append({"path": f"$.{name}", "message": f"template syntax error: {_short(err)}"})
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
    """Render for a stored customer of the template's tenant, or for a sample recipient."""
    template = await load_template(conn, principal, template_id)
    context = recipient_context(await _recipient(conn, template["tenant_id"], body))
    if template["channel"] == Channel.SMS:
        return SmsPreview(body=_render(template, "body", context))
    return EmailPreview(
        subject=_render(template, "subject", context),
        html=_render(template, "html", context),
        text=_render(template, "text", context),
    )


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


def _render(template: Any, field: str, context: dict[str, Any]) -> str:
    """A template that fails at render time (an unsafe access, 1/0, ...) is the caller's 422."""
    try:
        return render(template[field], context, html=field == "html")
    except Exception as err:  # the template is user code: whatever it raises is its own error
        raise invalid(f"template.{field}", f"the template cannot be rendered: {_short(err)}") from None
