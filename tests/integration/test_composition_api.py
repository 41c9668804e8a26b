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
from dataworkflows.sqlfiles import QUERIES
from tests.conftest import publish, start
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


async def test_children_and_the_tree_come_in_pages(
    client: AsyncTestClient[Any],
    db: Database,
    conditions: ConditionPool,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """GET /executions/{id} shows the first children and counts them all; …/children and …/tree page
    (a forEach of 10,000 subworkflow items made each answer 3 MB at once)."""
    from dataworkflows.api import executions as executions_api

    monkeypatch.setattr(executions_api, "CHILDREN_SHOWN", 3)
    await publish_over_api(client, wf("leaf", echo("say", message="{{ trigger.i }}")))
    each = {
        "id": "all",
        "nodeType": "forEach",
        "parameters": {"items": [1, 2, 3, 4, 5], "subworkflow": {"workflowId": "leaf", "input": {"i": "{{ item }}"}}},
    }
    await publish_over_api(client, wf("many", each))
    root = await execute(client, "many", {})
    await drain(db, make_runtime(db, conditions))

    shown = (await client.get(f"/api/v1/executions/{root}")).json()
    assert shown["status"] == "Succeeded", shown
    assert (len(shown["children"]), shown["childCount"]) == (3, 5)

    children, pages = await _pages(client, f"/api/v1/executions/{root}/children", {"limit": 2})
    assert (len(children), pages) == (5, 3)
    assert [c["id"] for c in children[:3]] == [c["id"] for c in shown["children"]]
    assert len({c["id"] for c in children}) == 5
    assert [(c["createdAt"], c["id"]) for c in children] == sorted((c["createdAt"], c["id"]) for c in children)
    assert {c["parentNodeId"] for c in children} == {"all"}

    whole = (await client.get(f"/api/v1/executions/{root}/tree")).json()
    assert len(whole) == 6 and whole[0]["id"] == root
    for member in (root, children[-1]["id"]):
        assert await _pages(client, f"/api/v1/executions/{member}/tree", {"limit": 4}) == (whole, 2)

    # A child without children counts none; a cursor of another list, or another run's, is a 400.
    leaf = (await client.get(f"/api/v1/executions/{children[0]['id']}")).json()
    assert (leaf["children"], leaf["childCount"]) == ([], 0)
    first = await client.get(f"/api/v1/executions/{root}/children", params={"limit": 2})
    cursor = first.links["next"]["url"].split("cursor=")[1].split("&")[0]
    for path in (f"/api/v1/executions/{root}/tree", f"/api/v1/executions/{children[0]['id']}/children"):
        refused = assert_problem(await client.get(path, params={"cursor": cursor}), 400)
        assert "cursor" in refused["detail"], refused
    assert_problem(await client.get(f"/api/v1/executions/{root}/tree", params={"cursor": "bm90LWEtY3Vyc29y"}), 400)


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


@pytest.mark.parametrize("request_id", ["child:abc:call:1", "item:abc:all:0:1", "schedule:x", "hook:x:1", "event:7:x"])
async def test_request_ids_reserved_for_the_engines_own_starts_are_refused(client: Any, request_id: str) -> None:
    response = await client.post("/api/v1/workflows/whatever/execute", json={"trigger": {}, "requestId": request_id})
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


async def _pages(client: AsyncTestClient[Any], url: str, params: dict[str, Any]) -> tuple[list[dict[str, Any]], int]:
    """Every page of a list that pages by Link header, following rel="next"; (rows, pages)."""
    rows: list[dict[str, Any]] = []
    response = await client.get(url, params=params)
    pages = 1
    while True:
        assert response.status_code == 200, response.text
        rows.extend(response.json())
        link = response.headers.get("link")
        if link is None:
            return rows, pages
        assert link.endswith('>; rel="next"'), link
        response = await client.get(link[1 : link.index(">")])
        pages += 1
        assert pages < 20, "the pages do not end"


async def _seven_items_run(
    client: AsyncTestClient[Any], db: Database, conditions: ConditionPool, workflow_id: str
) -> str:
    """A run of a forEach over seven echo items and another node, drained: its execution id."""
    action = {"actionType": "core.echo", "parameters": {"message": "{{ item }}"}}
    each = {"id": "all", "nodeType": "forEach", "parameters": {"items": list(range(7)), "action": action}}
    await publish_over_api(client, wf(workflow_id, each, echo("other")))
    execution_id = await execute(client, workflow_id, {})
    await drain(db, make_runtime(db, conditions))
    return execution_id


def _cursor_of(link: str) -> str:
    """The cursor a Link header's next page names."""
    return link[link.index("cursor=") + 7 : link.index(">")].split("&")[0]


async def test_a_runs_attempts_page_by_link_header_in_either_order(
    client: AsyncTestClient[Any],
    db: Database,
    conditions: ConditionPool,
) -> None:
    """GET …/actions returned every attempt at once (a forEach of thousands of items has an attempt each,
    and the console read them every second): it pages now, the body still a bare list."""
    execution_id = await _seven_items_run(client, db, conditions, "each7")
    url = f"/api/v1/executions/{execution_id}/actions"
    whole = await client.get(url)
    assert whole.status_code == 200 and "link" not in whole.headers, whole.headers
    everything = whole.json()
    # The forEach node's own attempt, its seven items' and the other node's.
    assert len(everything) == 9, everything

    def key(a: dict[str, Any]) -> tuple[Any, ...]:
        return (a["nodeId"], a["itemIndex"], a["attempt"])

    rows, pages = await _pages(client, url, {"limit": 3})
    assert pages == 3 and [key(a) for a in rows] == [key(a) for a in everything]
    # The latest first, of one node: its own attempt and its items', each once, the reverse of their order.
    latest, pages = await _pages(client, url, {"limit": 3, "order": "desc", "nodeId": "all"})
    assert pages == 3
    assert [key(a) for a in latest] == [key(a) for a in reversed(everything) if a["nodeId"] == "all"]
    first = await client.get(url, params={"limit": 9})
    assert len(first.json()) == 9 and "link" not in first.headers

    # A cursor no page made, or one of the other order (it would skip or repeat rows), is a 400.
    link = (await client.get(url, params={"limit": 3})).headers["link"]
    cursor = _cursor_of(link)
    wrong_order = await client.get(url, params={"limit": 3, "order": "desc", "cursor": cursor})
    assert assert_problem(wrong_order, 400)["errors"][0]["parameter"] == "cursor", wrong_order.text
    # Nor one of another node filter, or another run (it came back partial, or empty, without a word).
    of_node = await client.get(url, params={"limit": 3, "nodeId": "all", "cursor": cursor})
    assert "this list made" in assert_problem(of_node, 400)["detail"]
    other_run = await execute(client, "each7", {})
    await drain(db, make_runtime(db, conditions))
    other = await client.get(f"/api/v1/executions/{other_run}/actions", params={"limit": 3, "cursor": cursor})
    assert_problem(other, 400)
    for bad in ("garbage", "WyJhc2MiXQ", "W10"):
        assert_problem(await client.get(url, params={"cursor": bad}), 400)
    # A summary leaves out what a timeline does not show (a forEach's own outputs hold every item's).
    summary = (await client.get(url, params={"view": "summary"})).json()
    assert [key(a) for a in summary] == [key(a) for a in everything]
    assert all(a["parameters"] is None and a["outputs"] is None and a["error"] is None for a in summary)
    assert any(a["outputs"] is not None for a in everything)
    assert_problem(await client.get(url, params={"view": "brief"}), 400)
    assert_problem(await client.get(url, params={"order": "sideways"}), 400)
    assert_problem(await client.get(url, params={"limit": 0}), 400)
    missing = assert_problem(await client.get(url, params={"nodeId": "no-such-node"}), 404)
    assert "has no node 'no-such-node'" in missing["detail"], missing


async def test_a_foreach_nodes_items_page_by_link_header(
    client: AsyncTestClient[Any],
    db: Database,
    conditions: ConditionPool,
) -> None:
    """GET …/nodes/{id}/items returned every item at once (10,000 items were 1.8 MB): it pages now, as the
    attempts do, the body still a bare list."""
    execution_id = await _seven_items_run(client, db, conditions, "items7")
    url = f"/api/v1/executions/{execution_id}/nodes/all/items"
    whole = await client.get(url)
    assert whole.status_code == 200 and "link" not in whole.headers, whole.headers
    assert [i["index"] for i in whole.json()] == list(range(7))
    rows, pages = await _pages(client, url, {"limit": 3})
    assert pages == 3 and rows == whole.json()
    exact = await client.get(url, params={"limit": 7})
    assert len(exact.json()) == 7 and "link" not in exact.headers
    link = (await client.get(url, params={"limit": 3})).headers["link"]
    cursor = _cursor_of(link)
    # A cursor of another node's items, or another run's, is a 400 (it would start elsewhere without a word).
    other_node = await client.get(f"/api/v1/executions/{execution_id}/nodes/other/items", params={"cursor": cursor})
    assert "this list made" in assert_problem(other_node, 400)["detail"]
    other_run = await execute(client, "items7", {})
    other = await client.get(f"/api/v1/executions/{other_run}/nodes/all/items", params={"cursor": cursor})
    assert_problem(other, 400)
    for bad in ("garbage", "W10", "WyJpdGVtcyJd"):
        assert_problem(await client.get(url, params={"cursor": bad}), 400)
    assert_problem(await client.get(url, params={"limit": 0}), 400)
    # A node the run has not is still a 404, with a cursor or without.
    assert_problem(await client.get(f"/api/v1/executions/{execution_id}/nodes/nope/items"), 404)


def _plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    return [node, *(n for child in node.get("Plans", []) for n in _plan_nodes(child))]


async def test_a_page_of_children_reads_the_page_not_the_tenants_history(db: Database, postgresql: Any) -> None:
    """A review: GET /executions/{id}'s oldest 100 children (LIMIT 101) of a parent with 2,000 were
    read by walking the tenant's runs in created_at order (executions_tenant_created_idx) and filtering
    on the parent, all 30,000 older runs of the tenant read to fill the page (310,000 at 320,000
    runs). A page now reads about its own rows. (A page of the tree may read the tree's index in
    order, or read the whole tree and sort it: the planner takes a tree for a run or two either way.)"""
    await publish(db, wf("leaf", echo("say")))
    parent = await start(db, "leaf")
    postgresql.autocommit = True
    # 30,000 older runs of the tenant (roots), then the parent's 2,000 children, each in a tree.
    postgresql.execute(
        "INSERT INTO dw.executions (id, tenant_id, workflow_id, workflow_version, request_id, status,"
        " root_execution_id, path, depth, created_at, ended_at)"
        " SELECT g.id, 'default', 'leaf', 1, 'old-' || g.n, 'Succeeded', g.id, ARRAY[g.id], 0,"
        " now() - make_interval(secs => g.n), now()"
        " FROM (SELECT n, gen_random_uuid() AS id FROM generate_series(1, 30000) n) g"
    )
    postgresql.execute(
        "INSERT INTO dw.executions (id, tenant_id, workflow_id, workflow_version, request_id, status,"
        " parent_execution_id, parent_node_id, root_execution_id, path, depth, created_at, ended_at)"
        " SELECT g.id, 'default', 'leaf', 1, 'kid-' || g.n, 'Succeeded', %(p)s, 'all', %(p)s,"
        " ARRAY[%(p)s::uuid, g.id], 1, now() + make_interval(secs => g.n / 1000.0), now()"
        " FROM (SELECT n, gen_random_uuid() AS id FROM generate_series(1, 2000) n) g",
        {"p": parent},
    )
    postgresql.execute("ANALYZE dw.executions")
    kids = await db.executions.children(parent)
    middle = kids[len(kids) // 2]
    cases = [
        ("list_children", {"id": parent, "after_created": None, "after_id": None, "limit": 101}),
        ("list_children", {"id": parent, "after_created": middle.created_at, "after_id": middle.id, "limit": 101}),
    ]
    # As the API reads them: the application role, under the tenant's row-level security.
    postgresql.execute("SET ROLE dataworkflows_app")
    postgresql.execute("SELECT set_config('dw.tenant_id', 'default', false)")
    for name, params in cases:
        text = QUERIES[name].strip().rstrip(";")
        ((plan,),) = postgresql.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + text, params).fetchall()
        nodes = _plan_nodes(plan[0]["Plan"])
        read = sum(n.get("Actual Rows", 0) + n.get("Rows Removed by Filter", 0) for n in nodes if "Relation Name" in n)
        assert read < 1500, (name, params, read, [(n["Node Type"], n.get("Index Name")) for n in nodes])
    postgresql.execute("RESET ROLE")
