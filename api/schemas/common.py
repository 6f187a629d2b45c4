"""Base models of the API edge: camelCase JSON, unknown fields rejected, UTC `Z` times, and the
validators that keep every value a request carries storable and comparable by Postgres.

Postgres refuses some values that JSON and Python accept: the NUL character and unpaired surrogates
in text and jsonb, NaN and Infinity in jsonb, and instants whose conversion to UTC overflows
Python's calendar. Each is a 422 at the edge (with the JSON path of the value), never a 500 deeper
down. JSON documents that are stored and shown again (customer attributes, event data) are also
bounded in nesting depth, node count and key length, so that storing one is cheap and every page
that shows one can serialise it.
"""

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Depends, Query
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    TypeAdapter,
    ValidationError,
)
from pydantic.alias_generators import to_camel

from db.pages import Slice, Window


def utc_z(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


UtcDatetime = Annotated[datetime, PlainSerializer(utc_z, return_type=str, when_used="json")]


# ---- text ---------------------------------------------------------------------------------------

NUL_MESSAGE = "must not contain the NUL character (\\u0000)"
SURROGATE_MESSAGE = "must not contain an unpaired surrogate (like \\ud800): it is not valid Unicode"


def text_problem(value: str) -> str | None:
    """Why Postgres cannot store `value` as text, or None if it can.

    An unpaired surrogate (JSON's `"\\ud800"` decodes to one) has no UTF-8 form, so the driver
    fails to send it; checking ASCII first keeps the common case to one fast scan.
    """
    if "\x00" in value:
        return NUL_MESSAGE
    if value.isascii():
        return None
    try:
        value.encode()
    except UnicodeEncodeError:
        return SURROGATE_MESSAGE
    return None


def storable_text(value: str) -> str:
    problem = text_problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


# Every free-text field of a request is a SafeStr (or carries NoNul): a NUL or an unpaired surrogate
# is a 422 here, not a 500 where Postgres or the driver meets it. (The name predates the surrogate
# check; both make a string unstorable.)
NoNul = AfterValidator(storable_text)
SafeStr = Annotated[str, NoNul]

# A float that JSON or Python can hold but jsonb and numeric comparisons cannot: NaN, ±Infinity
# (`1e999` parses as Infinity).
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]


# ---- instants -----------------------------------------------------------------------------------

# Every instant a request gives is stored or compared in Postgres and shown again as UTC. Far-off
# years are typos or probes: bounding them keeps every conversion (to UTC, to a campaign's zone,
# plus a conversion window) inside Python's calendar, which ends at year 9999.
MIN_YEAR = 1970
MAX_YEAR = 9000
RANGE_MESSAGE = f"must be between {MIN_YEAR}-01-01 and {MAX_YEAR}-12-31 (UTC)"


def sane_instant(value: datetime) -> datetime:
    """`value` unchanged if it lies within the supported years once in UTC, else a ValueError.

    A time without an offset is judged as written (each caller then reads it in its own zone, at
    most a day away); one with an offset is converted first, which itself overflows for year 1
    with a positive offset or year 9999 with a negative one.
    """
    try:
        utc = value if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:
        raise ValueError(RANGE_MESSAGE) from None
    if not MIN_YEAR <= utc.year <= MAX_YEAR:
        raise ValueError(RANGE_MESSAGE)
    return value


SaneDatetime = Annotated[datetime, AfterValidator(sane_instant)]


# ---- JSON documents -----------------------------------------------------------------------------


@dataclass(frozen=True)
class JsonLimits:
    """Bounds of a stored JSON document. `depth` counts nested objects and arrays, the document
    itself being 1; `nodes` counts every value (objects, arrays, scalars, the document too)."""

    depth: int
    nodes: int
    key_chars: int


@dataclass(frozen=True)
class JsonScan:
    """The first problem of a JSON document as (relative path, message), or None; and a count of
    characters that bounds its serialised size (each character takes at most 6 bytes: `\\u001f`),
    so most documents never need serialising to be measured."""

    problem: tuple[str, str] | None
    chars: int


# (value, its depth: the document is 1, the path of its parent, its key or index there). A value's
# own path is only built when it is a container or has a problem: most are leaves.
_Frame = tuple[Any, int, str, str | int | None]
_Found = tuple[tuple[str, str] | None, int]  # (path, message) of a problem or None; characters


def scan_json(document: Any, limits: JsonLimits | None = None) -> JsonScan:
    """Check a decoded JSON document for what Postgres cannot store (NUL, unpaired surrogates,
    NaN/Infinity) and, with `limits`, for excessive nesting, size or key length.

    Iterative, so a document nested thousands of levels deep is refused without recursion.
    Paths are relative (`.a[2].b`), built only along the way to a problem.
    """
    chars = 0
    nodes = 0
    stack: list[_Frame] = [(document, 1, "", None)]
    while stack:
        value, depth, parent, key = stack.pop()
        nodes += 1
        if limits is not None and nodes > limits.nodes:
            return JsonScan(("", f"has more than {limits.nodes} values in all"), chars)
        if isinstance(value, dict | list):
            problem, size = _open_container(value, depth, _path(parent, key), limits, stack)
        else:
            message, size = _scalar(value)
            problem = None if message is None else (_path(parent, key), message)
        chars += size
        if problem is not None:
            return JsonScan(problem, chars)
    return JsonScan(None, chars)


def _scalar(value: Any) -> tuple[str | None, int]:
    """Why a string, number or literal cannot be stored (or None), and its size in characters."""
    if isinstance(value, str):
        problem = text_problem(value)
        return problem, 0 if problem is not None else len(value) + 3
    if isinstance(value, float):
        if not math.isfinite(value):
            return "must be a finite number (not NaN or Infinity)", 0
        return None, 32
    if isinstance(value, int) and not isinstance(value, bool):
        return None, value.bit_length() // 3 + 3
    return None, 6  # true, false, null


def _open_container(
    value: dict[Any, Any] | list[Any], depth: int, path: str, limits: JsonLimits | None, stack: list[_Frame]
) -> _Found:
    """Check an object or array itself and push its members, to be popped in document order."""
    if limits is not None and depth > limits.depth:
        return (path, f"nests deeper than {limits.depth} levels"), 0
    if isinstance(value, list):
        stack.extend((value[i], depth + 1, path, i) for i in range(len(value) - 1, -1, -1))
        return None, 2 + len(value)
    size = 2
    children: list[_Frame] = []
    for name, item in value.items():
        name = str(name)
        problem = text_problem(name)
        if problem is None and limits is not None and len(name) > limits.key_chars:
            problem = f"has a key longer than {limits.key_chars} characters"
        if problem is not None:
            return (f"{path}.{name[:50]}", problem), size
        size += len(name) + 4
        children.append((item, depth + 1, path, name))
    stack.extend(reversed(children))
    return None, size


def _path(parent: str, key: str | int | None) -> str:
    if key is None:
        return parent
    return f"{parent}[{key}]" if isinstance(key, int) else f"{parent}.{key}"


def storable_json(limits: JsonLimits) -> AfterValidator:
    """A validator refusing a JSON document that `scan_json` finds a problem in."""

    def check(value: Any) -> Any:
        problem = scan_json(value, limits).problem
        if problem is not None:
            where, message = problem
            raise ValueError(f"{where.lstrip('.') or 'the value'}: {message}")
        return value

    return AfterValidator(check)


def within_limits(document: Any, limits: JsonLimits, placeholder: Any = None) -> Any:
    """`document` unchanged when it is within `limits` (the usual case, checked first); else a copy
    with every part nested deeper than `limits.depth` replaced by `placeholder`.

    For the output side: rows stored before the limits existed must still be shown, and a response
    serialiser gives up on deep nesting (pydantic at about 255 levels) with a 500.
    """
    if scan_json(document, JsonLimits(limits.depth, 10**9, 10**9)).problem is None:
        return document

    def cut(value: Any, depth: int) -> Any:
        if not isinstance(value, dict | list):
            return value
        if depth > limits.depth:
            return placeholder
        if isinstance(value, dict):
            return {k: cut(v, depth + 1) for k, v in value.items()}
        return [cut(v, depth + 1) for v in value]

    return cut(document, 1)


# ---- batches ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rejected:
    """An item of a batch that is not valid: its problems, with paths inside the item (`.id`)."""

    errors: list[tuple[str, str]]


M = TypeVar("M", bound=BaseModel)


def each_on_its_own(model: type[M]) -> PlainValidator:
    """A batch item validated on its own: a bad one becomes a `Rejected` instead of failing the
    whole request, so the good items of the batch are still recorded (a sender that got a 4xx for
    the batch would resend all of it, and the bad item with it, forever). The OpenAPI document still
    shows the item as `model`."""
    adapter = TypeAdapter(model)

    def validate(value: Any) -> M | Rejected:
        try:
            return adapter.validate_python(value)
        except ValidationError as err:
            errors = []
            for e in err.errors():
                path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e["loc"])
                errors.append((path, e["msg"]))
            return Rejected(errors)

    return PlainValidator(validate, json_schema_input_type=model)


@dataclass(frozen=True)
class Sorted(Generic[M]):
    """A batch split into its valid items and the problems of the others (`$.events[3].id`)."""

    valid: list[M]
    problems: list[dict[str, Any]]


def sort_batch(items: list[M | Rejected], field: str) -> Sorted[M]:
    valid: list[M] = []
    problems: list[dict[str, Any]] = []
    for index, item in enumerate(items):
        if isinstance(item, Rejected):
            problems.extend(
                {"index": index, "path": f"$.{field}[{index}]{where}", "message": message}
                for where, message in item.errors
            )
        else:
            valid.append(item)
    return Sorted(valid, problems)


class BatchItemProblem(BaseModel):
    """One problem of a rejected batch item: which item (0-based), where in it, and what."""

    index: int
    path: str
    message: str


# ---- models -------------------------------------------------------------------------------------


class ApiIn(BaseModel):
    """Request bodies: camelCase, and a typo is a 422 instead of silently doing nothing."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")


class ApiOut(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class PageMeta(ApiOut):
    total: int
    skip: int
    take: int


T = TypeVar("T")


class Page(ApiOut, Generic[T]):
    data: list[T]
    meta: PageMeta


P = TypeVar("P", bound=Page[Any])


def paginate(page: type[P], rows: Slice[Any], window: Window) -> P:
    """The response of a list endpoint: each row read into the page's item model by attribute."""
    meta = PageMeta(total=rows.total, skip=window.skip, take=window.take)
    return page.model_validate({"data": rows.rows, "meta": meta}, from_attributes=True)


# ---- query parameters ---------------------------------------------------------------------------
#
# The parameters every list endpoint shares. A NUL character in any query value is refused for all
# routes at once (api.deps.storable_query); NoNul on a text parameter says so in its validation too.

Skip = Annotated[int, Query(ge=0, le=10_000_000)]
Take = Annotated[int, Query(ge=1, le=1000)]
TenantIdQuery = Annotated[str, Query(alias="tenantId", min_length=1, max_length=100), NoNul]
ClubIdQuery = Annotated[str | None, Query(alias="clubId", max_length=100), NoNul]


def page_window(skip: Skip = 0, take: Take = 25) -> Window:
    return Window(skip=skip, take=take)


PageWindow = Annotated[Window, Depends(page_window)]
