"""Customer endpoints: upsert one, bulk import (JSON or CSV), read, list, unsubscribe.

README "Importing customers" and "Consent and suppression" state the rules."""

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response

from api.deps import CUSTOMER, ConnDep, OwnedCustomer, PrincipalDep, StateDep, get_owned
from api.errors import Problem
from api.schemas.common import ClubIdQuery, PageWindow, TenantIdQuery, paginate
from api.schemas.customer_import import (
    CustomerImport,
    ImportResult,
    check_csv_width,
    load_json,
    parse_csv_import,
    validate_json_import,
)
from api.schemas.customers import (
    CustomerCreate,
    CustomerFields,
    CustomerPublic,
    CustomersPublic,
    CustomerUnsubscribe,
    NoNul,
)
from core.addresses import canonical_email
from core.enums import Channel
from db.customer_import import upsert_customers
from db.customers import CustomerFilter, customer_by_external_id, page_customers, unsubscribe
from db.pages import Slice

router = APIRouter(prefix="/customers", tags=["customers"])


def _inlined(schema: Any, defs: dict[str, Any]) -> Any:
    """A JSON schema with its `$defs` references replaced by the definitions themselves."""
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return _inlined(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: _inlined(v, defs) for k, v in schema.items() if k != "$defs"}
    if isinstance(schema, list):
        return [_inlined(v, defs) for v in schema]
    return schema


_IMPORT_SCHEMA = CustomerImport.model_json_schema(by_alias=True)
# The import body is read by hand (JSON or CSV), so OpenAPI is told what it accepts.
IMPORT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": _inlined(_IMPORT_SCHEMA, _IMPORT_SCHEMA.get("$defs", {}))},
            "text/csv": {
                "schema": {"type": "string"},
                "example": "externalId,email,firstName,clubId,attributes.tier\n"
                "m-1,ann@example.com,Ann,club_1,gold\n",
            },
        },
    },
}


def db_row(customer: CustomerFields) -> dict[str, Any]:
    """Only the fields the caller sent: the others keep their stored values."""
    row = {name: getattr(customer, name) for name in customer.model_fields_set if name != "tenant_id"}
    row["external_id"] = customer.external_id
    return row


@router.post(
    "",
    status_code=201,
    response_model=CustomerPublic,
    response_model_by_alias=True,
    responses={200: {"model": CustomerPublic, "description": "An existing customer was updated"}},
)
async def upsert_customer(
    body: CustomerCreate, principal: PrincipalDep, conn: ConnDep, response: Response
) -> CustomerPublic:
    """Create or update the customer with this `externalId`: 201 when created, 200 when updated."""
    principal.require(body.tenant_id)
    counts = await upsert_customers(conn, body.tenant_id, [db_row(body)])
    if counts.created == 0:
        response.status_code = 200
    row = await customer_by_external_id(conn, body.tenant_id, body.external_id)
    return CustomerPublic.model_validate(row, from_attributes=True)


@router.post("/import", response_model=ImportResult, response_model_by_alias=True, openapi_extra=IMPORT_BODY)
async def import_customers(
    request: Request,
    principal: PrincipalDep,
    state: StateDep,
    tenant_id: Annotated[
        str | None,
        Query(alias="tenantId", min_length=1, max_length=100, description="required for text/csv bodies"),
    ] = None,
) -> ImportResult:
    """Upsert up to 100,000 customers by `externalId`, validated row by row.

    The valid rows are written, all in one transaction (a failure writes none of them); each
    invalid row is reported in `errors` (row, externalId, path, message) and written not at all.
    A body that cannot be read as an import (bad JSON or CSV, no tenantId, a bad CSV header, more
    than 100,000 rows) is a 4xx and writes nothing.
    """
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    raw = await request.body()
    # Parsing and validating up to 100,000 rows takes seconds of CPU: in a worker thread, so the
    # event loop keeps serving everybody else meanwhile (the GIL is handed over every few ms).
    if media_type == "application/json":
        document = await asyncio.to_thread(load_json, raw)
        if isinstance(document, dict) and isinstance(document.get("tenantId"), str):
            principal.require(document["tenantId"])  # 403 before the work of validating rows
        body_tenant, parsed = await asyncio.to_thread(validate_json_import, document)
        if tenant_id is not None and tenant_id != body_tenant:
            raise Problem(
                422,
                "tenantId in the query and the body differ",
                errors=[{"path": "query.tenantId", "message": "differs from $.tenantId"}],
            )
        tenant_id = body_tenant
    elif media_type in ("text/csv", "application/csv"):
        if tenant_id is None:
            raise Problem(
                422,
                "a CSV import needs ?tenantId=",
                errors=[{"path": "query.tenantId", "message": "Field required"}],
            )
        principal.require(tenant_id)
        check_csv_width(raw)  # a hostile header is refused here, without a thread
        parsed = await asyncio.to_thread(parse_csv_import, raw)
    else:
        raise Problem(415, "send application/json or text/csv")
    principal.require(tenant_id)
    rows = [db_row(c) for c in parsed.customers]
    # A connection only for the write: parsing a large body holds none, and the commit is done
    # before the response is sent.
    async with state.engine.begin() as conn:
        counts = await upsert_customers(conn, tenant_id, rows)
    return ImportResult(
        created=counts.created,
        updated=counts.updated,
        total=counts.total,
        rejected=parsed.rejected,
        errors=parsed.errors,
    )


@router.get("", response_model=CustomersPublic, response_model_by_alias=True)
async def list_customers(
    principal: PrincipalDep,
    conn: ConnDep,
    tenant_id: TenantIdQuery,
    window: PageWindow,
    email: Annotated[str | None, Query(max_length=320), NoNul] = None,
    external_id: Annotated[str | None, Query(alias="externalId", max_length=200), NoNul] = None,
    club_id: ClubIdQuery = None,
) -> CustomersPublic:
    """Newest first; `externalId` matches exactly, `email` any spelling of the same address (a
    value that is not an address matches nobody: every stored email is a canonical address)."""
    principal.require(tenant_id)
    if email is not None:
        try:
            email = canonical_email(email)
        except ValueError:
            return paginate(CustomersPublic, Slice(0, []), window)
    where = CustomerFilter(tenant_id, email=email, external_id=external_id, club_id=club_id)
    return paginate(CustomersPublic, await page_customers(conn, where, window), window)


@router.get("/{customer_id}", response_model=CustomerPublic, response_model_by_alias=True)
async def get_customer(customer: OwnedCustomer) -> CustomerPublic:
    return CustomerPublic.model_validate(customer, from_attributes=True)


@router.post("/{customer_id}/unsubscribe", response_model=CustomerPublic, response_model_by_alias=True)
async def unsubscribe_customer(
    customer: OwnedCustomer, body: CustomerUnsubscribe, principal: PrincipalDep, conn: ConnDep
) -> CustomerPublic:
    """Unsubscribe from one channel (`{"channel": "EMAIL"}`) or, with `{}`, from all: no later
    send reaches the customer there, whatever the opt-in flags say (as an unsubscribe link does)."""
    channels = [body.channel] if body.channel is not None else list(Channel)
    await unsubscribe(conn, customer.tenant_id, customer.id, channels)
    changed = await get_owned(CUSTOMER, customer.id, principal.tenants, conn)
    return CustomerPublic.model_validate(changed, from_attributes=True)
