"""The DYNAMIC segment filter language, compiled to SQL over the customers table.

A filter is a JSON tree:
    {"all": [f, ...]}   every sub-filter holds        {"any": [f, ...]}  at least one holds
    {"not": f}          negation
    {"field": F, "op": OP, "value": V}                a condition
Fields: clubId, email, phone, firstName, lastName, externalId, emailOptIn, smsOptIn, createdAt,
or `attributes.<key>` (a JSON attribute). Ops: eq, ne, in, nin, gt, gte, lt, lte, exists,
contains (case-insensitive substring), startsWith. `{}` matches every customer of the tenant.

Compiled filters are type-safe: whatever the data, running one never raises. A value must suit its
field (text fields take strings, emailOptIn/smsOptIn booleans, createdAt ISO-8601 date-times; else a
FilterError at the value's path), and a condition on a JSON attribute only matches values of its
own JSON type: a number comparison skips attributes holding text, a text one skips numbers.
A condition never evaluates to NULL (a field without a value fails it, `ne`/`nin` excepted, which
it passes), so `{"not": f}` selects exactly the customers `f` does not.
"""

import json
import math
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ARRAY,
    Boolean,
    ColumnElement,
    Numeric,
    Text,
    and_,
    any_,
    case,
    cast,
    false,
    func,
    literal,
    not_,
    or_,
    true,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.sql.elements import ColumnElement as CE

from core.addresses import canonical_email, canonical_phone
from db.models import Customer

FIELDS: dict[str, Any] = {
    "clubId": Customer.club_id,
    "email": Customer.email,
    "phone": Customer.phone,
    "firstName": Customer.first_name,
    "lastName": Customer.last_name,
    "externalId": Customer.external_id,
    "emailOptIn": Customer.email_opt_in,
    "smsOptIn": Customer.sms_opt_in,
    "createdAt": Customer.created_at,
}
# What a field's values are; a condition's value must be of the same kind (checked when compiling,
# so that no filter can make Postgres fail a cast or find no operator when it runs).
TEXT, BOOLEAN, TIMESTAMP = "text", "boolean", "timestamp"
KINDS: dict[str, str] = {
    "clubId": TEXT,
    "email": TEXT,
    "phone": TEXT,
    "firstName": TEXT,
    "lastName": TEXT,
    "externalId": TEXT,
    "emailOptIn": BOOLEAN,
    "smsOptIn": BOOLEAN,
    "createdAt": TIMESTAMP,
}
OPS = {"eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "exists", "contains", "startsWith"}
ORDERED = {"gt", "gte", "lt", "lte"}
# Bounds on a filter's size: compiling it, planning its SQL and evaluating it per customer all grow
# with the number of nodes and of listed values, and one tenant's filter must not hold the API or
# the database for everybody else. `in`/`nin` lists count their values against MAX_VALUES in all.
MAX_DEPTH = 8
MAX_NODES = 200
MAX_VALUES = 1000
MAX_ATTRIBUTE_NAME = 200  # as long as a stored attribute's name may be
# Instants compared with createdAt: the same supported years as every instant the API accepts.
MIN_YEAR, MAX_YEAR = 1970, 9000


class FilterError(ValueError):
    """A filter that cannot be compiled; `path` is the JSON path of the bad part."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def validate_filter(node: Any) -> None:
    compile_filter(node)


def compile_filter(node: Any) -> ColumnElement[bool]:
    return _compile(node, "filter", 0, _Budget())


class _Budget:
    """What a filter has used so far of its node and listed-value bounds."""

    def __init__(self) -> None:
        self.nodes = 0
        self.values = 0

    def take_values(self, values: list[Any], path: str) -> None:
        self.values += len(values)
        if self.values > MAX_VALUES:
            raise FilterError(path, f"a filter may list at most {MAX_VALUES} values in all its in/nin lists")


def _compile(node: Any, path: str, depth: int, budget: _Budget) -> ColumnElement[bool]:
    budget.nodes += 1
    if budget.nodes > MAX_NODES:
        raise FilterError(path, f"a filter may have at most {MAX_NODES} nodes")
    if depth > MAX_DEPTH:
        raise FilterError(path, f"a filter may nest at most {MAX_DEPTH} levels")
    if not isinstance(node, dict):
        raise FilterError(path, "must be an object")
    if not node:
        return true()
    if "all" in node or "any" in node:
        key = "all" if "all" in node else "any"
        if set(node) != {key} or not isinstance(node[key], list):
            raise FilterError(path, f"'{key}' takes a list and nothing beside it")
        parts = [_compile(sub, f"{path}.{key}[{i}]", depth + 1, budget) for i, sub in enumerate(node[key])]
        if not parts:
            return true() if key == "all" else false()
        return and_(*parts) if key == "all" else or_(*parts)
    if "not" in node:
        if set(node) != {"not"}:
            raise FilterError(path, "'not' takes one filter and nothing beside it")
        return not_(_compile(node["not"], f"{path}.not", depth + 1, budget))
    return _condition(node, path, budget)


def _condition(node: dict[str, Any], path: str, budget: _Budget) -> ColumnElement[bool]:
    extra = set(node) - {"field", "op", "value"}
    if extra:
        raise FilterError(path, f"unknown keys {sorted(extra)}")
    field, op = node.get("field"), node.get("op", "eq")
    if not isinstance(field, str):
        raise FilterError(f"{path}.field", "must be a string")
    if op not in OPS:
        raise FilterError(f"{path}.op", f"must be one of {sorted(OPS)}")
    value = node.get("value")
    if op == "exists" and value is not None and not isinstance(value, bool):
        raise FilterError(f"{path}.value", "must be true, false or left out")
    if op in ("in", "nin"):
        if not isinstance(value, list) or not value:
            raise FilterError(f"{path}.value", "must be a non-empty list")
        budget.take_values(value, f"{path}.value")
    if field.startswith("attributes."):
        key = field.removeprefix("attributes.")
        if not key:
            raise FilterError(f"{path}.field", "attribute name missing")
        if len(key) > MAX_ATTRIBUTE_NAME:
            message = f"attribute names have at most {MAX_ATTRIBUTE_NAME} characters"
            raise FilterError(f"{path}.field", message)
        return _attribute(key, op, value, path)
    if field not in FIELDS:
        raise FilterError(f"{path}.field", f"unknown field; use one of {sorted(FIELDS)} or attributes.<key>")
    return _compare(field, op, value, path)


def _attribute(key: str, op: str, value: Any, path: str) -> ColumnElement[bool]:
    """A condition on a JSON attribute. A value of another JSON type than the condition's never
    matches (and never fails): `gt 30` skips `"abc"`, `contains "a"` skips `12`, `eq true` skips `"true"`.
    """
    if op == "exists":
        present: ColumnElement[bool] = Customer.attributes.has_key(key)
        return present if value in (None, True) else not_(present)
    if op in ("eq", "ne"):
        _json_scalar(value, f"{path}.value")
        # Containment compares JSON values with their types: 30 matches 30 and 30.0, never "30".
        equal: ColumnElement[bool] = Customer.attributes.contains({key: value})
        return equal if op == "eq" else not_(equal)
    if op in ("in", "nin"):
        for i, item in enumerate(value):
            _json_scalar(item, f"{path}.value[{i}]")
        # One containment test against an array bound as a single parameter: the same meaning as
        # an OR of `@>` per value, at a compile and planning cost that does not grow with the list.
        wanted = cast(literal([json.dumps({key: v}) for v in value], ARRAY(Text())), ARRAY(JSONB()))
        cond: ColumnElement[bool] = Customer.attributes.op("@>", return_type=Boolean())(any_(wanted))
        return cond if op == "in" else not_(cond)
    element = Customer.attributes[key]
    kind = func.jsonb_typeof(element)
    if op in ORDERED:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise FilterError(f"{path}.value", "must be a number or string")
        if isinstance(value, str):
            return _when(kind == "string", _ordered(element.astext, op, value))
        number = literal(_decimal(value, f"{path}.value"), Numeric())
        # CASE, not AND: Postgres may evaluate AND's operands in any order, CASE's condition first.
        return _when(kind == "number", _ordered(cast(element.astext, Numeric()), op, number))
    if not isinstance(value, str):  # contains, startsWith
        raise FilterError(f"{path}.value", "must be a string")
    return _when(kind == "string", _like(element.astext, op, value))


def _when(condition: ColumnElement[bool], then: ColumnElement[bool]) -> ColumnElement[bool]:
    """`then` where `condition` holds, else false (never NULL, so `not` inverts it exactly)."""
    result: ColumnElement[bool] = case((condition, then), else_=false())
    return result


def _json_scalar(value: Any, path: str) -> None:
    if isinstance(value, (list, dict)):
        raise FilterError(path, "must be a scalar")
    if isinstance(value, float) and not math.isfinite(value):
        raise FilterError(path, "must be a finite number")


def _decimal(value: int | float, path: str) -> Decimal:
    if isinstance(value, float) and not math.isfinite(value):
        raise FilterError(path, "must be a finite number")
    return Decimal(value) if isinstance(value, int) else Decimal(repr(value))


def _timestamp(value: Any, path: str) -> datetime:
    """An ISO-8601 date or date-time; without an offset it is UTC."""
    if isinstance(value, str) and len(value) <= 64:
        try:
            parsed = datetime.fromisoformat(value)
            parsed = parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
            in_range = MIN_YEAR <= parsed.astimezone(UTC).year <= MAX_YEAR
        except (ValueError, OverflowError):  # not a date-time, or one beyond the calendar in UTC
            pass
        else:
            if not in_range:
                raise FilterError(path, f"must be between {MIN_YEAR}-01-01 and {MAX_YEAR}-12-31 (UTC)")
            return parsed
    raise FilterError(path, "must be an ISO-8601 date or date-time, like 2024-05-01T00:00:00Z")


def _typed(kind: str, value: Any, path: str) -> Any:
    """`value` as a bind value for a column of `kind`, or a FilterError at `path`."""
    if kind == TIMESTAMP:
        return _timestamp(value, path)
    if kind == BOOLEAN:
        if not isinstance(value, bool):
            raise FilterError(path, "must be true or false")
        return value
    if not isinstance(value, str):
        raise FilterError(path, "must be a string")
    return value


def _stored(field: str, value: Any) -> Any:
    """An address compared in the form it is stored in (core.addresses): `email eq ADA@Example.com`
    finds ada@example.com, `phone eq "+4407700900123"` (a trunk zero) finds +447700900123. A value
    that is no address is compared as written (it matches nothing)."""
    canonical = {"email": canonical_email, "phone": canonical_phone}.get(field)
    if canonical is None or not isinstance(value, str):
        return value
    try:
        return canonical(value)
    except ValueError:
        return value


def _ordered(column: Any, op: str, value: Any) -> ColumnElement[bool]:
    result: ColumnElement[bool]
    if op == "gt":
        result = column > value
    elif op == "gte":
        result = column >= value
    elif op == "lt":
        result = column < value
    else:
        result = column <= value
    return result


def _like(column: Any, op: str, value: str) -> ColumnElement[bool]:
    escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{escaped}%" if op == "contains" else f"{escaped}%"
    matched: ColumnElement[bool] = column.ilike(pattern, escape="\\")
    return matched


def _compare(field: str, op: str, value: Any, path: str) -> ColumnElement[bool]:
    column, kind = FIELDS[field], KINDS[field]
    if op == "exists":
        exists: ColumnElement[bool] = column.is_not(None) if value in (None, True) else column.is_(None)
        return exists
    if op in ("in", "nin"):
        values = [_stored(field, _typed(kind, v, f"{path}.value[{i}]")) for i, v in enumerate(value)]
        if op == "in":
            return _known(column, column.in_(values))
        return or_(column.is_(None), column.not_in(values))
    if op in ("contains", "startsWith"):
        if kind != TEXT:
            raise FilterError(f"{path}.op", f"'{op}' applies to text fields, not to {field}")
        if not isinstance(value, str):
            raise FilterError(f"{path}.value", "must be a string")
        return _known(column, _like(column, op, value))
    if value is None and op in ("eq", "ne"):
        null: ColumnElement[bool] = column.is_(None) if op == "eq" else column.is_not(None)
        return null
    typed = _stored(field, _typed(kind, value, f"{path}.value"))
    if op == "eq":
        return _known(column, column == typed)
    if op == "ne":
        return or_(column.is_(None), column != typed)
    return _known(column, _ordered(column, op, typed))


def _known(column: Any, condition: ColumnElement[bool]) -> ColumnElement[bool]:
    """`condition`, false (never NULL) where the field is NULL, so `not` inverts it exactly:
    `not (email contains "golf")` holds for a customer without an email. (AND, not COALESCE,
    so an index on the column still serves the condition.)"""
    return and_(column.is_not(None), condition)


__all__ = ["CE", "FilterError", "compile_filter", "validate_filter"]
