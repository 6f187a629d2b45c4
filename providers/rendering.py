"""Personalisation in a Jinja2 sandbox: a template sees only the recipient's own fields.

Templates are compiled once per (template, version) and cached, because a page renders the same
template hundreds of times.

A template is code written by a tenant and runs inside the API and the send activity, so besides
the sandbox (no private attributes, no mutation, no server names: Jinja's default globals such as
`range`, `cycler` or `lipsum` are removed) it runs under bounds:

- the source is at most MAX_TEMPLATE_CHARS, the rendered text at most MAX_RENDERED_CHARS;
- no value it builds exceeds MAX_VALUE_CHARS characters (or items), nor an integer MAX_INT_BITS:
  the operators that multiply sizes (`*`, `**`, `+`, `%`), the string methods and filters that pad
  or repeat (`center`, `ljust`, `format`, `replace`, `join`, `indent`, ...) are checked *before*
  they allocate, and so is every conversion of a nested list or dict to text;
- loop iterations, calls (macros, methods), filter calls and tests are at most MAX_STEPS per render
  (a filter is where the heavy work of a short template happens: `|map('int')` over a long list
  calls a filter per item), and a render stops after MAX_RENDER_SECONDS (the clock is read every
  few steps, so a single slow built-in can overrun it: providers.render_pool runs renders in
  processes it can kill for that);
- each part of a rendered email is at most MAX_EMAIL_PART_CHARS, so tracking's link rewriting
  always runs on bounded text.

Whatever goes wrong while compiling or rendering (a syntax error, `1/0`, a type error, a bound) is a
`TemplateSyntaxProblem` with a short message: the API answers it as a 422, the send activity
records the message as FAILED with reason TEMPLATE_ERROR and goes on with the next one.

What a template may read is checked when it is saved (`check_template`): only the recipient's
fields (RECIPIENT_FIELDS) as top-level names, and no attribute or key that starts with `_` (the
way to Python internals: `''.__class__.__mro__`). At render time a reach for an unsafe attribute
fails the render instead of printing nothing, and `attributes.x` prefers the customer's attribute
`x` over a dict method of that name; a missing attribute renders as empty text (the documented
default: `{{ attributes.nickname | default('friend') }}` gives a fallback).
"""

import math
import re
import string
import time
from collections import deque
from collections.abc import Callable, ItemsView, Iterable, Iterator, KeysView, Mapping, ValuesView
from functools import lru_cache, wraps
from typing import Any

from jinja2 import Template, TemplateError, Undefined, meta, nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from providers.html_text import html_to_text

MAX_TEMPLATE_CHARS = 500_000
MAX_RENDERED_CHARS = 1_000_000
MAX_VALUE_CHARS = 1_000_000
MAX_INT_BITS = 8192
MAX_STEPS = 10_000
MAX_RENDER_SECONDS = 1.0
# Read the clock every CLOCK_EVERY steps: cheap, yet at most a few filter calls past the deadline.
CLOCK_EVERY = 16
# A rendered email part (html, text) longer than this is not sent (providers.render_child): the link
# rewriting and MIME encoding that follow cost time in proportion to it. Mail clients clip far
# shorter messages (Gmail at about 100 KB), and it matches the largest template source.
MAX_EMAIL_PART_CHARS = 500_000
MAX_MESSAGE_CHARS = 200
# Compiled templates are cached by source; a long source (and its code) takes far more memory, so
# long ones get a cache of their own, much smaller.
LONG_TEMPLATE_CHARS = 50_000
SHORT_CACHE_SIZE = 128
LONG_CACHE_SIZE = 16


class TemplateSyntaxProblem(ValueError):
    pass


class RenderTimeLimit(SecurityError):
    """A render ran out of time: the one bound a later render of the same template will also hit
    (providers.render_pool stops rendering such a template for a while)."""


def recipient_context(customer: dict[str, Any]) -> dict[str, Any]:
    """The whole namespace a template can read: the recipient, nothing of the server."""
    return {
        "firstName": customer.get("first_name") or "",
        "lastName": customer.get("last_name") or "",
        "email": customer.get("email") or "",
        "phone": customer.get("phone") or "",
        "clubId": customer.get("club_id") or "",
        "externalId": customer.get("external_id") or "",
        "attributes": dict(customer.get("attributes") or {}),
    }


RECIPIENT_FIELDS = tuple(recipient_context({}))
HTML_TO_TEXT = "html_to_text"
# The text part of an EMAIL template without `text` is DERIVED_TEXT_OPEN + html + DERIVED_TEXT_CLOSE
# (db.template_versions builds it): the html, rendered escaped as html, then turned into plain text
# (providers.html_text). The html must itself be a valid template, so its blocks are balanced and
# cannot close these.
DERIVED_TEXT_OPEN = "{% filter " + HTML_TO_TEXT + " %}{% autoescape true %}"
DERIVED_TEXT_CLOSE = "{% endautoescape %}{% endfilter %}"


# ---- sizes ----------------------------------------------------------------------------------------

_PLAIN = frozenset({str, int, float, bool, type(None)})
# What a template can write out element by element (a loop, a generator, a macro are written as a repr).
_CONTAINERS = (list, tuple, set, frozenset, KeysView, ValuesView, ItemsView)


def _refuse(what: str) -> SecurityError:
    return SecurityError(f"{what}: a template may build at most {MAX_VALUE_CHARS} characters or items")


def _measure(value: Any, limit: int = MAX_VALUE_CHARS) -> int:
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


def _bounded(value: Any) -> Any:
    """A value just built, refused if it is too long (its memory is then at most a few times the bound)."""
    if isinstance(value, str | bytes | list | tuple) and len(value) > MAX_VALUE_CHARS:
        raise _refuse("the value is too long")
    return value


def _check_width(width: Any) -> None:
    if isinstance(width, int) and width > MAX_VALUE_CHARS:
        raise _refuse(f"a width of {width}")


_PRINTF = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d*))?[hlL]?(.)", re.DOTALL)
_NUMBER = re.compile(r"\d+")
# Room for one number converted by a field (`'%f' % 1e308` has 309 digits).
_NUMBER_CHARS = 330


def _check_formatted(fields: int, widest: int, template_chars: int, values: Any) -> None:
    bound = template_chars + fields * (widest + _NUMBER_CHARS + _measure(values))
    if bound > MAX_VALUE_CHARS:
        raise _refuse(f"formatting {fields} field(s) of up to {widest} characters")


def _check_printf(template: str, values: Any) -> None:
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
        raise _refuse("the replacement")


def _check_join(separator: Any, items: list[Any]) -> None:
    if _measure(items) + len(separator) * max(len(items) - 1, 0) > MAX_VALUE_CHARS:
        raise _refuse("the joined text")


# ---- methods called from a template -------------------------------------------------------------

_REFUSED_METHODS = frozenset({"translate", "maketrans", "expandtabs"})
_WIDTH_METHODS = frozenset({"ljust", "rjust", "center", "zfill"})


def _checked_method_args(
    owner: str | bytes | int, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """Check a call of a str, bytes or int method before it runs; returns the args to call with."""
    if isinstance(owner, int):
        if name == "to_bytes":
            _check_width(args[0] if args else kwargs.get("length", 1))
        return args
    if name in _REFUSED_METHODS:
        raise SecurityError(f"{type(owner).__name__}.{name} is not available in templates")
    if name in _WIDTH_METHODS:
        _check_width(args[0] if args else None)
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


def _check_filter_args(name: str, value: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """Arguments that would make a filter allocate without bound; returns the value to filter."""
    if name == "center":
        _check_width(args[0] if args else kwargs.get("width"))
    elif name == "indent":
        width = args[0] if args else kwargs.get("width", 4)
        text = str(value)
        indent = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
        if len(text) + (text.count("\n") + 1) * indent > MAX_VALUE_CHARS:
            raise _refuse("the indented text")
    elif name == "wordwrap":
        wrap = args[2] if len(args) > 2 else kwargs.get("wrapstring")
        if isinstance(wrap, str) and (len(str(value)) + 1) * (len(wrap) + 1) > MAX_VALUE_CHARS:
            raise _refuse("the wrapped text")
    elif name == "format":
        _check_printf(str(value), (args, kwargs))
    elif name == "replace":
        _check_replace(str(value), args, kwargs)
    elif name == "join":
        value = list(value)
        separator = args[0] if args else kwargs.get("d", "")
        _check_join(separator if isinstance(separator, str) else "", value)
    elif name in ("batch", "slice"):
        _check_width(args[0] if args else kwargs.get("linecount", kwargs.get("slices")))
    elif name == "round":
        precision = args[0] if args else kwargs.get("precision", 0)
        if isinstance(precision, int) and abs(precision) > 400:
            raise SecurityError("round: the precision must be between -400 and 400")
    elif name == "sum":
        start = args[1] if len(args) > 1 else kwargs.get("start", 0)
        if not isinstance(start, int | float):
            raise SecurityError("sum: only numbers can be summed in templates")
    return value


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    # Filters marked pass_context/pass_eval_context/pass_environment get that first, then the value.
    offset = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0
    measure = name in _TEXT_FILTERS

    @wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        if len(args) > offset:
            value = args[offset]
            if measure and type(value) not in _PLAIN and _measure(value) > MAX_VALUE_CHARS:
                raise _refuse(f"the input of '{name}'")
            rest = args[offset + 1 :]
            checked = _check_filter_args(name, value, rest, kwargs)
            if checked is not value:
                args = (*args[:offset], checked, *rest)
        return _bounded(func(*args, **kwargs))

    return guarded


_GUARDED_FILTERS = _TEXT_FILTERS | {"batch", "slice", "join", "round", "sum"}


# ---- the budget of steps and time ---------------------------------------------------------------


class _Budget:
    """Loop iterations and calls left to one render, and when it must have finished."""

    __slots__ = ("deadline", "steps")

    def __init__(self) -> None:
        self.steps = MAX_STEPS
        self.deadline = time.monotonic() + MAX_RENDER_SECONDS

    def spend(self) -> None:
        self.steps -= 1
        if self.steps & (CLOCK_EVERY - 1) == 0 or self.steps < 0:
            if self.steps < 0:
                raise SecurityError(
                    f"a template may run at most {MAX_STEPS} loop iterations, calls and filters"
                )
            if time.monotonic() > self.deadline:
                raise RenderTimeLimit(f"the template took longer than {MAX_RENDER_SECONDS:g} s to render")


def _budget(context: Context) -> _Budget:
    state = vars(context.eval_ctx)
    budget: _Budget | None = state.get("budget")
    if budget is None:  # a render that did not go through render() below
        budget = state["budget"] = _Budget()
    return budget


def _counted(context: Context, iterable: Iterable[Any]) -> Iterator[Any]:
    spend = _budget(context).spend
    for item in iterable:
        spend()
        yield item


def _spending(func: Callable[..., Any]) -> Callable[..., Any]:
    """A filter or test that spends one step per call, whether the template calls it directly or
    through `map`, `select`, `reject`... (which call it once per item of a list).

    The wrapper takes the render's context (to find its budget) and hands the filter what it was
    declared to take: the context, the eval context, the environment or nothing."""
    declared = getattr(func, "jinja_pass_arg", None)
    wants = declared.name if declared is not None else None

    @wraps(func)
    def spending(context: Context, *args: Any, **kwargs: Any) -> Any:
        _budget(context).spend()
        if wants == "context":
            return func(context, *args, **kwargs)
        if wants == "eval_context":
            return func(context.eval_ctx, *args, **kwargs)
        if wants == "environment":
            return func(context.environment, *args, **kwargs)
        return func(*args, **kwargs)

    # Also keeps the compiler from folding a filter of constants at compile time, where no
    # budget applies: `{{ ('x' * 999) | list | sort }}` runs (and is counted) at render time.
    return pass_context(spending)


_LOOP_FILTER = "counted loop"  # not a name a template can write


@pass_context
def _loop_filter(context: Context, iterable: Iterable[Any]) -> Iterator[Any]:
    return _counted(context, iterable)


class _BoundedCodeGenerator(CodeGenerator):
    """Jinja's code generator, with every `for` loop counted and every `~` measured."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        for loop in list(node.find_all(nodes.For)):
            counted = nodes.Filter(loop.iter, _LOOP_FILTER, [], [], None, None, lineno=loop.lineno)
            loop.iter = counted.set_environment(self.environment)
        super().visit_Template(node, frame)

    @optimizeconst
    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # As CodeGenerator.visit_Concat, with the parts measured before they are joined.
        if frame.eval_ctx.volatile:
            func_name = "(markup_join if context.eval_ctx.volatile else str_join)"
        elif frame.eval_ctx.autoescape:
            func_name = "markup_join"
        else:
            func_name = "str_join"
        self.write(f"{func_name}(environment.measured((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write(")))")


# ---- the environment ----------------------------------------------------------------------------


def _concat(parts: Iterable[str]) -> str:
    """Joins the output buffered by a macro, `{% set %}...{% endset %}` or `{% filter %}` block."""
    if type(parts) is not list:
        parts = list(parts)
    if sum(map(len, parts)) > MAX_VALUE_CHARS:
        raise _refuse("the block's output is too long")
    return "".join(parts)


def _finalize(value: Any) -> Any:
    """Every `{{ value }}` before it is written: a nested list or dict is measured first."""
    if type(value) not in _PLAIN and not isinstance(value, str) and _measure(value) > MAX_VALUE_CHARS:
        raise _refuse("the value to write")
    return value


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    concat = staticmethod(_concat)

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(autoescape=autoescape, undefined=Undefined, finalize=_finalize)
        self.globals.clear()  # range, dict, lipsum, cycler, joiner, namespace: none of them
        for name in _GUARDED_FILTERS:
            self.filters[name] = _guard_filter(name, self.filters[name])
        self.filters[HTML_TO_TEXT] = html_to_text
        for table in (self.filters, self.tests):
            for name, func in list(table.items()):
                table[name] = _spending(func)
        self.filters[_LOOP_FILTER] = _loop_filter  # spends a step per item already

    def getattr(self, obj: Any, attribute: str) -> Any:
        # `attributes.items` is the customer's attribute "items" when there is one, not dict.items.
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def unsafe_undefined(self, obj: Any, attribute: str) -> Undefined:
        """A reach for an unsafe attribute fails the render (the sandbox would print nothing)."""
        kind = type(obj).__name__
        raise SecurityError(f"access to attribute {attribute!r} of a {kind} value is not allowed")

    def measured(self, parts: tuple[Any, ...]) -> tuple[Any, ...]:
        """The parts of `a ~ b ~ ...`, refused if they would join to too long a text."""
        if _measure(parts) > MAX_VALUE_CHARS:
            raise _refuse("the joined text")
        return parts

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
                if right * math.log2(abs(left)) > MAX_INT_BITS:
                    raise SecurityError(f"a template may build integers of at most {MAX_INT_BITS} bits")
        elif operator == "*":
            if isinstance(left, int) and isinstance(right, int):
                if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                    raise SecurityError(f"a template may build integers of at most {MAX_INT_BITS} bits")
            else:
                sequence, times = (right, left) if isinstance(left, int) else (left, right)
                if (
                    isinstance(times, int)
                    and isinstance(sequence, str | bytes | list | tuple)
                    and len(sequence) * times > MAX_VALUE_CHARS
                ):
                    raise _refuse("the repetition")
        elif operator == "+":
            if (
                isinstance(left, str | bytes | list | tuple)
                and isinstance(right, str | bytes | list | tuple)
                and len(left) + len(right) > MAX_VALUE_CHARS
            ):
                raise _refuse("the sum")
        elif operator == "%" and isinstance(left, str | bytes):  # printf-style formatting
            _check_printf(left if isinstance(left, str) else left.decode("latin-1"), right)
        return _bounded(self.binop_table[operator](left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _budget(__context).spend()
        if isinstance(__obj, LoopContext) and args:  # `loop(children)` in a recursive loop
            args = (_counted(__context, args[0]), *args[1:])
        else:
            # str.format reaches here wrapped by the sandbox; the method itself is `__wrapped__`.
            method = getattr(__obj, "__wrapped__", __obj)
            owner = getattr(method, "__self__", None)
            if isinstance(owner, str | bytes | int):
                args = _checked_method_args(owner, getattr(method, "__name__", ""), args, kwargs)
        return _bounded(super().call(__context, __obj, *args, **kwargs))


_TEXT_ENV = _BoundedSandbox(autoescape=False)
_HTML_ENV = _BoundedSandbox(autoescape=True)


# ---- compile and render -------------------------------------------------------------------------


def _problem(err: BaseException) -> TemplateSyntaxProblem:
    """A short message for anything compiling or rendering raised."""
    if isinstance(err, TemplateError):
        message = str(err) or type(err).__name__
    elif isinstance(err, MemoryError):
        message = "the template needs too much memory"
    elif isinstance(err, RecursionError):
        message = "the template nests or recurses too deeply"
    else:
        message = f"{type(err).__name__}: {err}"
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[:MAX_MESSAGE_CHARS] + "…"
    return TemplateSyntaxProblem(message)


@lru_cache(maxsize=SHORT_CACHE_SIZE)
def _compiled_short(source: str, html: bool) -> Template:
    return (_HTML_ENV if html else _TEXT_ENV).from_string(source)


@lru_cache(maxsize=LONG_CACHE_SIZE)
def _compiled_long(source: str, html: bool) -> Template:
    return (_HTML_ENV if html else _TEXT_ENV).from_string(source)


def _compiled(source: str, html: bool) -> Template:
    if len(source) <= LONG_TEMPLATE_CHARS:
        return _compiled_short(source, html)
    if len(source) > MAX_TEMPLATE_CHARS:
        raise TemplateSyntaxProblem(
            f"the template has {len(source)} characters; at most {MAX_TEMPLATE_CHARS} are allowed"
        )
    return _compiled_long(source, html)


def check_syntax(source: str, *, html: bool = False) -> None:
    """Raise TemplateSyntaxProblem for a template that would not render."""
    try:
        _compiled(source, html)
    except TemplateSyntaxProblem:
        raise
    except Exception as err:  # a syntax error, or the parser's recursion on absurd nesting
        raise _problem(err) from err


def check_template(source: str, *, html: bool = False) -> None:
    """`check_syntax`, then what the template reads: only recipient fields, nothing private."""
    check_syntax(source, html=html)
    tree = (_HTML_ENV if html else _TEXT_ENV).parse(source)
    private = _private_access(tree)
    if private is not None:
        raise TemplateSyntaxProblem(f"access to {private!r} is not allowed in templates")
    unknown = sorted(meta.find_undeclared_variables(tree) - set(RECIPIENT_FIELDS))
    if unknown:
        names = ", ".join(repr(n) for n in unknown[:10])
        raise TemplateSyntaxProblem(
            f"unknown variable(s) {names}: a template can read {', '.join(RECIPIENT_FIELDS)} "
            "(and attributes.<key>)"
        )


def _private_access(tree: nodes.Template) -> str | None:
    """The first attribute or constant key starting with `_` that the template reaches for."""
    todo: deque[nodes.Node] = deque([tree])
    while todo:
        node = todo.popleft()
        name: Any = None
        if isinstance(node, nodes.Getattr):
            name = node.attr
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            name = node.arg.value
        elif isinstance(node, nodes.Filter) and node.name == "attr" and node.args:
            first = node.args[0]
            name = first.value if isinstance(first, nodes.Const) else None
        if isinstance(name, str) and name.startswith("_"):
            return name
        todo.extend(node.iter_child_nodes())
    return None


def render(source: str | None, context: dict[str, Any], *, html: bool = False) -> str:
    if not source:
        return ""
    try:
        template = _compiled(source, html)
        ctx = template.new_context(context)
        ctx.eval_ctx.budget = _Budget()  # type: ignore[attr-defined]
        parts: list[str] = []
        size = 0
        for part in template.root_render_func(ctx):
            size += len(part)
            if size > MAX_RENDERED_CHARS:
                raise TemplateSyntaxProblem(f"the rendered text exceeds {MAX_RENDERED_CHARS} characters")
            parts.append(part)
        return "".join(parts)
    except TemplateSyntaxProblem:
        raise
    except Exception as err:  # the template is tenant code: whatever it raises fails this message only
        raise _problem(err) from err
