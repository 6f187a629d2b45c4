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

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from functools import lru_cache, wraps
from typing import Any

from jinja2 import Template, TemplateError, Undefined, meta, nodes, pass_context
from jinja2.compiler import CodeGenerator, Frame, optimizeconst
from jinja2.exceptions import SecurityError
from jinja2.runtime import Context, LoopContext
from jinja2.sandbox import ImmutableSandboxedEnvironment

from providers.html_text import html_to_text
from providers.template_bounds import (
    BINOP_CHECKS,
    GUARDED_FILTERS,
    MAX_VALUE_CHARS,
    PLAIN,
    bounded,
    checked_method_args,
    guard_filter,
    measure,
    refuse,
)

MAX_TEMPLATE_CHARS = 500_000
MAX_RENDERED_CHARS = 1_000_000
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
        raise refuse("the block's output is too long")
    return "".join(parts)


def _finalize(value: Any) -> Any:
    """Every `{{ value }}` before it is written: a nested list or dict is measured first."""
    if type(value) not in PLAIN and not isinstance(value, str) and measure(value) > MAX_VALUE_CHARS:
        raise refuse("the value to write")
    return value


class _BoundedSandbox(ImmutableSandboxedEnvironment):
    code_generator_class = _BoundedCodeGenerator
    intercepted_binops = frozenset({"*", "**", "+", "%"})
    concat = staticmethod(_concat)

    def __init__(self, *, autoescape: bool) -> None:
        super().__init__(autoescape=autoescape, undefined=Undefined, finalize=_finalize)
        self.globals.clear()  # range, dict, lipsum, cycler, joiner, namespace: none of them
        for name in GUARDED_FILTERS:
            self.filters[name] = guard_filter(name, self.filters[name])
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
        if measure(parts) > MAX_VALUE_CHARS:
            raise refuse("the joined text")
        return parts

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        BINOP_CHECKS[operator](left, right)
        return bounded(self.binop_table[operator](left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _budget(__context).spend()
        if isinstance(__obj, LoopContext) and args:  # `loop(children)` in a recursive loop
            args = (_counted(__context, args[0]), *args[1:])
        else:
            # str.format reaches here wrapped by the sandbox; the method itself is `__wrapped__`.
            method = getattr(__obj, "__wrapped__", __obj)
            owner = getattr(method, "__self__", None)
            if isinstance(owner, str | bytes | int):
                args = checked_method_args(owner, getattr(method, "__name__", ""), args, kwargs)
        return bounded(super().call(__context, __obj, *args, **kwargs))


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
