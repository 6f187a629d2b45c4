"""The shape of the code, checked from its syntax trees: data access lives in `db/`, and the layers
import only downwards (docs/architecture.md).

- SQL is written in `db/` only: no module elsewhere holds SQL text (a string starting like a
  statement), calls `text(...)`, or imports SQLAlchemy's statement builders. Routes and activities
  call the repository functions of `db/`, which return typed rows.
- Nothing outside `tests/` imports from `tests` (benchmarks and the dev stack included): code that
  ships cannot depend on code that does not.
- `db/` imports no layer above it (providers, the API, activities, workflows, tooling).
"""

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIPPED_DIRS = {".venv", "tests", "migrations", ".git", "build", "dist"}

# A string that starts like a statement: the keyword and the word that must follow it, so that
# prose ("DELETE of a DRAFT campaign", "Update Campaign") is not taken for SQL.
SQL_START = re.compile(
    r"^\s*(SELECT\s|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s|WITH\s+\w+\s+AS\s*\()", re.IGNORECASE
)
STATEMENT_BUILDERS = {"text", "select", "insert", "update", "delete", "literal_column"}
SQLALCHEMY_MODULES = (
    "sqlalchemy",
    "sqlalchemy.dialects.postgresql",
    "sqlalchemy.sql",
    "sqlalchemy.sql.expression",
)


def python_files(under: Path = ROOT) -> Iterator[Path]:
    for path in sorted(under.rglob("*.py")):
        if not SKIPPED_DIRS.intersection(path.relative_to(ROOT).parts[:-1]):
            yield path


def name(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def sql_in(tree: ast.AST) -> list[str]:
    """What in a module is SQL: statement-like strings, `text(...)` calls, imported statement builders."""
    builders = imported_builders(tree)
    found = [f"line {line}: imports sqlalchemy's {builder}" for line, builder in builders.values()]
    for node in ast.walk(tree):
        text = sql_text(node)
        if text is not None:
            found.append(f"line {node.lineno}: SQL text {text.strip()[:40]!r}")  # type: ignore[attr-defined]
        elif isinstance(node, ast.Call) and (called := builder_called(node.func, builders)) is not None:
            found.append(f"line {node.lineno}: calls {called}(...)")
    return found


def imported_builders(tree: ast.AST) -> dict[str, tuple[int, str]]:
    """The local names of SQLAlchemy's statement builders a module imports: (line, builder)."""
    return {
        alias.asname or alias.name: (node.lineno, alias.name)
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module in SQLALCHEMY_MODULES
        for alias in node.names
        if alias.name in STATEMENT_BUILDERS
    }


def sql_text(node: ast.AST) -> str | None:
    """The text of a string (or the literal start of an f-string) that starts like a statement."""
    if isinstance(node, ast.JoinedStr) and node.values:
        node = node.values[0]
    if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL_START.match(node.value):
        return node.value
    return None


def builder_called(func: ast.expr, builders: dict[str, tuple[int, str]]) -> str | None:
    """`text`, `sqlalchemy.update`...: the statement builder a call calls, if it calls one."""
    if isinstance(func, ast.Name) and func.id in builders:
        return func.id
    if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
        if func.value.id in ("sqlalchemy", "sa") and func.attr in STATEMENT_BUILDERS:
            return f"{func.value.id}.{func.attr}"
    return None


def sql_outside_db() -> dict[str, list[str]]:
    return {
        name(path): found
        for path in python_files()
        if not name(path).startswith("db/") and (found := sql_in(ast.parse(path.read_text())))
    }


def imported_modules(tree: ast.AST) -> Iterator[tuple[int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.lineno, node.module


def test_sql_lives_in_db_only() -> None:
    """No exceptions: the benchmarks' bulk seeds live in db.bench_seed too."""
    assert sql_outside_db() == {}, "move these statements into a repository function in db/"


def test_the_sql_check_sees_each_form_of_sql() -> None:
    """The check itself: each form is found, and prose that merely starts with a keyword is not."""
    source = '''
from sqlalchemy import select, text as sql_text
Q = "SELECT 1"
R = f"UPDATE customers SET email = {x}"
W = """
    WITH t AS (SELECT 1) SELECT * FROM t"""
s = sql_text("DELETE FROM suppressions")
u = sqlalchemy.update(table)
doc = "DELETE of a DRAFT campaign: the workflow ends"
title = "Update Campaign"
body = response.text()
'''
    lines = {int(f.split(":", 1)[0].removeprefix("line ")) for f in sql_in(ast.parse(source))}
    assert lines == {2, 3, 4, 5, 7, 8}


def test_nothing_outside_tests_imports_tests() -> None:
    offenders = [
        f"{name(path)}:{line} imports {module}"
        for path in python_files()
        for line, module in imported_modules(ast.parse(path.read_text()))
        if module == "tests" or module.startswith("tests.")
    ]
    assert offenders == []


def test_db_imports_no_layer_above_it() -> None:
    above = ("providers", "api", "activities", "workflows", "devstack", "bench", "tests", "worker")
    offenders = [
        f"{name(path)}:{line} imports {module}"
        for path in python_files(ROOT / "db")
        for line, module in imported_modules(ast.parse(path.read_text()))
        if module.split(".")[0] in above
    ]
    assert offenders == []


def test_the_derived_text_markers_agree_with_the_renderer() -> None:
    """db.template_versions spells the markers of a text part derived from html itself (it may not
    import the renderer); the renderer must install exactly the filter they name."""
    from db import template_versions
    from providers import rendering

    assert template_versions.DERIVED_TEXT_OPEN == rendering.DERIVED_TEXT_OPEN
    assert template_versions.DERIVED_TEXT_CLOSE == rendering.DERIVED_TEXT_CLOSE
