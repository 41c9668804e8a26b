"""Every query parameter of the API refuses a value it does not take the same way: 400 problem
details whose errors[] name the parameter, whether Litestar's parsing or a handler's check finds
it; an unknown enum value is refused rather than matching nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from dataworkflows.api.app import create_app
from dataworkflows.config import Settings
from dataworkflows.db import Database
from dataworkflows.statuses import DeadLetterKind
from tests.conftest import load_fixture
from tests.integration.test_api import assert_problem
from tests.integration.test_control_api import sql

EXECUTION = "00000000-0000-4000-8000-000000000001"
TRIGGER = "00000000-0000-4000-8000-000000000002"

# (method, path, parameter, a value it does not take): every query parameter that takes less than
# any string. A test below fails for a documented query parameter missing here and from FREE_TEXT.
BAD_VALUES = [
    ("GET", "/api/v1/workflows", "status", "Paused"),
    ("GET", "/api/v1/workflows", "cursor", "!!!"),
    ("GET", "/api/v1/workflows", "limit", "abc"),
    ("POST", "/api/v1/workflows", "autoActivate", "maybe"),
    ("POST", "/api/v1/workflows", "maxConcurrentExecutions", "0"),
    ("POST", "/api/v1/workflows/simple-echo/publish", "version", "0"),
    ("GET", "/api/v1/workflows/simple-echo/versions", "cursor", "WyJ4Il0"),  # ["x"]: not a version
    ("GET", "/api/v1/workflows/simple-echo/versions", "limit", "1001"),
    ("GET", "/api/v1/workflow-templates", "cursor", "!!!"),
    ("GET", "/api/v1/workflow-templates", "limit", "0"),
    ("GET", "/api/v1/workflow-templates/nope", "version", "one"),
    ("GET", "/api/v1/template-sets", "cursor", "!!!"),
    ("GET", "/api/v1/template-sets", "limit", "501"),
    ("GET", "/api/v1/templates", "cursor", "WzFd"),  # [1]: not a (set, name) cursor
    ("GET", "/api/v1/templates", "limit", "0"),
    ("GET", "/api/v1/templates/briefs/brief", "version", "-1"),
    ("GET", "/api/v1/templates/briefs/brief/versions", "limit", "1001"),
    ("GET", "/api/v1/templates/briefs/brief/versions", "cursor", "!!!"),
    ("GET", "/api/v1/executions", "status", "bogus"),
    ("GET", "/api/v1/executions", "triggerKind", "cron"),
    ("GET", "/api/v1/executions", "triggerId", "not-a-uuid"),
    ("GET", "/api/v1/executions", "createdFrom", "yesterday"),
    ("GET", "/api/v1/executions", "createdTo", "2026-13-01"),
    ("GET", "/api/v1/executions", "cursor", "!!!"),
    ("GET", "/api/v1/executions", "limit", "501"),
    ("GET", f"/api/v1/executions/{EXECUTION}/events", "after", "-1"),
    ("GET", f"/api/v1/executions/{EXECUTION}/events", "limit", "1001"),
    ("GET", f"/api/v1/executions/{EXECUTION}/actions", "order", "sideways"),
    ("GET", f"/api/v1/executions/{EXECUTION}/actions", "view", "brief"),
    ("GET", f"/api/v1/executions/{EXECUTION}/actions", "cursor", "!!!"),
    ("GET", f"/api/v1/executions/{EXECUTION}/actions", "limit", "1001"),
    ("GET", f"/api/v1/executions/{EXECUTION}/nodes/n/items", "cursor", "!!!"),
    ("GET", f"/api/v1/executions/{EXECUTION}/nodes/n/items", "limit", "0"),
    ("GET", f"/api/v1/executions/{EXECUTION}/children", "cursor", "!!!"),
    ("GET", f"/api/v1/executions/{EXECUTION}/children", "limit", "1001"),
    ("GET", f"/api/v1/executions/{EXECUTION}/tree", "cursor", "!!!"),
    ("GET", f"/api/v1/executions/{EXECUTION}/tree", "limit", "0"),
    ("GET", "/api/v1/waits", "executionId", "x"),
    ("GET", "/api/v1/waits", "state", "closed"),
    ("GET", "/api/v1/waits", "limit", "1001"),
    ("GET", "/api/v1/approvals", "status", "closed"),
    ("GET", "/api/v1/approvals", "cursor", "!!!"),
    ("GET", "/api/v1/approvals", "executionId", "x"),
    ("GET", "/api/v1/approvals", "principal", "p" * 201),
    ("GET", "/api/v1/approvals", "limit", "0"),
    ("GET", "/api/v1/dead-letters", "kind", "bogus"),
    ("GET", "/api/v1/dead-letters", "open", "maybe"),
    ("GET", "/api/v1/dead-letters", "executionId", "x"),
    ("GET", "/api/v1/dead-letters", "cursor", "WyJ4Il0"),  # ["x"]: not an id
    ("GET", "/api/v1/dead-letters", "limit", "0"),
    ("GET", "/api/v1/triggers", "kind", "cron"),
    ("GET", "/api/v1/triggers", "cursor", "WyJ4Il0"),  # ["x"]: not a (workflow, kind, name)
    ("GET", "/api/v1/triggers", "limit", "1001"),
    ("GET", f"/api/v1/triggers/{TRIGGER}/deliveries", "outcome", "delivered"),
    ("GET", f"/api/v1/triggers/{TRIGGER}/deliveries", "cursor", "WyJ4Il0"),  # ["x"]: not this list's
    ("GET", f"/api/v1/triggers/{TRIGGER}/deliveries", "limit", "0"),
    ("GET", f"/api/v1/triggers/{TRIGGER}/ticks", "cursor", "!!!"),
    ("GET", f"/api/v1/triggers/{TRIGGER}/ticks", "limit", "1001"),
    ("GET", "/api/v1/workflows/simple-echo/triggers", "kind", "cron"),
    ("GET", "/api/v1/workflows/simple-echo/triggers", "cursor", "!!!"),
    ("GET", "/api/v1/workflows/simple-echo/triggers", "limit", "0"),
    ("GET", "/api/v1/connections", "cursor", "WzFd"),  # [1]: not a name
    ("GET", "/api/v1/connections", "limit", "1001"),
    ("GET", "/api/v1/resource-links", "executionId", "x"),
    ("GET", "/api/v1/resource-links", "limit", "1001"),
    # Free text, but never a NUL (PostgreSQL text cannot hold one).
    ("GET", "/api/v1/executions", "workflowId", "a\x00b"),
    ("GET", "/api/v1/templates", "set", "a\x00b"),
    ("GET", f"/api/v1/executions/{EXECUTION}/actions", "nodeId", "n\x00"),
    ("GET", "/api/v1/resource-links", "type", "\x00"),
    ("GET", "/api/v1/resource-links", "key", "k\x00"),
    ("GET", "/api/v1/audit-log", "after", "-1"),
    ("GET", "/api/v1/audit-log", "limit", "5001"),
    ("GET", "/api/v1/audit-log", "settleSeconds", "3601"),
    ("GET", "/api/v1/audit-log", "workflowId", "w\x00"),
    ("GET", "/api/v1/audit-log", "type", "t\x00"),
]

# Query parameters that take any string (an id or a name to match).
FREE_TEXT = {
    ("GET", "/api/v1/executions", "workflowId"),
    ("GET", "/api/v1/templates", "set"),
    ("GET", "/api/v1/resource-links", "type"),
    ("GET", "/api/v1/resource-links", "key"),
    ("GET", f"/api/v1/executions/{EXECUTION}/actions", "nodeId"),
    ("GET", "/api/v1/audit-log", "workflowId"),
    ("GET", "/api/v1/audit-log", "type"),
}


@pytest.mark.parametrize(
    ("path", "name", "value"),
    [
        ("/api/v1/audit-log", "after", "1e3"),
        ("/api/v1/audit-log", "limit", "10e-1"),
        ("/api/v1/audit-log", "settleSeconds", "1.0"),
        ("/api/v1/executions", "limit", "1E1"),
        ("/api/v1/dead-letters", "limit", "5.0"),
    ],
)
async def test_an_integer_written_as_a_float_is_refused(
    client: AsyncTestClient[Any], path: str, name: str, value: str
) -> None:
    """Litestar's lenient parsing took a float whose value is whole as an integer (`after=1e3` read as
    1000: an export from there), where `after=1.5` was a 400."""
    body = assert_problem(await client.get(path, params={name: value}), 400)
    assert [entry["parameter"] for entry in body["errors"]] == [name], body
    assert body["detail"] == f"query parameter {name}={value!r}: Expected `int`, got `str`", body
    assert (await client.get(path, params={name: "1"})).status_code == 200


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(Settings(database_url=dsn))) as test_client:
        yield test_client


@pytest.mark.parametrize(("method", "path", "name", "value"), BAD_VALUES, ids=lambda v: str(v)[:40])
async def test_a_query_value_the_endpoint_does_not_take_is_a_400_naming_the_parameter(
    client: AsyncTestClient[Any], method: str, path: str, name: str, value: str
) -> None:
    kwargs: dict[str, Any] = {"params": {name: value}}
    if method == "POST" and path == "/api/v1/workflows":
        kwargs["json"] = load_fixture("bundle1/simple-echo-workflow.json")
    body = assert_problem(await client.request(method, path, **kwargs), 400)
    assert body["code"] == "bad_request"
    assert [entry["parameter"] for entry in body["errors"]] == [name], body


def _template(path: str) -> str:
    """The OpenAPI path of a concrete one (ids as its placeholders)."""
    parts = path.split("/")
    names = {
        ("executions", 4): "{execution_id}",
        ("workflows", 4): "{workflow_id}",
        ("workflow-templates", 4): "{template_id}",
        ("templates", 4): "{set_id}",
        ("templates", 5): "{name}",
        ("executions", 6): "{node_id}",
        ("triggers", 4): "{trigger_id}",
    }
    return "/".join(names.get((parts[3], i), part) for i, part in enumerate(parts))


async def test_every_query_parameter_has_a_bad_value_case(client: AsyncTestClient[Any]) -> None:
    document = (await client.get("/schema/openapi.json")).json()
    documented = {
        (method.upper(), path, parameter["name"])
        for path, item in document["paths"].items()
        if path.startswith("/api/v1/") and not path.startswith("/api/v1/hooks/")
        for method, operation in item.items()
        if isinstance(operation, dict)
        for parameter in operation.get("parameters", [])
        if parameter.get("in") == "query"
    }
    covered = {(method, _template(path), name) for method, path, name, value in BAD_VALUES if "\x00" not in value}
    free = {(method, _template(path), name) for method, path, name in FREE_TEXT}
    assert documented - free == covered, "a query parameter without a bad-value case here (or one gone)"
    nul = {(method, _template(path), name) for method, path, name, value in BAD_VALUES if "\x00" in value}
    assert nul == free, "a free-text parameter without its NUL case"


async def test_a_known_kind_still_filters_dead_letters(client: AsyncTestClient[Any], db: Database) -> None:
    for kind in DeadLetterKind:
        listed = await client.get("/api/v1/dead-letters", params={"kind": kind})
        assert listed.status_code == 200 and listed.json()["items"] == []
    # The enum is the table's check constraint, so that no kind the database holds is refused.
    [(definition,)] = await sql(
        db, "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'dead_letters_kind_check'"
    )
    assert sorted(kind for kind in DeadLetterKind) == sorted(definition.split("'")[1::2])


@pytest.mark.parametrize(
    ("path", "params", "name"),
    [
        ("/api/v1/executions", {"limit": "abc", "workflowId": "w" * 5000}, "limit"),  # Litestar's parsing
        ("/api/v1/executions", {"createdFrom": "y" * 5000}, "createdFrom"),
        ("/api/v1/executions", {"status": "s" * 5000}, "status"),  # a handler's check
    ],
    ids=["other-value-long", "own-value-long", "enum-value-long"],
)
async def test_a_400s_detail_names_the_parameter_and_quotes_little_of_the_query(
    client: AsyncTestClient[Any], path: str, params: dict[str, str], name: str
) -> None:
    """Litestar's detail repeated the whole URL, query string and all ("Validation failed for GET
    /api/v1/executions?limit=abc&workflowId=www…"): thousands of characters of the client's own
    input. The detail names the parameter and quotes at most 100 characters of its value."""
    answer = await client.get(path, params=params)
    body = assert_problem(answer, 400)
    assert [entry["parameter"] for entry in body["errors"]] == [name]
    assert name in body["detail"] and len(body["detail"]) < 400, body["detail"]
    value = params[name]
    assert value[:100] in body["detail"], "it quotes the bad value's start"
    for sent in params.values():
        if len(sent) > 100:
            assert sent[:101] not in answer.text, "never more than 100 characters of a value"
    if len(value) > 100:
        assert f"({len(value)} characters)" in body["detail"]


async def test_a_body_field_name_is_quoted_with_a_bound(client: AsyncTestClient[Any]) -> None:
    answer = await client.put("/api/v1/connections/x", json={"kind": "http", "secret": "s", "u" * 3000: 1})
    body = assert_problem(answer, 400)
    assert "u" * 201 not in answer.text and "(3" in body["detail"], body


@pytest.mark.parametrize(
    ("path", "query"),
    [
        ("/api/v1/executions", "status=Succeeded&status=Failed"),
        ("/api/v1/executions", "limit=1&limit=0"),
        ("/api/v1/workflows", "status=Active&limit=5&status=Draft"),
    ],
)
async def test_a_query_parameter_given_twice_is_refused_naming_it(
    client: AsyncTestClient[Any], path: str, query: str
) -> None:
    """Each parameter takes one value: Litestar read the last of two silently (?status=Succeeded&
    status=Failed listed only Failed runs, and limit=1&limit=0 was refused quoting the 1)."""
    body = assert_problem(await client.get(f"{path}?{query}"), 400)
    assert body["code"] == "bad_request" and "once (it came 2 times)" in body["detail"], body
    assert [entry["parameter"] for entry in body["errors"]] == ["status" if "status" in query else "limit"], body


@pytest.mark.parametrize(
    ("method", "path", "said"),
    [
        ("GET", "/api/v1/workflows/a%00b", "no workflow id holds a NUL character"),
        ("POST", "/api/v1/workflows/a%00b/execute", "no workflow id holds a NUL character"),
        ("GET", "/api/v1/connections/a%00", "no name holds a NUL character"),
        ("DELETE", "/api/v1/connections/a%00", "no name holds a NUL character"),
        ("GET", "/api/v1/templates/rs/t%00", "no name holds a NUL character"),
        ("GET", "/api/v1/triggers/a%00", "no trigger id holds a NUL character"),
    ],
)
async def test_a_name_with_a_nul_in_the_path_names_nothing(
    client: AsyncTestClient[Any], method: str, path: str, said: str
) -> None:
    """PostgreSQL text cannot hold a NUL, so no name has one: 404 on every route (some answered the
    database's refusal, 422). Said as the path's parameter ("no name has a name with..." before)."""
    kwargs: dict[str, Any] = {"json": {"trigger": {}}} if method == "POST" else {}
    body = assert_problem(await client.request(method, path, **kwargs), 404)
    assert body["detail"] == said, body


async def test_a_query_parameter_the_route_does_not_take_is_refused(client: AsyncTestClient[Any]) -> None:
    """A misspelt filter was ignored, and the answer held what it should have left out (?stauts=Failed
    listed every run). Every /api/v1 route refuses a query parameter its OpenAPI does not document,
    naming it and what the route takes; the webhook receiver keeps taking any (its query is the
    provider's)."""
    concrete = {(method, path) for method, path, _, _ in BAD_VALUES} | {
        ("GET", "/api/v1/workers"),
        ("GET", f"/api/v1/executions/{EXECUTION}"),
        ("POST", f"/api/v1/executions/{EXECUTION}/cancel"),
    }
    for method, path in sorted(concrete):
        response = await client.request(method, path, params={"stauts": "Failed"})
        problem = assert_problem(response, 400)
        assert problem["errors"][0]["parameter"] == "stauts", (method, path, problem)
        assert "has no query parameter 'stauts'" in problem["detail"], problem
    listed = assert_problem(await client.get("/api/v1/executions", params={"stauts": "Failed"}), 400)
    assert (
        "it takes createdFrom, createdTo, cursor, limit, status, triggerId, triggerKind, workflowId" in listed["detail"]
    )
    bare = assert_problem(await client.get("/api/v1/workers", params={"x": "1"}), 400)
    assert bare["detail"].endswith("it takes none"), bare
    # The documented ones still work, and the webhook receiver's GET takes whatever a provider adds.
    assert (await client.get("/api/v1/executions", params={"status": "Failed", "limit": "5"})).status_code == 200
    hook_url = "/api/v1/hooks/00000000-0000-4000-8000-000000000009?hub.mode=x&events=a&events=b"
    hook = await client.get(hook_url)
    assert hook.status_code == 404, hook.text  # no such hook: not a 400 for the query
    # The pointer is a JSON Pointer to the name (RFC 6901: ~ and / escaped).
    odd = assert_problem(await client.get("/api/v1/workers", params={"a/b~c": "1"}), 400)
    assert odd["errors"][0] == {**odd["errors"][0], "parameter": "a/b~c", "pointer": "/a~1b~0c"}, odd
    nul = assert_problem(await client.get("/api/v1/workers?a%00b=1"), 400)
    assert "a query name must not hold a NUL character" in nul["detail"], nul
    # A parameter without a name says so (it was "has no query parameter ''").
    nameless = assert_problem(await client.get("/api/v1/executions?=Failed"), 400)
    assert nameless["detail"] == "a query parameter needs a name ('=Failed' has none)", nameless
    assert nameless["errors"][0]["parameter"] == "", nameless
    # A long name is cut where the problem shows it, and says it was (it was cut at 50 silently).
    long_name = "s" * 300
    cut = assert_problem(await client.get("/api/v1/workers", params={long_name: "1"}), 400)
    assert cut["errors"][0]["parameter"] == "s" * 99 + "…", cut
    assert f"has no query parameter {'s' * 100!r}… (300 characters)" in cut["detail"], cut
