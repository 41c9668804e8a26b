"""The OpenAPI document tells the truth: its examples work against the real API, and what the API
answers (workflows, executions, problem details) validates against the schemas it documents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import jsonschema
import pytest
from litestar.testing import AsyncTestClient
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from dataworkflows.api.app import create_app
from dataworkflows.api.openapi_examples import OPERATION_EXAMPLES
from dataworkflows.config import Settings


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(Settings(database_url=dsn))) as test_client:
        yield test_client


def request_examples(operation_id: str) -> list[Any]:
    return [example["value"] for example in OPERATION_EXAMPLES[operation_id]["request"].values()]


async def test_the_examples_work_and_the_answers_match_the_document(client: AsyncTestClient[Any]) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    registry: Registry[Any] = Registry().with_resource(
        "urn:openapi", Resource.from_contents(document, default_specification=DRAFT202012)
    )

    def check(response: Any, status: int, component: str) -> dict[str, Any]:
        assert response.status_code == status, response.text
        schema = {"$ref": f"urn:openapi#/components/schemas/{component}"}
        body: dict[str, Any] = response.json()
        errors = [
            f"{list(e.absolute_path)}: {e.message}"
            for e in jsonschema.Draft202012Validator(schema, registry=registry).iter_errors(body)
        ]
        assert not errors, f"{component}: {errors}"
        return body

    # (Moved from test_api.py, to build the document once.) The execute route documents the caller's
    # header and every problem it may answer; health answers.
    execute = document["paths"]["/api/v1/workflows/{workflow_id}/execute"]["post"]
    assert "X-Principal-Id" in {p["name"] for p in execute["parameters"]}
    assert {"202", "400", "404", "409", "413", "422", "503"} <= set(execute["responses"])
    assert "application/problem+json" in execute["responses"]["422"]["content"]
    assert (await client.get("/health/live")).json() == {"status": "ok", "database": None}
    assert (await client.get("/health/ready")).json()["database"] == "ok"

    headers = {"X-Principal-Id": "alice"}
    for definition in request_examples("createWorkflow"):
        created = await client.post("/api/v1/workflows?autoActivate=true", json=definition, headers=headers)
        check(created, 201, "WorkflowRead")
    (new_version,) = request_examples("updateWorkflow")
    changed = {**new_version, "description": "a second version"}
    check(await client.put("/api/v1/workflows/simple-echo", json=changed, headers=headers), 200, "VersionWritten")
    for body in request_examples("executeWorkflow"):
        started = check(
            await client.post("/api/v1/workflows/simple-echo/execute", json=body, headers=headers),
            202,
            "ExecuteResponse",
        )
    check(await client.get(started["statusUrl"]), 200, "ExecutionRead")
    check(await client.get("/api/v1/executions?workflowId=simple-echo"), 200, "ExecutionList")
    # Problem details, as documented: 404, 409, 422 (with its errors), 400.
    await client.post("/api/v1/workflows/simple-echo/archive", headers=headers)
    check(await client.post("/api/v1/workflows/simple-echo/execute", json={}), 409, "ProblemDetails")
    check(await client.get("/api/v1/workflows/nope"), 404, "ProblemDetails")
    invalid = {**new_version, "id": "broken", "startNode": "nowhere"}
    assert check(await client.post("/api/v1/workflows", json=invalid), 422, "ProblemDetails")["errors"]
    check(await client.get("/api/v1/executions?limit=many"), 400, "ProblemDetails")
