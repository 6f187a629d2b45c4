"""RFC 9457 problem+json for every error; nothing else (no stack trace, no SQL) reaches a client."""

import logging
from typing import Any

import psycopg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from api import openapi_docs
from db.engine import is_timeout

log = logging.getLogger("campaigns.api")
# A statement cut by the database's time limits (db.engine): how long a client should wait first.
DATABASE_RETRY_AFTER_SECONDS = 2

PROBLEM = "application/problem+json"
TITLES = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    409: "Conflict",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class Problem(Exception):
    """Raise anywhere in the API to answer with a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = errors
        self.extra = extra


def not_found(kind: str, id_: str) -> Problem:
    """The same answer for an unknown id and for another tenant's: the id is not echoed, so no
    response ever carries an id of another tenant (README "Security")."""
    del id_  # kept in the signature: callers name what they looked for
    return Problem(404, f"{kind} not found")


def invalid(path: str, message: str) -> Problem:
    return Problem(422, message, errors=[{"path": path, "message": message}])


def all_rejected(problems: list[dict[str, Any]]) -> Problem:
    """A batch none of whose items is valid: nothing to record, so the request itself is wrong."""
    errors = [{"path": p["path"], "message": p["message"]} for p in problems[:1000]]
    return Problem(422, "no item of the batch is valid; nothing was recorded", errors=errors)


def problem_response(
    status: int, detail: str, errors: list[dict[str, Any]] | None = None, **extra: Any
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://campaigns.dev/problems/{status}",
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    body.update(extra)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(body, status_code=status, media_type=PROBLEM, headers=headers)


def _json_path(loc: tuple[Any, ...]) -> str:
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        where = parts.pop(0)
        prefix = "$" if where == "body" else f"{where}"
    else:
        prefix = "$"
    path = prefix
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def install(app: FastAPI) -> None:
    """The problem+json handlers, and an OpenAPI document that lists the errors they produce."""
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]

    @app.exception_handler(Problem)
    async def _problem(_: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, exc.errors, **exc.extra)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        if any(e.get("type") == "json_invalid" for e in errors):
            return problem_response(400, "the request body is not valid JSON")
        items = [
            {"path": _json_path(tuple(e.get("loc", ()))), "message": str(e.get("msg", "invalid"))}
            for e in errors
        ]
        return problem_response(422, "the request is not valid", items)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return problem_response(exc.status_code, str(exc.detail))

    @app.exception_handler(SQLAlchemyError)
    @app.exception_handler(psycopg.Error)
    async def _database(request: Request, exc: Exception) -> JSONResponse:
        # A statement or lock timeout (db.engine) means the database is busy, not that the request
        # is wrong: the caller may retry. Any other database error is unexpected.
        if is_timeout(exc):
            where = f"{request.method} {request.url.path}"
            log.warning("database timeout on %s: %s", where, loggable_error(exc))
            response = problem_response(503, "the database is busy; try again shortly")
            response.headers["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
            return response
        return await _unexpected(request, exc)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.error("unhandled error on %s %s: %s", request.method, request.url.path, loggable_error(exc))
        return problem_response(500, "internal error")


def loggable_error(exc: BaseException) -> str:
    """An exception as a log may show it: a database error by its class, SQLSTATE and statement only.

    A database error's text carries the values of the failing request: SQLAlchemy appends the bound
    parameters, and Postgres quotes the offending value in its own message (`invalid input syntax for
    type integer: "..."`, a key `DETAIL`). Those are another tenant's data or a secret in a shared log.
    """
    if isinstance(exc, psycopg.Error):
        return f"{type(exc).__name__} (SQLSTATE {exc.sqlstate or 'unknown'})"
    if isinstance(exc, SQLAlchemyError):
        orig = getattr(exc, "orig", None)
        code = getattr(orig, "sqlstate", None) or "unknown"
        kind = type(orig).__name__ if orig is not None else "no driver error"
        statement = getattr(exc, "statement", None) or "no statement"
        return f"{type(exc).__name__} ({kind}, SQLSTATE {code}) in: {statement}"
    return repr(exc)


# ---- the errors in the OpenAPI document ------------------------------------------------------------
#
# FastAPI documents only the success status and its own 422 shape. Every operation is given here, in
# one place, the problem+json answers it can actually produce, so clients (and the schema fuzzer in
# tests/test_fuzz_api.py) can rely on the document: routes added later are covered without edits.

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "title": "Problem",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "description": "for 422 (and some 400/409): each bad field with its JSON path",
            "items": {
                "type": "object",
                "required": ["path", "message"],
                "properties": {"path": {"type": "string"}, "message": {"type": "string"}},
            },
        },
        "currentStatus": {"type": "string", "description": "409 on a campaign: the status it is in"},
    },
    "additionalProperties": True,
}
DESCRIPTIONS = {
    400: "Malformed request body (not JSON, not UTF-8, unreadable CSV)",
    401: "Missing, expired or invalid credentials",
    403: "The token does not grant the tenant named in the request",
    404: "No such object in the caller's tenants",
    409: "Illegal transition or change in the object's current state",
    413: "Request body too large",
    415: "Unsupported request content type",
    422: "Validation error: `errors` lists each bad field with its JSON path",
    429: "Over the tenant's (or, without a valid token, the client address's) request budget; "
    "try again after `Retry-After` seconds",
    431: "A request header, or all of them together, over the size limit",
    503: "A dependency (the workflow service, or the database over its time limits) is unavailable; "
    "try again (`Retry-After` when known)",
}
BEARER = "bearerAuth"
WEBHOOK_SIGNATURE = "webhookSignature"


def _route_needs(route: APIRoute) -> set[str]:
    """Names of the dependency functions a route runs (directly or through other dependencies)."""
    names: set[str] = set()
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        for sub in dependant.dependencies:
            names.add(getattr(sub.call, "__name__", ""))
            stack.append(sub)
    return names


def _error_statuses(method: str, route: APIRoute, operation: dict[str, Any]) -> list[int]:
    needs = _route_needs(route)
    statuses = [431, 503]  # the edge limits (api.edge) hold for every route
    if route.path != "/health":  # probes are never rate limited
        statuses.append(429)
    if operation.get("requestBody"):
        statuses += [400, 413, 415, 422]
    elif method != "get":
        statuses.append(413)  # the body limit holds whether or not the route reads a body
    if operation.get("parameters"):
        statuses.append(422)
    if "get_principal" in needs or "require_signature" in needs:
        statuses.append(401)
    if "get_principal" in needs:
        statuses.append(403)
        if "{" in route.path:
            statuses.append(404)
        if method != "get":
            statuses.append(409)
    return sorted(set(statuses))


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        openapi_version=app.openapi_version,
        description=app.description,
        routes=app.routes,
    )
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    components["securitySchemes"] = {
        BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
        WEBHOOK_SIGNATURE: {
            "type": "apiKey",
            "in": "header",
            "name": "X-Campaigns-Signature",
            "description": "sha256=<hex HMAC-SHA256 of the raw body with CAMPAIGNS_WEBHOOK_SECRET>",
        },
    }
    routes = {
        (route.path, method.lower()): route for route in api_routes(app) for method in route.methods or ()
    }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            route = routes.get((path, method))
            if route is None:
                continue
            needs = _route_needs(route)
            if "get_principal" in needs:
                operation["security"] = [{BEARER: []}]
            elif "require_signature" in needs:
                operation["security"] = [{WEBHOOK_SIGNATURE: []}]
            responses = operation.setdefault("responses", {})
            for status in _error_statuses(method, route, operation):
                responses[str(status)] = {
                    "description": DESCRIPTIONS[status],
                    "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/Problem"}}},
                }
    for unused in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(unused, None)
    openapi_docs.document(schema)  # description, tags, operation titles and examples
    app.openapi_schema = schema
    return schema


def api_routes(app: FastAPI) -> list[APIRoute]:
    """Every APIRoute of the app, also those of included routers (nested in this FastAPI)."""
    found: list[APIRoute] = []
    stack: list[Any] = list(app.routes)
    while stack:
        route = stack.pop()
        if isinstance(route, APIRoute):
            found.append(route)
        inner = getattr(route, "original_router", None) or getattr(route, "app", None)
        if inner is not None and hasattr(inner, "routes") and inner is not app.router:
            stack.extend(inner.routes)
    return found
