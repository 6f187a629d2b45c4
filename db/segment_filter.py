"""The DYNAMIC segment filter language, compiled to SQL over the customers table.

A filter is a JSON tree:
    {"all": [f, ...]}   every sub-filter holds        {"any": [f, ...]}  at least one holds
    {"not": f}          negation
    {"field": F, "op": OP, "value": V}                a condition
Fields: clubId, email, phone, firstName, lastName, externalId, emailOptIn, smsOptIn, createdAt,
or `attributes.<key>` (a JSON attribute). Ops: eq, ne, in, nin, gt, gte, lt, lte, exists,
contains (case-insensitive substring), startsWith. `{}` matches every customer of the tenant.
"""

from typing import Any

from sqlalchemy import ColumnElement, and_, false, not_, or_, true
from sqlalchemy.sql.elements import ColumnElement as CE

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
OPS = {"eq", "ne", "in", "nin", "gt", "gte", "lt", "lte", "exists", "contains", "startsWith"}
MAX_DEPTH = 8
MAX_NODES = 200


class FilterError(ValueError):
    """A filter that cannot be compiled; `path` is the JSON path of the bad part."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


def validate_filter(node: Any) -> None:
    compile_filter(node)


def compile_filter(node: Any) -> ColumnElement[bool]:
    counter = [0]
    return _compile(node, "filter", 0, counter)


def _compile(node: Any, path: str, depth: int, counter: list[int]) -> ColumnElement[bool]:
    counter[0] += 1
    if counter[0] > MAX_NODES:
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
        parts = [_compile(sub, f"{path}.{key}[{i}]", depth + 1, counter) for i, sub in enumerate(node[key])]
        if not parts:
            return true() if key == "all" else false()
        return and_(*parts) if key == "all" else or_(*parts)
    if "not" in node:
        if set(node) != {"not"}:
            raise FilterError(path, "'not' takes one filter and nothing beside it")
        return not_(_compile(node["not"], f"{path}.not", depth + 1, counter))
    return _condition(node, path)


def _condition(node: dict[str, Any], path: str) -> ColumnElement[bool]:
    extra = set(node) - {"field", "op", "value"}
    if extra:
        raise FilterError(path, f"unknown keys {sorted(extra)}")
    field, op = node.get("field"), node.get("op", "eq")
    if not isinstance(field, str):
        raise FilterError(f"{path}.field", "must be a string")
    if op not in OPS:
        raise FilterError(f"{path}.op", f"must be one of {sorted(OPS)}")
    value = node.get("value")
    if field.startswith("attributes."):
        key = field.removeprefix("attributes.")
        if not key:
            raise FilterError(f"{path}.field", "attribute name missing")
        return _attribute(key, op, value, path)
    column = FIELDS.get(field)
    if column is None:
        raise FilterError(f"{path}.field", f"unknown field; use one of {sorted(FIELDS)} or attributes.<key>")
    return _compare(column, op, value, path)


def _attribute(key: str, op: str, value: Any, path: str) -> ColumnElement[bool]:
    if op == "exists":
        present: ColumnElement[bool] = Customer.attributes.has_key(key)
        return present if value in (None, True) else not_(present)
    if op in ("eq", "ne") and not isinstance(value, (str, int, float, bool)) and value is not None:
        raise FilterError(f"{path}.value", "must be a scalar")
    if op == "eq":
        return Customer.attributes.contains({key: value})
    if op == "ne":
        return not_(Customer.attributes.contains({key: value}))
    element = Customer.attributes[key]
    if op in ("in", "nin"):
        if not isinstance(value, list) or not value:
            raise FilterError(f"{path}.value", "must be a non-empty list")
        cond = or_(*[Customer.attributes.contains({key: v}) for v in value])
        return cond if op == "in" else not_(cond)
    if op in ("gt", "gte", "lt", "lte"):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise FilterError(f"{path}.value", "must be a number or string")
        if isinstance(value, (int, float)):
            num = element.as_float()
            return _ordered(num, op, value)
        return _ordered(element.as_string(), op, value)
    return _compare(element.as_string(), op, value, path)


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


def _compare(column: Any, op: str, value: Any, path: str) -> ColumnElement[bool]:
    if op == "exists":
        exists: ColumnElement[bool] = column.is_not(None) if value in (None, True) else column.is_(None)
        return exists
    if op in ("in", "nin"):
        if not isinstance(value, list) or not value:
            raise FilterError(f"{path}.value", "must be a non-empty list")
        return column.in_(value) if op == "in" else or_(column.is_(None), column.not_in(value))
    if op in ("contains", "startsWith"):
        if not isinstance(value, str):
            raise FilterError(f"{path}.value", "must be a string")
        escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%" if op == "contains" else f"{escaped}%"
        matched: ColumnElement[bool] = column.ilike(pattern, escape="\\")
        return matched
    if isinstance(value, (list, dict)):
        raise FilterError(f"{path}.value", "must be a scalar")
    if op == "eq":
        equal: ColumnElement[bool] = column.is_(None) if value is None else column == value
        return equal
    if op == "ne":
        return column.is_not(None) if value is None else or_(column.is_(None), column != value)
    return _ordered(column, op, value)


__all__ = ["CE", "FilterError", "compile_filter", "validate_filter"]
