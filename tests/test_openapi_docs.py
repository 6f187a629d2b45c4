"""The OpenAPI document as a reader of `/docs` sees it (issue 9): a description, tags with theirs,
the seed's examples on every seed endpoint, and every example valid for the schema it illustrates.

An example is checked three ways: against the document's own JSON schema (with unknown properties
refused, so a misspelt field fails), by the pydantic model the route really reads or answers with,
and, for answers, by a round trip through that model (what the API would serialise is exactly the
example). When the seed file is at hand (`/work/shared/spec`), its JSON blocks must also be found,
value for value, in the examples of their endpoints.
"""

import copy
import json
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from fastapi import FastAPI
from pydantic import TypeAdapter

from api.errors import api_routes
from api.main import create_app
from api.openapi_docs import TAGS
from api.openapi_operations import SEED_OPERATIONS

SEED_FILE = Path("/work/shared/spec/campaigns-api.seed.txt")
JSON = "application/json"

# The seed's endpoints by its own titles, with what each example must show.
SEED_ENDPOINTS: dict[str, tuple[str, str, bool, str]] = {
    # title: (method, path, has a request example, status of the response example)
    "List Campaigns": ("get", "/campaigns", False, "200"),
    "Get Campaign": ("get", "/campaigns/{campaign_id}", False, "200"),
    "Create Campaign": ("post", "/campaigns", True, "201"),
    "Update Campaign": ("patch", "/campaigns/{campaign_id}", True, "200"),
    "Schedule Campaign": ("post", "/campaigns/{campaign_id}/schedule", True, "200"),
    "Execute Campaign Immediately": ("post", "/campaigns/{campaign_id}/execute", False, "200"),
    "Pause Campaign": ("post", "/campaigns/{campaign_id}/pause", False, "200"),
    "Resume Campaign": ("post", "/campaigns/{campaign_id}/resume", False, "200"),
    "Cancel Campaign": ("post", "/campaigns/{campaign_id}/cancel", False, "200"),
    "Get Campaign Stats": ("get", "/campaigns/{campaign_id}/stats", False, "200"),
    "Get Campaign Interactions": ("get", "/campaigns/{campaign_id}/interactions", False, "200"),
}


@pytest.fixture(scope="module")
def app() -> FastAPI:
    return create_app()


@pytest.fixture(scope="module")
def document(app: FastAPI) -> dict[str, Any]:
    schema: dict[str, Any] = app.openapi()
    return schema


def strict(components: dict[str, Any]) -> dict[str, Any]:
    """The components with every object that does not say otherwise closed to unknown properties."""
    closed = copy.deepcopy(components)

    def close(node: Any) -> None:
        if isinstance(node, dict):
            if "properties" in node and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(closed)
    return closed


def schema_errors(document: dict[str, Any], schema: dict[str, Any], value: Any) -> list[str]:
    root = {**schema, "components": strict(document["components"])}
    validator = jsonschema_rs.validator_for(root)
    return [f"{e.instance_path}: {e.message}" for e in validator.iter_errors(value)]


def examples_of(document: dict[str, Any]) -> list[tuple[str, dict[str, Any], str, Any]]:
    """Every example in the document: (where, schema, name, value)."""
    found: list[tuple[str, dict[str, Any], str, Any]] = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            where = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", ()):
                if "example" in parameter:
                    found.append(
                        (f"{where} ?{parameter['name']}", parameter["schema"], "", parameter["example"])
                    )
            media = operation.get("requestBody", {}).get("content", {}).get(JSON, {})
            for name, example in media.get("examples", {}).items():
                found.append((f"{where} request", media["schema"], name, example["value"]))
            for status, response in operation.get("responses", {}).items():
                media = response.get("content", {}).get(JSON, {})
                for name, example in media.get("examples", {}).items():
                    found.append((f"{where} {status}", media["schema"], name, example["value"]))
    return found


def test_the_document_describes_the_api_and_every_tag(document: dict[str, Any]) -> None:
    assert "Campaign lifecycle management, scheduling, and statistics." in document["info"]["description"]
    assert "Bearer" in document["info"]["description"]
    used = {tag for ops in document["paths"].values() for op in ops.values() for tag in op.get("tags", ())}
    tags = {tag["name"]: tag["description"] for tag in document["tags"]}
    assert used == set(tags), "every tag in use is described, and only those"
    assert all(len(text) > 30 for text in tags.values())
    assert [t["name"] for t in document["tags"]] == [t["name"] for t in TAGS if t["name"] in used]


def test_every_seed_endpoint_has_the_seeds_title_and_examples(document: dict[str, Any]) -> None:
    assert {(m, p) for m, p, _, _ in SEED_ENDPOINTS.values()} == set(SEED_OPERATIONS)
    for title, (method, path, has_request, status) in SEED_ENDPOINTS.items():
        operation = document["paths"][path][method]
        assert operation["summary"] == title
        assert operation["description"]
        if has_request:
            examples = operation["requestBody"]["content"][JSON]["examples"]
            assert examples["seed"]["value"], f"{title}: no request example"
        examples = operation["responses"][status]["content"][JSON]["examples"]
        assert examples["seed"]["value"], f"{title}: no {status} example"


def test_every_example_validates_against_its_schema(document: dict[str, Any]) -> None:
    found = examples_of(document)
    assert len(found) >= 25
    problems = [
        f"{where} {name}: {error}"
        for where, schema, name, value in found
        for error in schema_errors(document, schema, value)
    ]
    assert not problems, "\n".join(problems)


def test_the_strict_check_refuses_a_misspelt_field(document: dict[str, Any]) -> None:
    operation = document["paths"]["/campaigns/{campaign_id}"]["get"]
    media = operation["responses"]["200"]["content"][JSON]
    good = media["examples"]["seed"]["value"]
    assert not schema_errors(document, media["schema"], good)
    assert schema_errors(document, media["schema"], {**good, "sentCuont": 0})
    assert schema_errors(document, media["schema"], {k: v for k, v in good.items() if k != "sentCount"})


def test_every_example_is_what_the_routes_models_read_and_answer(
    app: FastAPI, document: dict[str, Any]
) -> None:
    checked = 0
    for route in api_routes(app):
        for method in route.methods or ():
            operation = document["paths"].get(route.path, {}).get(method.lower())
            if operation is None:
                continue
            where = f"{method} {route.path}"
            media = operation.get("requestBody", {}).get("content", {}).get(JSON, {})
            if media.get("examples"):
                body = None if route.body_field is None else route.body_field.field_info.annotation
                assert body is not None, f"{where}: request examples, but no body model"
                reads: TypeAdapter[Any] = TypeAdapter(body)
                for name, example in media["examples"].items():
                    try:
                        reads.validate_python(example["value"])
                    except ValueError as err:
                        raise AssertionError(f"{where} request {name}: {err}") from None
                    checked += 1
            for status, response in operation.get("responses", {}).items():
                examples = response.get("content", {}).get(JSON, {}).get("examples", {})
                if not examples:
                    continue
                answers: TypeAdapter[Any] = TypeAdapter(route.response_model)
                for name, example in examples.items():
                    model = answers.validate_python(example["value"])
                    dumped = answers.dump_python(model, mode="json", by_alias=True)
                    assert dumped == example["value"], (
                        f"{where} {status} {name}: not what the API answers (a new field? add it to the "
                        "example in api/openapi_docs.py)"
                    )
                    checked += 1
    assert checked >= 20


async def test_docs_page_and_document_are_served(app: FastAPI) -> None:
    # ASGITransport runs no lifespan: no database or Temporal connection is made.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        page = await client.get("/docs")
        served = await client.get("/openapi.json")
    assert page.status_code == 200 and "swagger-ui" in page.text
    assert served.status_code == 200 and served.json()["tags"][0]["name"] == "campaigns"


# ---- the seed's own text --------------------------------------------------------------------------


def seed_blocks(text: str) -> list[tuple[str, Any]]:
    """The seed's JSON blocks, each with the title it stands under."""
    titles = {*SEED_ENDPOINTS, "ONE_TIME", "RECURRING", "TRIGGERED"}
    blocks: list[tuple[str, Any]] = []
    title, depth = "", 0
    lines: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if not lines and stripped in titles:
            title = stripped
        if not lines and not stripped.startswith("{"):
            continue
        lines.append(line)
        depth += line.count("{") + line.count("[") - line.count("}") - line.count("]")
        if depth == 0:
            blocks.append((title, json.loads("\n".join(lines))))
            lines = []
    return blocks


def contains(example: Any, seed: Any) -> bool:
    """`seed` is found in `example`: every value the seed shows, the example shows too."""
    if isinstance(seed, dict):
        return isinstance(example, dict) and all(
            k in example and contains(example[k], v) for k, v in seed.items()
        )
    if isinstance(seed, list):
        return isinstance(example, list) and len(example) == len(seed) and all(map(contains, example, seed))
    return bool(example == seed and type(example) is type(seed))


@pytest.mark.skipif(not SEED_FILE.exists(), reason="the seed file lives beside the project, not in it")
def test_the_examples_hold_the_seeds_values(document: dict[str, Any]) -> None:
    blocks = seed_blocks(SEED_FILE.read_text())
    assert len(blocks) == 15  # 12 of the endpoints, 3 of the campaign types
    for title, block in blocks:
        method, path, _, _ = SEED_ENDPOINTS.get(title) or ("post", "/campaigns", True, "201")
        operation = document["paths"][path][method]
        values = [
            example["value"]
            for media in [
                operation.get("requestBody", {}).get("content", {}).get(JSON, {}),
                *(r.get("content", {}).get(JSON, {}) for r in operation["responses"].values()),
            ]
            for example in media.get("examples", {}).values()
        ]
        assert any(contains(value, block) for value in values), (
            f"{title}: the seed's {block} is in no example"
        )


def test_seed_blocks_are_read_whole() -> None:
    text = (
        'Get Campaign\nGET /x\nResponse: 200 OK\n{\n"a": [1,\n2],\n"b": {"c": null}\n}\n'
        'Pause Campaign\n{"id": "x"}\n'
    )
    assert seed_blocks(text) == [
        ("Get Campaign", {"a": [1, 2], "b": {"c": None}}),
        ("Pause Campaign", {"id": "x"}),
    ]
    assert contains({"a": 1, "b": 2}, {"a": 1}) and not contains({"a": 1.0}, {"a": 1})
    assert not contains({"a": [1, 2]}, {"a": [1]})
