"""The lists that returned every row, unbounded, a page at a time: a workflow's versions (every PUT
adds one), its triggers and every trigger, the workflow templates and the connections. The body
stays a bare list; a cut page says where the next one is in a Link header (rel="next"), as the
approvals' and the events' do, with the request's filters kept; a cursor no page gave is a 400."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from litestar.testing import AsyncTestClient

from dataworkflows.api.app import create_app
from dataworkflows.api.paging import encode_cursor
from dataworkflows.config import Settings
from dataworkflows.credentials import Cipher
from dataworkflows.db import Database
from tests.conftest import FIXTURES
from tests.integration.test_api import assert_problem
from tests.integration.test_composition_api import publish_over_api
from tests.integration.test_control_api import sql
from tests.integration.test_runtime import echo, wf

KEY = Cipher.generate_key()
ROWS = 5
PAGE = 2


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(Settings(database_url=dsn, credentials_key=KEY))) as test_client:
        yield test_client


async def pages(client: AsyncTestClient[Any], url: str) -> list[list[dict[str, Any]]]:
    """Every page, following the Link headers from `url` (a bare list each); the Link is there on
    every page but the last."""
    found: list[list[dict[str, Any]]] = []
    following: str | None = url
    while following is not None:
        answer = await client.get(following)
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert isinstance(body, list), "the body is still a bare list"
        found.append(body)
        following = answer.links.get("next", {}).get("url")
        if following is not None:
            assert answer.headers["link"].endswith('>; rel="next"')
            assert parse_qs(urlsplit(following).query)["limit"] == [str(PAGE)], following
            assert len(body) == PAGE, "only a full page has a next one"
        assert len(found) <= ROWS + 1, "the links go round in a circle"
    return found


async def assert_pages(client: AsyncTestClient[Any], path: str, key: str, expected: list[Any]) -> None:
    """A list of ROWS rows, read PAGE at a time: every row once, in the whole list's order."""
    assert len(expected) == ROWS
    joined = "&" if "?" in path else "?"
    walked = await pages(client, f"{path}{joined}limit={PAGE}")
    assert [len(page) for page in walked] == [2, 2, 1]
    seen = [row[key] for page in walked for row in page]
    assert seen == expected, "every row exactly once, in the list's order"
    whole = await client.get(path)
    assert [row[key] for row in whole.json()] == expected and "link" not in whole.headers, "1000 by default"
    # A page that holds the last row exactly says nothing more.
    exact = await client.get(f"{path}{joined}limit={ROWS}")
    assert len(exact.json()) == ROWS and "link" not in exact.headers


async def assert_cursor_refused(client: AsyncTestClient[Any], path: str, *cursors: str) -> None:
    for cursor in ("!!!", encode_cursor({"a": 1}), *cursors):
        body = assert_problem(await client.get(path, params={"cursor": cursor}), 400)
        assert [entry["parameter"] for entry in body["errors"]] == ["cursor"], body


async def test_a_workflows_versions_page_newest_first(client: AsyncTestClient[Any]) -> None:
    """Every PUT adds a version, and GET …/versions answered all of them."""
    await publish_over_api(client, wf("paged", echo("e")))
    for n in range(2, ROWS + 1):
        changed = await client.put("/api/v1/workflows/paged", json=wf("paged", echo("e", message=f"v{n}")))
        assert changed.status_code == 200, changed.text
    await assert_pages(client, "/api/v1/workflows/paged/versions", "version", [5, 4, 3, 2, 1])
    # A version cursor names a version: not a name, nor one past a PostgreSQL integer.
    await assert_cursor_refused(
        client, "/api/v1/workflows/paged/versions", encode_cursor("v1"), encode_cursor(0), encode_cursor(2**31)
    )


async def test_a_workflows_triggers_page_oldest_first_keeping_the_kind(
    client: AsyncTestClient[Any], db: Database
) -> None:
    await publish_over_api(client, wf("hooked", echo("e")))
    await publish_over_api(client, wf("other", echo("e")))
    made = []
    for n in range(ROWS):
        hook = {"kind": "webhook", "name": f"hook-{n}", "config": {"signature": "none"}}
        created = await client.post("/api/v1/workflows/hooked/triggers", json=hook)
        assert created.status_code == 201, created.text
        made.append(created.json()["id"])
    schedule = {"kind": "schedule", "name": "nightly", "config": {"cron": "0 2 * * *"}}
    assert (await client.post("/api/v1/workflows/hooked/triggers", json=schedule)).status_code == 201
    other = {"kind": "webhook", "name": "elsewhere", "config": {"signature": "none"}}
    assert (await client.post("/api/v1/workflows/other/triggers", json=other)).status_code == 201
    # Two at the same instant: the id orders them.
    same = "UPDATE dw.triggers SET created_at = (SELECT min(created_at) FROM dw.triggers) WHERE id = ANY(%s::uuid[])"
    await sql(db, same, made[-2:])
    rows = await sql(db, "SELECT id::text FROM dw.triggers WHERE id = ANY(%s::uuid[]) ORDER BY created_at, id", made)
    oldest_first = [row[0] for row in rows]
    await assert_pages(client, "/api/v1/workflows/hooked/triggers?kind=webhook", "id", oldest_first)
    first = await client.get("/api/v1/workflows/hooked/triggers", params={"kind": "webhook", "limit": PAGE})
    assert "kind=webhook" in first.links["next"]["url"], "the filter stays in the link"
    await assert_cursor_refused(client, "/api/v1/workflows/hooked/triggers", encode_cursor(["x", "y", "z"]))


async def test_every_trigger_pages_by_workflow_kind_and_name(client: AsyncTestClient[Any]) -> None:
    for workflow_id in ("wf-b", "wf-a"):
        await publish_over_api(client, wf(workflow_id, echo("e")))
    made = [("wf-b", "webhook", "zeta"), ("wf-a", "webhook", "beta"), ("wf-a", "schedule", "gamma")]
    made += [("wf-b", "schedule", "alpha"), ("wf-a", "webhook", "alpha")]
    for workflow_id, kind, name in made:
        config = {"cron": "@daily"} if kind == "schedule" else {"signature": "none"}
        body = {"kind": kind, "name": name, "config": config}
        assert (await client.post(f"/api/v1/workflows/{workflow_id}/triggers", json=body)).status_code == 201
    listed = (await client.get("/api/v1/triggers")).json()
    assert [(t["workflowId"], t["kind"], t["name"]) for t in listed] == sorted(made)
    await assert_pages(client, "/api/v1/triggers", "id", [t["id"] for t in listed])
    hooks = await pages(client, f"/api/v1/triggers?kind=webhook&limit={PAGE}")
    assert [[t["name"] for t in page] for page in hooks] == [["alpha", "beta"], ["zeta"]], "the kind in the link"
    await assert_cursor_refused(client, "/api/v1/triggers", encode_cursor(["wf-a", "webhook"]), encode_cursor("wf-a"))


async def test_workflow_templates_page_by_id_each_once(client: AsyncTestClient[Any]) -> None:
    template = json.loads((FIXTURES / "templates" / "approval-workflow-template.json").read_text())
    ids = [f"tpl-{n}" for n in (3, 1, 4, 0, 2)]
    for template_id in ids:
        created = await client.post("/api/v1/workflow-templates", json={**template, "id": template_id})
        assert created.status_code == 201, created.text
    # A second version: the list holds each template once, at its latest.
    again = await client.post("/api/v1/workflow-templates", json={**template, "id": "tpl-1", "description": "v2"})
    assert again.json()["version"] == 2
    await assert_pages(client, "/api/v1/workflow-templates", "id", sorted(ids))
    latest = {t["id"]: t["version"] for t in (await client.get("/api/v1/workflow-templates")).json()}
    assert latest["tpl-1"] == 2
    await assert_cursor_refused(client, "/api/v1/workflow-templates", encode_cursor(["tpl-1"]), encode_cursor(1))


async def test_connections_page_by_name(client: AsyncTestClient[Any]) -> None:
    names = ["crm", "alpha", "zeta", "billing", "mail"]
    for name in names:
        stored = await client.put(f"/api/v1/connections/{name}", json={"kind": "slack", "secret": "xoxb-1"})
        assert stored.status_code == 200, stored.text
    await assert_pages(client, "/api/v1/connections", "name", sorted(names))
    await assert_cursor_refused(client, "/api/v1/connections", encode_cursor(["crm"]), encode_cursor(7))


async def test_a_cursor_is_refused_by_another_list_workflow_or_kind(client: AsyncTestClient[Any]) -> None:
    """A cursor of one list was taken by another, of one workflow for another's list, of one kind for
    the other: the page started somewhere else (here, after the first workflow's hooks), and rows were
    skipped without a word."""
    for workflow_id in ("wf-a", "wf-b"):
        await publish_over_api(client, wf(workflow_id, echo("e")))
        for n in range(3):
            hook = {"kind": "webhook", "name": f"{workflow_id}-hook-{n}", "config": {"signature": "none"}}
            assert (await client.post(f"/api/v1/workflows/{workflow_id}/triggers", json=hook)).status_code == 201
    first = await client.get("/api/v1/workflows/wf-a/triggers", params={"kind": "webhook", "limit": 1})
    cursor = parse_qs(urlsplit(first.links["next"]["url"]).query)["cursor"][0]
    # Its own list takes it.
    rest = await client.get("/api/v1/workflows/wf-a/triggers", params={"kind": "webhook", "cursor": cursor})
    assert [t["name"] for t in rest.json()] == ["wf-a-hook-1", "wf-a-hook-2"]
    for path, params in [
        ("/api/v1/workflows/wf-b/triggers", {"kind": "webhook"}),
        ("/api/v1/workflows/wf-a/triggers", {"kind": "schedule"}),
        ("/api/v1/workflows/wf-a/triggers", {}),
        ("/api/v1/triggers", {"kind": "webhook"}),
        ("/api/v1/approvals", {}),
        ("/api/v1/workflows/wf-a/versions", {}),
        ("/api/v1/workflow-templates", {}),
        ("/api/v1/connections", {}),
    ]:
        refused = await client.get(path, params={**params, "cursor": cursor})
        body = assert_problem(refused, 400)
        assert [entry["parameter"] for entry in body["errors"]] == ["cursor"], (path, body)
    everything = await client.get("/api/v1/triggers", params={"kind": "webhook", "limit": 1})
    other_cursor = parse_qs(urlsplit(everything.links["next"]["url"]).query)["cursor"][0]
    refused = await client.get("/api/v1/triggers", params={"kind": "schedule", "cursor": other_cursor})
    assert "this list made" in assert_problem(refused, 400)["detail"]
    # A JSON null is no page's cursor (it read as no cursor: the first page).
    assert_problem(await client.get("/api/v1/connections", params={"cursor": encode_cursor(None)}), 400)


async def test_a_document_templates_versions_page_newest_first(client: AsyncTestClient[Any]) -> None:
    """Every PUT of another text adds a version, and GET …/versions answered all of them."""
    assert (await client.post("/api/v1/template-sets", json={"id": "briefs"})).status_code == 201
    body = {"set": "briefs", "name": "main", "format": "text", "body": "v1 {{ who }}"}
    assert (await client.post("/api/v1/templates", json=body)).status_code == 201
    for n in range(2, ROWS + 1):
        changed = await client.put("/api/v1/templates/briefs/main", json={"format": "text", "body": f"v{n}"})
        assert changed.status_code == 200, changed.text
    await assert_pages(client, "/api/v1/templates/briefs/main/versions", "version", [5, 4, 3, 2, 1])
    path = "/api/v1/templates/briefs/main/versions"
    await assert_cursor_refused(client, path, encode_cursor(3), encode_cursor(["template-versions", "briefs", "x", 3]))
    # Past the last page, an empty page; an unknown template, a 404 with or without a cursor.
    last = encode_cursor(["template-versions", "briefs", "main", 1])
    past = await client.get(path, params={"cursor": last})
    assert past.status_code == 200 and past.json() == [], past.text
    assert_problem(await client.get("/api/v1/templates/briefs/nope/versions"), 404)
    nope = encode_cursor(["template-versions", "briefs", "nope", 1])
    assert_problem(await client.get("/api/v1/templates/briefs/nope/versions", params={"cursor": nope}), 404)


async def test_a_body_cursor_is_refused_by_another_list_or_filter(client: AsyncTestClient[Any]) -> None:
    """The lists that give their next page as `nextCursor` in the body (executions, workflows,
    dead letters, template sets and templates) took a cursor of another filter, or of another list
    whose key had the same shape, and started somewhere else without a word."""
    for workflow_id in ("wf-a", "wf-b"):
        await publish_over_api(client, wf(workflow_id, echo("e")))
        for n in range(3):
            started = await client.post(f"/api/v1/workflows/{workflow_id}/execute", json={"trigger": {"n": n}})
            assert started.status_code == 202, started.text
    first = (await client.get("/api/v1/executions", params={"workflowId": "wf-a", "limit": 1})).json()
    cursor = first["nextCursor"]
    # Its own list and filters take it.
    rest = await client.get("/api/v1/executions", params={"workflowId": "wf-a", "cursor": cursor})
    assert rest.status_code == 200 and len(rest.json()["items"]) == 2, rest.text
    assert {item["workflowId"] for item in rest.json()["items"]} == {"wf-a"}
    for path, params in [
        ("/api/v1/executions", {"workflowId": "wf-b"}),
        ("/api/v1/executions", {}),
        ("/api/v1/executions", {"workflowId": "wf-a", "status": "Pending"}),
        ("/api/v1/approvals", {}),
        ("/api/v1/dead-letters", {}),
    ]:
        body = assert_problem(await client.get(path, params={**params, "cursor": cursor}), 400)
        assert [entry["parameter"] for entry in body["errors"]] == ["cursor"], (path, params, body)
    # A workflows cursor is a workflow id: the template sets' list (ids too) and another status refuse it.
    workflows = (await client.get("/api/v1/workflows", params={"limit": 1})).json()
    assert workflows["nextCursor"] is not None
    nxt = await client.get("/api/v1/workflows", params={"cursor": workflows["nextCursor"]})
    assert [w["id"] for w in nxt.json()["items"]] == ["wf-b"], nxt.text
    for path, params in [("/api/v1/workflows", {"status": "Active"}), ("/api/v1/template-sets", {})]:
        refused = await client.get(path, params={**params, "cursor": workflows["nextCursor"]})
        assert "this list made" in assert_problem(refused, 400)["detail"], (path, params)
