"""Composition over HTTP: an execution's parent, root, depth and children, its whole tree, a forEach
node's items and the item index of attempts (api/executions.py). Runs are driven in-process by
`drain`, the way workers would."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from dataworkflows.api.app import create_app
from dataworkflows.conditions import ConditionPool
from dataworkflows.config import Settings
from dataworkflows.db import Database
from tests.integration.test_api import assert_problem
from tests.integration.test_runtime import echo, make_runtime, wf
from tests.integration.test_subworkflows import drain


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(Settings(database_url=dsn, max_body_bytes=64 * 1024, max_trigger_depth=16, pool_max_size=25))
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def publish_over_api(client: AsyncTestClient[Any], raw: dict[str, Any]) -> None:
    created = await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw)
    assert created.status_code == 201, created.text


async def execute(client: AsyncTestClient[Any], workflow_id: str, trigger: dict[str, Any]) -> str:
    started = await client.post(f"/api/v1/workflows/{workflow_id}/execute", json={"trigger": trigger})
    assert started.status_code == 202, started.text
    return str(started.json()["executionId"])


async def test_a_subworkflow_shows_its_parent_children_and_tree(
    client: AsyncTestClient[Any],
    db: Database,
    conditions: ConditionPool,
) -> None:
    child = wf("child", echo("say", message="{{ trigger.x }}"))
    call = {
        "id": "call",
        "nodeType": "subworkflow",
        "parameters": {"workflowId": "child", "input": {"x": "{{ trigger.n }}"}},
    }
    await publish_over_api(client, child)
    await publish_over_api(client, wf("parent", call))
    root = await execute(client, "parent", {"n": 7})
    await drain(db, make_runtime(db, conditions))

    parent = (await client.get(f"/api/v1/executions/{root}")).json()
    assert parent["status"] == "Succeeded"
    assert (parent["parentExecutionId"], parent["parentNodeId"], parent["rootExecutionId"], parent["depth"]) == (
        None,
        None,
        root,
        0,
    )
    (kid,) = parent["children"]
    assert (kid["workflowId"], kid["workflowVersion"], kid["parentNodeId"], kid["status"]) == (
        "child",
        1,
        "call",
        "Succeeded",
    )
    assert kid["createdAt"] and kid["startTime"] and kid["endTime"]

    started = (await client.get(f"/api/v1/executions/{kid['id']}")).json()
    assert (started["parentExecutionId"], started["parentNodeId"], started["rootExecutionId"], started["depth"]) == (
        root,
        "call",
        root,
        1,
    )
    assert started["trigger"] == {"x": 7} and started["children"] == []

    # The same tree, whichever of its executions is asked for.
    for member in (root, kid["id"]):
        response = await client.get(f"/api/v1/executions/{member}/tree")
        assert response.status_code == 200, response.text
        tree = response.json()
        assert [(t["id"], t["depth"], t["parentExecutionId"], t["parentNodeId"]) for t in tree] == [
            (root, 0, None, None),
            (kid["id"], 1, root, "call"),
        ]
        assert [(t["workflowId"], t["status"], t["errorCode"]) for t in tree] == [
            ("parent", "Succeeded", None),
            ("child", "Succeeded", None),
        ]
    for unknown in (str(uuid.uuid4()), "not-a-uuid"):
        missing = assert_problem(await client.get(f"/api/v1/executions/{unknown}/tree"), 404)
        assert missing["code"] == "execution_not_found"


async def test_a_foreach_node_lists_its_items_and_item_attempts(
    client: AsyncTestClient[Any],
    db: Database,
    conditions: ConditionPool,
) -> None:
    action = {"actionType": "core.echo", "parameters": {"message": "{{ item }}"}}
    each = {"id": "all", "nodeType": "forEach", "parameters": {"items": [1, 2, 3], "action": action}}
    await publish_over_api(client, wf("each", each, echo("other")))
    execution_id = await execute(client, "each", {})
    await drain(db, make_runtime(db, conditions))
    url = f"/api/v1/executions/{execution_id}"
    assert (await client.get(url)).json()["status"] == "Succeeded"

    response = await client.get(f"{url}/nodes/all/items")
    assert response.status_code == 200, response.text
    items = response.json()
    assert [(i["index"], i["status"], i["attempts"], i["nodeAttempt"]) for i in items] == [
        (0, "Succeeded", 1, 1),
        (1, "Succeeded", 1, 1),
        (2, "Succeeded", 1, 1),
    ]
    assert [i["outputs"]["echo"] for i in items] == [1, 2, 3]
    assert all(i["error"] is None and i["startTime"] and i["endTime"] for i in items)
    # A node without items has none; an unknown execution is a 404.
    assert (await client.get(f"{url}/nodes/other/items")).json() == []
    # A node the run has not is a 404 (it was an empty list, like a node without items).
    missing = assert_problem(await client.get(f"{url}/nodes/no-such-node/items"), 404)
    assert "has no node 'no-such-node'" in missing["detail"], missing
    assert_problem(await client.get(f"/api/v1/executions/{uuid.uuid4()}/nodes/all/items"), 404)

    attempts = (await client.get(f"{url}/actions")).json()
    item_attempts = [a for a in attempts if a["itemIndex"] is not None]
    assert sorted(a["itemIndex"] for a in item_attempts) == [0, 1, 2]
    assert {(a["nodeId"], a["status"]) for a in item_attempts} == {("all", "Succeeded")}
    assert all(a["itemIndex"] is None for a in attempts if a["nodeId"] == "other")


async def test_request_ids_reserved_for_children_are_refused(client: Any) -> None:
    response = await client.post(
        "/api/v1/workflows/whatever/execute", json={"trigger": {}, "requestId": "child:abc:call:1"}
    )
    assert response.status_code == 422, response.text
    assert "must not start with" in response.json()["detail"]


async def test_a_create_that_cannot_publish_leaves_no_draft_behind(client: AsyncTestClient[Any]) -> None:
    """autoActivate with a subworkflow naming no workflow: 422, and no Draft of it (the Draft was
    created before the publish refused it)."""
    raw = {
        "id": "calls-nobody",
        "displayName": "calls nobody",
        "startNode": "s",
        "nodes": [{"id": "s", "nodeType": "subworkflow", "parameters": {"workflowId": "nobody", "input": {}}}],
    }
    refused = await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw)
    assert refused.status_code == 422, refused.text
    assert [e["code"] for e in refused.json()["errors"]] == ["unknown_workflow"]
    assert (await client.get("/api/v1/workflows/calls-nobody")).status_code == 404
    # Without autoActivate the Draft is created, as before (publishing it is refused later).
    assert (await client.post("/api/v1/workflows", json=raw)).status_code == 201
