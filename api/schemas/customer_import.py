"""Customer imports (README "Importing customers"): the JSON and CSV formats, read and validated
row by row into `CustomerFields`, with a report of the rows that are not valid.

A body that cannot be read as an import at all (bad JSON or CSV, no tenantId, a bad CSV header,
too many rows or cells) is a 4xx and writes nothing; a bad row is reported and skipped.
"""

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, NoReturn

from pydantic import Field, ValidationError

from api.errors import Problem
from api.schemas.common import ApiIn, ApiOut
from api.schemas.customers import ATTRIBUTE_LIMITS, CustomerFields, TenantId

MAX_IMPORT_ROWS = 100_000
MAX_LISTED_ERRORS = 1000
MAX_ATTRIBUTES_BYTES = 64 * 1024
# A CSV header wider than any real export is refused before a row is read: the cost of reading a
# file grows with rows x columns, and every column is a key of the rows' attributes.
MAX_CSV_COLUMNS = 1000
# And rows x columns is bounded too: 100,000 rows of 50 columns, or fewer rows of more.
MAX_CSV_CELLS = 5_000_000


class CustomerImport(ApiIn):
    """The JSON import as documented; rows are validated one by one (see `validate_json_import`)."""

    tenant_id: TenantId
    customers: Annotated[list[CustomerFields], Field(max_length=MAX_IMPORT_ROWS)]


class _ImportEnvelope(ApiIn):
    tenant_id: TenantId
    customers: Annotated[list[Any], Field(max_length=MAX_IMPORT_ROWS)]


class ImportRowError(ApiOut):
    row: int = Field(description="1-based: the N-th customer of the JSON list, or of the CSV records")
    external_id: str | None
    path: str
    message: str


class ImportResult(ApiOut):
    """Valid rows are written (all in one transaction), invalid ones are reported and skipped."""

    created: int
    updated: int
    total: int = Field(description="rows written: created + updated")
    rejected: int = Field(description="rows not written because they are invalid")
    errors: list[ImportRowError] = Field(
        description=f"one per problem of the rejected rows, in file order; at most {MAX_LISTED_ERRORS}"
    )


# ---- the import formats -------------------------------------------------------------------------
#
# Both formats end as validated `CustomerFields` plus a report of the rows that are not: JSON paths
# (`$.customers[12].phone`) for JSON, and `row 13.phone` for CSV, where row N is the N-th record
# after the header (blank lines are skipped and not counted). What makes the whole request
# unreadable (bad JSON or CSV, no tenantId, a bad header, too many rows) is a 4xx and writes nothing.

_ROW = CustomerFields.model_validate
FIELD_COLUMNS = {
    field.alias or name for name, field in CustomerFields.model_fields.items() if name != "attributes"
}
TEXT_COLUMNS = FIELD_COLUMNS - {"emailOptIn", "smsOptIn"}
ATTRIBUTE_PREFIX = "attributes."
# (0-based position of a row in the file, location inside the row) -> the path shown in a report
RowPath = Callable[[int, tuple[int | str, ...]], str]


@dataclass
class ParsedImport:
    """The valid rows, and one error per problem of the rejected ones (in file order)."""

    customers: list[CustomerFields]
    rejected: int
    errors: list[ImportRowError]


def _json_path(loc: tuple[int | str, ...]) -> str:
    path = "$"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _json_row_path(position: int, loc: tuple[int | str, ...]) -> str:
    return _json_path(("customers", position, *loc))


def _csv_row_path(position: int, loc: tuple[int | str, ...]) -> str:
    path = f"row {position + 1}"
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _reject(errors: list[dict[str, str]]) -> Problem:
    shown = errors[:MAX_LISTED_ERRORS]
    more = f" (the first {len(shown)} are listed)" if len(errors) > len(shown) else ""
    return Problem(422, f"{len(errors)} invalid field(s); nothing was imported{more}", errors=shown)


def _external_id(record: Any) -> str | None:
    value = record.get("externalId") if isinstance(record, dict) else None
    return value if isinstance(value, str) else None


def _validate_rows(
    records: list[Any], positions: list[int], path: RowPath, problems: list[tuple[int, str, str]]
) -> ParsedImport:
    """Validate `records` (found at `positions` in the file) one by one.

    `problems` are rows already rejected while reading, as (position, path, message). A repeated
    externalId keeps its first valid row and rejects the others. (One call per row costs no more
    than one call for the whole list, and a bad row then costs nothing more.)
    """
    problems = list(problems)
    customers: list[CustomerFields] = []
    first: dict[str, int] = {}
    raw_ids: dict[int, str | None] = {}
    for position, record in zip(positions, records, strict=True):
        try:
            customer = _ROW(record)
        except ValidationError as err:
            raw_ids[position] = _external_id(record)
            problems.extend((position, path(position, tuple(e["loc"])), e["msg"]) for e in err.errors())
            continue
        seen = first.setdefault(customer.external_id, position)
        if seen == position:
            customers.append(customer)
            continue
        raw_ids[position] = customer.external_id
        message = f"externalId repeats {path(seen, ())}; each customer may appear once (the first is kept)"
        problems.append((position, path(position, ("externalId",)), message))
    problems.sort(key=lambda p: p[0])
    errors = [
        ImportRowError(row=position + 1, external_id=raw_ids.get(position), path=where, message=message)
        for position, where, message in problems[:MAX_LISTED_ERRORS]
    ]
    return ParsedImport(customers, len({p[0] for p in problems}), errors)


def load_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, an over-long integer, deep nesting
        raise Problem(400, "the request body is not valid JSON") from None


def validate_json_import(document: Any) -> tuple[str, ParsedImport]:
    """The tenant and the rows of a JSON import; a body that is not an import at all is a 422."""
    try:
        body = _ImportEnvelope.model_validate(document)
    except ValidationError as err:
        errors = [{"path": _json_path(tuple(e["loc"])), "message": e["msg"]} for e in err.errors()]
        raise _reject(errors) from None
    positions = list(range(len(body.customers)))
    return body.tenant_id, _validate_rows(body.customers, positions, _json_row_path, [])


def check_csv_width(raw: bytes) -> None:
    """Refuse a header wider than MAX_CSV_COLUMNS from its raw first line, in C-speed byte scans
    and before any decoding or parsing: the answer to a hostile header costs next to nothing. A
    header with quotes (which may hide commas or newlines) is left to the exact check of the parse.
    """
    end = raw.find(b"\n")
    line = raw if end < 0 else raw[:end]
    if b'"' not in line and line.count(b",") >= MAX_CSV_COLUMNS:
        _too_wide(line.count(b",") + 1)


def _too_wide(columns: int) -> NoReturn:
    message = f"the header has {columns} columns; at most {MAX_CSV_COLUMNS} are allowed"
    raise Problem(422, message, errors=[{"path": "header", "message": message}])


def parse_csv_import(raw: bytes) -> ParsedImport:
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise Problem(400, "the CSV body is not UTF-8") from None
    try:
        records, positions, problems = _csv_records(content)
    except csv.Error as err:
        raise Problem(400, f"the CSV body cannot be read: {err}") from None
    return _validate_rows(records, positions, _csv_row_path, problems)


def _csv_records(content: str) -> tuple[list[dict[str, Any]], list[int], list[tuple[int, str, str]]]:
    """The records in the JSON shape with their positions, and the rows of the wrong width.

    The header is judged first (width, names); the rows are then read as long as the file stays
    within MAX_IMPORT_ROWS rows and MAX_CSV_CELLS cells.
    """
    reader = csv.reader(io.StringIO(content, newline=""))
    header = next(reader, None)
    if not header:
        raise Problem(422, "the CSV has no header row", errors=[{"path": "header", "message": "missing"}])
    if len(header) > MAX_CSV_COLUMNS:
        _too_wide(len(header))
    columns = [name.strip() for name in header]
    _check_header(columns)
    plan = _CsvPlan.of(columns)
    max_rows = min(MAX_IMPORT_ROWS, MAX_CSV_CELLS // len(columns))
    records: list[dict[str, Any]] = []
    positions: list[int] = []
    problems: list[tuple[int, str, str]] = []
    position = 0
    for cells in reader:
        if not cells or (len(cells) == 1 and not cells[0].strip()):
            continue
        if position >= max_rows:
            raise _too_many_rows(max_rows, len(columns))
        if len(cells) != len(columns):
            message = f"has {len(cells)} fields; the header has {len(columns)}"
            problems.append((position, _csv_row_path(position, ()), message))
        else:
            records.append(plan.record(cells))
            positions.append(position)
        position += 1
    return records, positions, problems


def _too_many_rows(max_rows: int, width: int) -> Problem:
    if max_rows == MAX_IMPORT_ROWS:
        errors = [{"path": "rows", "message": f"more than {MAX_IMPORT_ROWS} rows"}]
        return Problem(422, f"at most {MAX_IMPORT_ROWS} rows per import", errors=errors)
    message = f"more than {max_rows} rows of {width} columns (at most {MAX_CSV_CELLS} cells per import)"
    return Problem(422, message, errors=[{"path": "rows", "message": message}])


def _check_header(columns: list[str]) -> None:
    """Every column known and named once; one pass with a set, so a wide header costs linear time."""
    errors: list[dict[str, str]] = []
    first: dict[str, int] = {}
    for i, name in enumerate(columns):
        known = name in FIELD_COLUMNS or (
            name.startswith(ATTRIBUTE_PREFIX) and len(name) > len(ATTRIBUTE_PREFIX)
        )
        if not known:
            message = f"unknown column {name[:100]!r}; use {sorted(FIELD_COLUMNS)} or attributes.<key>"
            errors.append({"path": f"header[{i}]", "message": message})
        elif len(name) > len(ATTRIBUTE_PREFIX) + ATTRIBUTE_LIMITS.key_chars:
            message = f"an attribute name may have at most {ATTRIBUTE_LIMITS.key_chars} characters"
            errors.append({"path": f"header[{i}]", "message": message})
        elif first.setdefault(name, i) != i:
            message = f"column {name!r} repeats header[{first[name]}]"
            errors.append({"path": f"header[{i}]", "message": message})
    if "externalId" not in columns:
        errors.append({"path": "header", "message": "the column 'externalId' is required"})
    if errors:
        raise _reject(errors)


@dataclass(frozen=True)
class _CsvPlan:
    """Where each kind of column sits, worked out once per file so that turning a row into a
    record is a few comprehensions (a file may have 100,000 rows of many columns)."""

    text: list[tuple[int, str]]
    flags: list[tuple[int, str]]
    attributes: list[tuple[int, str]] | None

    @classmethod
    def of(cls, columns: list[str]) -> "_CsvPlan":
        attributes = [
            (i, name.removeprefix(ATTRIBUTE_PREFIX))
            for i, name in enumerate(columns)
            if name.startswith(ATTRIBUTE_PREFIX)
        ]
        return cls(
            text=[(i, name) for i, name in enumerate(columns) if name in TEXT_COLUMNS],
            flags=[(i, name) for i, name in enumerate(columns) if name in FIELD_COLUMNS - TEXT_COLUMNS],
            attributes=attributes or None,
        )

    def record(self, cells: list[str]) -> dict[str, Any]:
        """A CSV record in the JSON shape: an empty cell clears a text field, leaves an opt-in
        as it is, and omits an attribute; when the header has attribute columns, the record's
        non-empty ones replace the customer's attributes."""
        record: dict[str, Any] = {}
        for i, name in self.text:
            value = cells[i].strip()
            record[name] = value if value or name == "externalId" else None
        for i, name in self.flags:
            value = cells[i].strip()
            if value:
                record[name] = value
        if self.attributes is not None:
            record["attributes"] = {key: v for i, key in self.attributes if (v := cells[i].strip())}
        return record
