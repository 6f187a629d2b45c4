"""The size bounds of the template sandbox (providers.rendering): what a template may build, checked
before it is built.

No value a template builds exceeds MAX_VALUE_CHARS characters (or items), nor an integer
MAX_INT_BITS: the operators that multiply sizes (`*`, `**`, `+`, `%`), the string methods and
filters that pad or repeat (`center`, `ljust`, `format`, `replace`, `join`, `indent`, ...) are
checked *before* they allocate, and so is every conversion of a nested list or dict to text.
"""

import math
import re
import string
from collections.abc import Callable, ItemsView, KeysView, Mapping, ValuesView
from functools import wraps
from typing import Any

from jinja2.exceptions import SecurityError

MAX_VALUE_CHARS = 1_000_000
MAX_INT_BITS = 8192

# ---- sizes ----------------------------------------------------------------------------------------

PLAIN = frozenset({str, int, float, bool, type(None)})
# What a template can write out element by element (a loop, a generator, a macro are written as a repr).
_CONTAINERS = (list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)


def refuse(what: str) -> SecurityError:
    return SecurityError(f"{what}: a template may build at most {MAX_VALUE_CHARS} characters or items")


def measure(value: Any, limit: int = MAX_VALUE_CHARS) -> int:
    """About how many characters `value` takes written out as text; counting stops past `limit`.

    Nested lists and dicts are counted as they expand (`[a, a]` is twice `a`), without recursion
    and without ever visiting more than `limit` items, so a deeply shared structure costs no more.
    """
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is str or kind is bytes:
            total += len(item)
        elif kind is int:
            total += item.bit_length() // 3 + 2
        elif kind is float or kind is bool or item is None:
            total += 24
        elif isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, Mapping):
            total += 2 + 4 * len(item)
            if total <= limit:
                stack.extend(item.keys())
                stack.extend(item.values())
        elif isinstance(item, _CONTAINERS):
            total += 2 + 2 * len(item)
            if total <= limit:
                stack.extend(item)
        else:  # a generator, a macro, an undefined value...: written as a short repr
            total += 64
        if total > limit:
            return limit + 1
    return total


def bounded(value: Any) -> Any:
    """A value just built, refused if it is too long (its memory is then at most a few times the bound)."""
    if isinstance(value, str | bytes | list | tuple) and len(value) > MAX_VALUE_CHARS:
        raise refuse("the value is too long")
    return value


def check_width(width: Any) -> None:
    if isinstance(width, int) and width > MAX_VALUE_CHARS:
        raise refuse(f"a width of {width}")


_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)", re.DOTALL)
_NUMBER = re.compile(r"\d+")
# Room for one number converted by a field (`'%f' % 1e308` has 309 digits).
_NUMBER_CHARS = 330


def _check_formatted(fields: int, widest: int, template_chars: int, values: Any) -> None:
    bound = template_chars + fields * (widest + _NUMBER_CHARS + measure(values))
    if bound > MAX_VALUE_CHARS:
        raise refuse(f"formatting {fields} field(s) of up to {widest} characters")


def check_printf(template: str, values: Any) -> None:
    """`template % values`: refuse `*` widths, and results that could exceed the bound."""
    fields = widest = 0
    for match in _PRINTF.finditer(template):
        width, precision, conversion = match.groups()
        if conversion == "%":
            continue
        if width == "*" or precision == "*":
            raise SecurityError("'*' widths are not supported in templates")
        fields += 1
        widest = max(widest, int(width or 0) + int(precision or 0))
    if fields:
        _check_formatted(fields, widest, len(template), values)


def _check_str_format(template: str, values: Any) -> None:
    """`template.format(...)`: no nested `{}` in a format spec, and a bounded result."""
    fields = widest = 0
    for _literal, name, spec, _conversion in string.Formatter().parse(template):
        if name is None:
            continue
        if spec and "{" in spec:
            raise SecurityError("nested replacement fields are not supported in templates")
        fields += 1
        widest = max(widest, sum(int(n) for n in _NUMBER.findall(spec or "")))
    if fields:
        _check_formatted(fields, widest, len(template), values)


def _check_replace(text: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """`text.replace(old, new[, count])`: refuse a result over the bound (checked from the counts)."""
    if len(args) < 2:
        return  # the call itself reports the missing arguments
    old, new = args[0], args[1]
    count = args[2] if len(args) > 2 else kwargs.get("count")
    if not all(isinstance(x, str) for x in (text, old, new)) and not all(
        isinstance(x, bytes) for x in (text, old, new)
    ):
        return
    times = len(text) + 1 if not old else text.count(old)
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    if len(text) + times * max(len(new) - len(old), 0) > MAX_VALUE_CHARS:
        raise refuse("the replacement")


def _check_join(separator: Any, items: list[Any]) -> None:
    if measure(items) + len(separator) * max(len(items) - 1, 0) > MAX_VALUE_CHARS:
        raise refuse("the joined text")


# ---- methods called from a template -------------------------------------------------------------

_REFUSED_METHODS = frozenset({"translate", "maketrans", "expandtabs"})
_WIDTH_METHODS = frozenset({"ljust", "rjust", "center", "zfill"})


def checked_method_args(
    owner: str | bytes | int, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """Check a call of a str, bytes or int method before it runs; returns the args to call with."""
    if isinstance(owner, int):
        if name == "to_bytes":
            check_width(args[0] if args else kwargs.get("length", 1))
        return args
    if name in _REFUSED_METHODS:
        raise SecurityError(f"{type(owner).__name__}.{name} is not available in templates")
    if name in _WIDTH_METHODS:
        check_width(args[0] if args else None)
    elif name == "replace":
        _check_replace(owner, args, kwargs)
    elif name == "join" and args:
        items = list(args[0])
        _check_join(owner, items)
        return (items, *args[1:])
    elif name == "format" and isinstance(owner, str):
        _check_str_format(owner, (args, kwargs))
    elif name == "format_map" and isinstance(owner, str):
        _check_str_format(owner, args)
    return args


# ---- filters ------------------------------------------------------------------------------------

# Filters that write their input out as text: a nested list or dict is measured first.
_TEXT_FILTERS = frozenset(
    {
        "capitalize", "center", "e", "escape", "forceescape", "format", "indent", "lower", "pprint",
        "replace", "safe", "string", "striptags", "title", "tojson", "trim", "truncate", "upper",
        "urlencode", "urlize", "wordcount", "wordwrap", "xmlattr",
    }
)  # fmt: skip


def _check_center(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    check_width(args[0] if args else kwargs.get("width"))
    return value


def _check_indent(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    width = args[0] if args else kwargs.get("width", 4)
    text = str(value)
    indent = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    if len(text) + (text.count("\n") + 1) * indent > MAX_VALUE_CHARS:
        raise refuse("the indented text")
    return value


def _check_wordwrap(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    wrap = args[2] if len(args) > 2 else kwargs.get("wrapstring")
    if isinstance(wrap, str) and (len(str(value)) + 1) * (len(wrap) + 1) > MAX_VALUE_CHARS:
        raise refuse("the wrapped text")
    return value


def _check_format(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    check_printf(str(value), (args, kwargs))
    return value


def _check_replace_filter(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    _check_replace(str(value), args, kwargs)
    return value


def _check_join_filter(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    items = list(value)
    separator = args[0] if args else kwargs.get("d", "")
    _check_join(separator if isinstance(separator, str) else "", items)
    return items


def _check_count(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    check_width(args[0] if args else kwargs.get("linecount", kwargs.get("slices")))
    return value


def _check_round(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    precision = args[0] if args else kwargs.get("precision", 0)
    if isinstance(precision, int) and abs(precision) > 400:
        raise SecurityError("round: the precision must be between -400 and 400")
    return value


def _check_sum(value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    start = args[1] if len(args) > 1 else kwargs.get("start", 0)
    if not isinstance(start, int | float):
        raise SecurityError("sum: only numbers can be summed in templates")
    return value


FilterCheck = Callable[[Any, tuple[Any, ...], dict[str, Any]], Any]
# Filters whose arguments could make them allocate without bound: the check of each, which
# returns the value to filter (`join` consumes an iterator once, so it filters the list it read).
_FILTER_CHECKS: dict[str, FilterCheck] = {
    "center": _check_center,
    "indent": _check_indent,
    "wordwrap": _check_wordwrap,
    "format": _check_format,
    "replace": _check_replace_filter,
    "join": _check_join_filter,
    "batch": _check_count,
    "slice": _check_count,
    "round": _check_round,
    "sum": _check_sum,
}


def _check_filter_args(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Arguments that would make a filter allocate without bound; returns the value to filter."""
    check = _FILTER_CHECKS.get(name)
    return value if check is None else check(value, args, kwargs)


def guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    # Filters marked pass_context/pass_eval_context/pass_environment get that first, then the value.
    offset = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0
    writes_text = name in _TEXT_FILTERS

    @wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if len(args) > offset:
            value = args[offset]
            if writes_text and type(value) not in PLAIN and measure(value) > MAX_VALUE_CHARS:
                raise refuse(f"the input of '{name}'")
            rest = args[offset + 1 :]
            checked = _check_filter_args(name, value, rest, kwargs)
            if checked is not value:
                args = (*args[:offset], checked, *rest)
        return bounded(func(*args, **kwargs))

    return guarded


GUARDED_FILTERS = _TEXT_FILTERS | {"batch", "slice", "join", "round", "sum"}


# ---- operators ----------------------------------------------------------------------------------

_SIZED = (str, bytes, list, tuple)


def _refuse_int_bits() -> SecurityError:
    return SecurityError(f"a template may build integers of at most {MAX_INT_BITS} bits")


def _check_power(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        if right * math.log2(abs(left)) > MAX_INT_BITS:
            raise _refuse_int_bits()


def _check_product(left: Any, right: Any) -> None:
    if isinstance(left, int) and isinstance(right, int):
        if left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise _refuse_int_bits()
        return
    sequence, times = (right, left) if isinstance(left, int) else (left, right)
    if isinstance(times, int) and isinstance(sequence, _SIZED) and len(sequence) * times > MAX_VALUE_CHARS:
        raise refuse("the repetition")


def _check_sum_of(left: Any, right: Any) -> None:
    if isinstance(left, _SIZED) and isinstance(right, _SIZED) and len(left) + len(right) > MAX_VALUE_CHARS:
        raise refuse("the sum")


def _check_modulo(left: Any, right: Any) -> None:
    if isinstance(left, str | bytes):  # printf-style formatting
        check_printf(left if isinstance(left, str) else left.decode("latin-1"), right)


# The operators that can multiply sizes, and the check of each before it runs.
BINOP_CHECKS: dict[str, Callable[[Any, Any], None]] = {
    "**": _check_power,
    "*": _check_product,
    "+": _check_sum_of,
    "%": _check_modulo,
}
