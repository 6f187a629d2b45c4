"""The template sandbox rests on Jinja internals: an upgrade must be a decision, not an accident.

`providers.rendering._BoundedCodeGenerator` subclasses Jinja's `CodeGenerator` and rewrites two of
its methods (`visit_Template` to count every loop, `visit_Concat` to measure `~` before joining).
Those are private: a new Jinja may change them, and the copy would then silently miss what the new
code does. pyproject.toml pins Jinja to the minor version this was written against, and this test
fails when the methods the subclass depends on differ from the ones it was reviewed against.
Upgrading: read the new methods, port the changes into the subclass, then record the new digests.
"""

import hashlib
import inspect

import jinja2
from jinja2.compiler import CodeGenerator

REVIEWED = {
    "visit_Concat": "be4721533d19611d",
    "visit_Template": "c43af1aeb714bab1",
}


def test_jinja_is_the_minor_version_the_sandbox_was_written_for() -> None:
    assert jinja2.__version__.startswith("3.1."), (
        f"Jinja {jinja2.__version__}: the sandbox (providers.rendering) was written for 3.1"
    )


def test_the_code_generator_methods_the_sandbox_overrides_are_the_reviewed_ones() -> None:
    found = {
        name: hashlib.sha256(inspect.getsource(getattr(CodeGenerator, name)).encode()).hexdigest()[:16]
        for name in REVIEWED
    }
    assert found == REVIEWED, (
        "Jinja's CodeGenerator changed under providers.rendering._BoundedCodeGenerator: review the new "
        f"methods, port them into the subclass, then record the new digests ({found})"
    )
