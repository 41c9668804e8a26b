"""Issue 4: workflow lifecycle, immutable versions, principals, plan cache, workflow templates."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import pytest
from litestar.testing import AsyncTestClient

from dataworkflows.actions import default_registry
from dataworkflows.api.app import create_app
from dataworkflows.conditions import ConditionPool
from dataworkflows.config import Settings
from dataworkflows.db import Database
from dataworkflows.runtime import Runtime, RuntimeSettings
from dataworkflows.template_pool import TemplatePool
from dataworkflows.templating import MAX_TEMPLATE_CHARS
from tests.conftest import FIXTURES, load_fixture
from tests.integration.test_api import assert_problem

ANA = {"X-Principal-Id": "ana", "X-Principal-Type": "user"}


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(Settings(database_url=dsn))) as test_client:
        yield test_client


def echo_workflow(message: str = "v1") -> dict[str, Any]:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    raw["nodes"][0]["parameters"]["message"] = message
    return raw


async def test_lifecycle_transitions_and_refusals(client: AsyncTestClient[Any]) -> None:
    assert (await client.post("/api/v1/workflows", json=echo_workflow(), headers=ANA)).json()["status"] == "Draft"
    body = assert_problem(await client.post("/api/v1/workflows/simple-echo/archive"), 409)
    assert "Draft" in body["detail"]
    body = assert_problem(await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}}), 409)
    assert "publish it" in body["detail"]

    active = (await client.post("/api/v1/workflows/simple-echo/publish", headers=ANA)).json()
    assert (active["status"], active["currentVersion"]) == ("Active", 1)
    assert (await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}})).status_code == 202

    archived = (await client.post("/api/v1/workflows/simple-echo/archive", headers=ANA)).json()
    assert (archived["status"], archived["archivedBy"]) == ("Archived", "ana")
    again = await client.post("/api/v1/workflows/simple-echo/archive")
    assert again.status_code == 200 and again.json()["status"] == "Archived"
    body = assert_problem(await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}}), 409)
    assert "Archived" in body["detail"] and "refuses new executions" in body["detail"]

    reactivated = (await client.post("/api/v1/workflows/simple-echo/publish")).json()
    assert reactivated["status"] == "Active" and reactivated["archivedAt"] is None
    assert (await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}})).status_code == 202
    assert_problem(await client.post("/api/v1/workflows/nope/archive"), 404)
    assert_problem(await client.post("/api/v1/workflows/simple-echo/publish", params={"version": 9}), 404)
    # They take no body (a review: publish's {"version": 1} was ignored, and the latest published; a
    # disable with a body that is not JSON disabled): a 400 that changes nothing; {} is none.
    url = "/api/v1/workflows/simple-echo"
    for action in ("publish", "archive", "disable", "enable"):
        assert_problem(await client.post(f"{url}/{action}", json={"version": 1}), 400)
        garbage = await client.post(
            f"{url}/{action}", content=b"garbage{", headers={"Content-Type": "application/json"}
        )
        assert_problem(garbage, 400)
    workflow = (await client.get(url)).json()
    assert (workflow["status"], workflow["isEnabled"]) == ("Active", True)
    assert (await client.post(f"{url}/disable", json={})).json()["isEnabled"] is False


async def test_a_workflow_is_disabled_and_enabled_over_the_api(
    client: AsyncTestClient[Any], db: Database, templates: TemplatePool
) -> None:
    """isEnabled refused starts since the first release, but only an UPDATE by hand could change it."""
    await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=echo_workflow())
    running = (await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}})).json()

    disabled = await client.post("/api/v1/workflows/simple-echo/disable", headers=ANA)
    assert disabled.status_code == 200, disabled.text
    body = disabled.json()
    assert (body["isEnabled"], body["status"], body["disabledBy"]) == (False, "Active", "ana")
    assert body["disabledAt"] is not None
    refused = assert_problem(await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}}), 409)
    assert refused["code"] == "workflow_not_runnable" and "is disabled" in refused["detail"], refused
    # Idempotent: who disabled it, and when, stay those of the first disable.
    again = (await client.post("/api/v1/workflows/simple-echo/disable", headers={"X-Principal-Id": "bo"})).json()
    assert (again["disabledBy"], again["disabledAt"]) == ("ana", body["disabledAt"])
    listed = (await client.get("/api/v1/workflows")).json()["items"]
    assert [(w["id"], w["isEnabled"]) for w in listed] == [("simple-echo", False)]

    # A run started before goes on to its end.
    conditions = ConditionPool(size=1)
    try:
        runtime = Runtime(db, default_registry(), RuntimeSettings(worker_id="w"), conditions, templates=templates)
        assert await runtime.run_execution(UUID(running["executionId"])) == "Succeeded"
    finally:
        await conditions.close()

    # Publishing keeps it disabled (unlike an archive, a disable is not undone by a publish).
    await client.put("/api/v1/workflows/simple-echo", json=echo_workflow("v2"))
    published = (await client.post("/api/v1/workflows/simple-echo/publish")).json()
    assert (published["status"], published["currentVersion"], published["isEnabled"]) == ("Active", 2, False)
    assert_problem(await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}}), 409)

    enabled = (await client.post("/api/v1/workflows/simple-echo/enable", headers=ANA)).json()
    assert (enabled["isEnabled"], enabled["disabledAt"], enabled["disabledBy"]) == (True, None, None)
    assert (await client.post("/api/v1/workflows/simple-echo/enable")).json()["isEnabled"] is True
    assert (await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}})).status_code == 202

    # A Draft can be disabled before it is published; an unknown workflow is a 404.
    draft = echo_workflow()
    draft["id"] = "draft-echo"
    await client.post("/api/v1/workflows", json=draft)
    off = (await client.post("/api/v1/workflows/draft-echo/disable")).json()
    assert (off["status"], off["isEnabled"]) == ("Draft", False)
    # Refused for both reasons at once: undoing one is not met by the other.
    both = assert_problem(await client.post("/api/v1/workflows/draft-echo/execute", json={"trigger": {}}), 409)
    assert "is a Draft and disabled; publish it and enable it before executing it" in both["detail"], both
    await client.post("/api/v1/workflows/simple-echo/disable")
    await client.post("/api/v1/workflows/simple-echo/archive")
    both = assert_problem(await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}}), 409)
    assert "is Archived and disabled and refuses new executions; publish a version and enable it" in both["detail"]
    for action in ("disable", "enable"):
        assert_problem(await client.post(f"/api/v1/workflows/nope/{action}"), 404)


async def test_put_adds_versions_and_checksums_are_idempotent(client: AsyncTestClient[Any]) -> None:
    await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=echo_workflow())
    # Same definition, keys reordered and re-indented: the existing version comes back.
    reordered = json.loads(json.dumps(dict(reversed(list(echo_workflow().items()))), indent=4))
    same = (await client.put("/api/v1/workflows/simple-echo", json=reordered)).json()
    assert (same["version"], same["created"]) == (1, False)

    changed = (await client.put("/api/v1/workflows/simple-echo", json=echo_workflow("v2"), headers=ANA)).json()
    assert (changed["version"], changed["created"], changed["workflowStatus"], changed["currentVersion"]) == (
        2,
        True,
        "Active",
        1,
    )
    workflow = (await client.get("/api/v1/workflows/simple-echo")).json()
    assert (workflow["currentVersion"], workflow["latestVersion"]) == (1, 2)
    assert workflow["definition"]["nodes"][0]["parameters"]["message"] == "v1", "shows what runs"

    await client.post("/api/v1/workflows/simple-echo/publish", headers={"X-Principal-Id": "bo"})
    versions = (await client.get("/api/v1/workflows/simple-echo/versions")).json()
    assert [(v["version"], v["createdBy"], v["publishedBy"]) for v in versions] == [(2, "ana", "bo"), (1, None, None)]
    assert versions[0]["checksum"] != versions[1]["checksum"]
    one = (await client.get("/api/v1/workflows/simple-echo/versions/1")).json()
    assert one["definition"]["nodes"][0]["parameters"]["message"] == "v1"
    assert_problem(await client.get("/api/v1/workflows/simple-echo/versions/7"), 404)

    # Rolling back is publishing an older version.
    rolled = (await client.post("/api/v1/workflows/simple-echo/publish", params={"version": 1})).json()
    assert rolled["currentVersion"] == 1

    other = echo_workflow()
    other["id"] = "something-else"
    body = assert_problem(await client.put("/api/v1/workflows/simple-echo", json=other), 422)
    assert body["errors"][0]["pointer"] == "/id"
    assert_problem(await client.put("/api/v1/workflows/missing", json=echo_workflow()), 404)
    broken = echo_workflow()
    broken["nodes"][1]["actionType"] = "nope"
    assert_problem(await client.put("/api/v1/workflows/simple-echo", json=broken), 422)


async def test_published_version_pins_running_executions(
    client: AsyncTestClient[Any], db: Database, templates: TemplatePool
) -> None:
    await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=echo_workflow("old"))
    first = (await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}})).json()
    await client.put("/api/v1/workflows/simple-echo", json=echo_workflow("new"))
    await client.post("/api/v1/workflows/simple-echo/publish")
    second = (await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}})).json()
    assert (first["workflowVersion"], second["workflowVersion"]) == (1, 2)

    conditions = ConditionPool(size=1)
    try:
        runtime = Runtime(db, default_registry(), RuntimeSettings(worker_id="w"), conditions, templates=templates)
        for started in (second, first):
            assert await runtime.run_execution(UUID(started["executionId"])) == "Succeeded"
        # Two versions, each compiled once at publish time, each loaded once by the worker.
        assert runtime.plans.loads == 2
        third = (await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}})).json()
        assert await runtime.run_execution(UUID(third["executionId"])) == "Succeeded"
        assert runtime.plans.loads == 2
    finally:
        await conditions.close()
    outputs = {}
    for started in (first, second):
        execution = (await client.get(started["statusUrl"])).json()
        outputs[execution["workflowVersion"]] = execution["nodes"][0]["outputs"]["echo"]
        versions = (await client.get("/api/v1/workflows/simple-echo/versions")).json()
        checksum = next(v["checksum"] for v in versions if v["version"] == execution["workflowVersion"])
        assert execution["workflowChecksum"] == checksum
    assert outputs == {1: "old", 2: "new"}
    async with db.connection() as conn:
        cur = await conn.execute("SELECT version FROM dw.workflow_plans ORDER BY version")
        assert await cur.fetchall() == [(1,), (2,)]


async def test_principals_are_stored_and_can_be_required(dsn: str, db: Database) -> None:
    settings = Settings(database_url=dsn, require_principal=True)
    async with AsyncTestClient(create_app(settings)) as strict:
        created = await strict.post(
            "/api/v1/workflows", params={"autoActivate": "true"}, json=echo_workflow(), headers=ANA
        )
        assert created.json()["createdBy"] == "ana"
        # Writes other than starts and control too (until this release anonymous ones passed).
        anonymous = [
            await strict.post("/api/v1/workflows", json={**echo_workflow(), "id": "anonymous"}),
            await strict.put("/api/v1/workflows/simple-echo", json=echo_workflow()),
            await strict.post("/api/v1/workflows/simple-echo/archive"),
            await strict.post("/api/v1/workflow-templates", json=template()),
            await strict.post("/api/v1/template-sets", json={"id": "anonymous-set"}),
        ]
        details = [assert_problem(answer, 401)["detail"] for answer in anonymous]
        assert details[0] == "this server requires a principal to change workflows (X-Principal-Id)"
        assert "change workflow templates" in details[3] and "change document templates" in details[4]
        assert (await strict.get("/api/v1/workflows/simple-echo")).json()["status"] == "Active"
        assert (await strict.get("/api/v1/workflows/anonymous")).status_code == 404
        body = assert_problem(await strict.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}}), 401)
        assert "X-Principal-Id" in body["detail"]
        ok = await strict.post(
            "/api/v1/workflows/simple-echo/execute",
            json={"trigger": {}},
            headers={"X-Principal-Id": "svc-billing", "X-Principal-Type": "service"},
        )
        assert ok.status_code == 202
        execution = (await strict.get(ok.json()["statusUrl"])).json()
        assert (execution["principalId"], execution["principalType"]) == ("svc-billing", "service")
        events = (await strict.get(ok.json()["statusUrl"] + "/events")).json()
        assert events[0]["principal"] == "svc-billing"
    versions = await db.fetch_all("list_versions", id="simple-echo", before=None, limit=1)
    assert (versions[0]["created_by"], versions[0]["published_by"]) == ("ana", "ana")


def template() -> dict[str, Any]:
    data = json.loads((FIXTURES / "templates" / "approval-workflow-template.json").read_text())
    assert isinstance(data, dict)
    return data


async def test_workflow_template_instantiation(
    client: AsyncTestClient[Any], db: Database, templates: TemplatePool
) -> None:
    created = await client.post("/api/v1/workflow-templates", json=template(), headers=ANA)
    assert created.status_code == 201, created.text
    # Where the new resource is read (RFC 9110 15.3.2); 201s had no Location.
    assert created.headers["location"] == "/api/v1/workflow-templates/approval-flow"
    read = (await client.get(created.headers["location"])).json()
    assert read["version"] == 1 and "created" not in read, "a read does not say what a store did"
    assert (created.json()["version"], created.json()["createdBy"], created.json()["created"]) == (1, "ana", True)
    # The same content again stores nothing, and says so (a review: a 201 either way).
    unchanged = await client.post("/api/v1/workflow-templates", json=template())
    assert (unchanged.status_code, unchanged.json()["version"], unchanged.json()["created"]) == (200, 1, False)
    assert "location" not in unchanged.headers
    changed = template()
    changed["description"] = "v2"
    assert (await client.post("/api/v1/workflow-templates", json=changed)).json()["version"] == 2
    listed = (await client.get("/api/v1/workflow-templates")).json()
    assert [(t["id"], t["version"]) for t in listed] == [("approval-flow", 2)]
    # Version 1's content again is a rollback: version 3, the latest (it answered version 1, and
    # instantiating without a version kept taking version 2's).
    back = await client.post("/api/v1/workflow-templates", json=template())
    assert (back.status_code, back.json()["version"]) == (201, 3), back.text
    assert (await client.get("/api/v1/workflow-templates/approval-flow")).json()["description"] == template()[
        "description"
    ]
    again = await client.post("/api/v1/workflow-templates", json=template())
    assert (again.status_code, again.json()["version"], again.json()["created"]) == (200, 3, False)
    assert (await client.get("/api/v1/workflow-templates/approval-flow", params={"version": 1})).json()["version"] == 1
    # A version it does not have is said to be that, not the template (which is there).
    missing = await client.post(
        "/api/v1/workflow-templates/approval-flow/instantiate",
        json={"workflowId": "w9", "templateVersion": 99, "config": {"name": "n", "reviewer": "r"}},
    )
    assert missing.status_code == 404, missing.text
    assert missing.json()["detail"] == "workflow template 'approval-flow' has no version 99 (its latest is 3)"
    gone = await client.get("/api/v1/workflow-templates/approval-flow", params={"version": 99})
    assert "has no version 99" in gone.json()["detail"], gone.text

    request = {"workflowId": "expenses", "config": {"name": "Expenses", "reviewer": "finance", "threshold": 250}}
    made = await client.post("/api/v1/workflow-templates/approval-flow/instantiate", json=request, headers=ANA)
    assert made.status_code == 201, made.text
    assert made.headers["location"] == "/api/v1/workflows/expenses"
    workflow = made.json()
    assert (workflow["id"], workflow["status"], workflow["displayName"]) == ("expenses", "Draft", "Expenses")
    assert (workflow["templateId"], workflow["templateVersion"], workflow["createdBy"]) == ("approval-flow", 3, "ana")
    definition = workflow["definition"]
    assert definition["orchestration"]["maxParallelActions"] == 5, "a whole [[ ]] expression keeps its type"
    assert definition["nodes"][0]["edges"][0]["condition"] == "trigger.amount >= 250"
    assert definition["nodes"][0]["parameters"]["message"] == "Request {{ trigger.requestId }} for {{ trigger.amount }}"
    assert definition["nodes"][2]["parameters"]["message"]["notify"] is False

    # The Draft publishes and runs like any workflow.
    assert (await client.post("/api/v1/workflows/expenses/publish")).json()["status"] == "Active"
    started = (
        await client.post("/api/v1/workflows/expenses/execute", json={"trigger": {"amount": 300, "requestId": "r-1"}})
    ).json()
    conditions = ConditionPool(size=1)
    try:
        runtime = Runtime(db, default_registry(), RuntimeSettings(worker_id="w"), conditions, templates=templates)
        assert await runtime.run_execution(UUID(started["executionId"])) == "Succeeded"
    finally:
        await conditions.close()
    nodes = {n["nodeId"]: n["status"] for n in (await client.get(started["statusUrl"])).json()["nodes"]}
    assert nodes == {"receive": "Succeeded", "review": "Succeeded", "auto-approve": "Skipped"}


@pytest.mark.parametrize(
    ("request_body", "status", "pointers"),
    [
        ({"workflowId": "w1", "config": {"reviewer": "x"}}, 422, {"/config/name": "required"}),
        (
            {"workflowId": "w1", "config": {"name": "n", "reviewer": "x", "bogus": 1}},
            422,
            {"/config/bogus": "unknown_parameter"},
        ),
        (
            {"workflowId": "w1", "config": {"name": "n", "reviewer": "x", "threshold": "high"}},
            422,
            {"/config/threshold": "type"},
        ),
        (
            {"workflowId": "w1", "config": {"name": "n", "reviewer": "x", "parallelism": 1.5}},
            422,
            {"/config/parallelism": "type"},
        ),
        ({"workflowId": "bad id!", "config": {"name": "n", "reviewer": "x"}}, 422, {"/workflowId": "format"}),
        (
            {"workflowId": "w1", "config": {"name": "n", "reviewer": "x", "parallelism": 0}},
            422,
            {"/definition/orchestration/maxParallelActions": "range"},
        ),
        ({"workflowId": "w1", "config": {"name": "", "reviewer": "x"}}, 422, {"/definition/displayName": "required"}),
        ({"workflowId": "w1"}, 422, {"/config/name": "required", "/config/reviewer": "required"}),
    ],
)
async def test_workflow_template_refusals(
    client: AsyncTestClient[Any], request_body: dict[str, Any], status: int, pointers: dict[str, str]
) -> None:
    await client.post("/api/v1/workflow-templates", json=template())
    response = await client.post("/api/v1/workflow-templates/approval-flow/instantiate", json=request_body)
    body = assert_problem(response, status)
    assert {e["pointer"]: e["code"] for e in body["errors"]} == pointers
    assert (await client.get("/api/v1/workflows/w1")).status_code == 404, "nothing was created"


async def test_workflow_template_other_refusals(client: AsyncTestClient[Any]) -> None:
    good = {"workflowId": "w1", "config": {"name": "n", "reviewer": "x"}}
    assert_problem(await client.post("/api/v1/workflow-templates/nope/instantiate", json=good), 404)
    await client.post("/api/v1/workflow-templates", json=template())
    assert (await client.post("/api/v1/workflow-templates/approval-flow/instantiate", json=good)).status_code == 201
    assert_problem(await client.post("/api/v1/workflow-templates/approval-flow/instantiate", json=good), 409)
    bad = copy.deepcopy(template())
    bad["parameters"].append({"name": "name", "type": "string"})
    bad["definition"]["displayName"] = "[[ config.name "
    body = assert_problem(await client.post("/api/v1/workflow-templates", json=bad), 422)
    assert {e["code"] for e in body["errors"]} == {"duplicate", "template_syntax"}
    assert_problem(await client.post("/api/v1/workflow-templates", json={"id": "x"}), 422)
    # What no instantiation can mend is refused when stored (it was 201, then every instantiation
    # failed): a definition's missing keys, a run-time template that does not compile. One with a
    # placeholder in it is left to the instantiation, which may complete it.
    broken = copy.deepcopy(template())
    broken["id"] = "broken-flow"
    del broken["definition"]["startNode"], broken["definition"]["displayName"]
    broken["definition"]["nodes"][0]["parameters"] = {"message": "{{ unclosed", "later": "{{ nodes.[[ config.name ]]"}
    body = assert_problem(await client.post("/api/v1/workflow-templates", json=broken), 422)
    assert {e["pointer"]: e["code"] for e in body["errors"]} == {
        "/definition/displayName": "required",
        "/definition/startNode": "required",
        "/definition/nodes/0/parameters/message": "template_syntax",
    }
    # A placeholder as an object's key was stored (201), and every instantiation failed on it
    # ("unknown field [[ config.k ]]"): keys are not rendered, a placeholder fills a value.
    keyed = copy.deepcopy(template())
    keyed["id"] = "keyed-flow"
    keyed["definition"]["nodes"][1]["parameters"] = {"[[ config.name ]]": "x", "m": {"[% if 1 %]k[% endif %]": 1}}
    body = assert_problem(await client.post("/api/v1/workflow-templates", json=keyed), 422)
    assert {e["pointer"]: e["code"] for e in body["errors"]} == {
        "/definition/nodes/1/parameters/[[ config.name ]]": "placeholder_in_key",
        "/definition/nodes/1/parameters/m/[% if 1 %]k[% endif %]": "placeholder_in_key",
    }
    assert_problem(await client.get("/api/v1/workflow-templates/keyed-flow"), 404)
    mistyped = copy.deepcopy(template())
    mistyped["parameters"].append({"name": "retries", "type": "integer", "default": "3"})
    body = assert_problem(await client.post("/api/v1/workflow-templates", json=mistyped), 422)
    assert [(e["code"], e["detail"]) for e in body["errors"]] == [("type", "must be an integer")], body


async def test_template_config_cannot_inject_runtime_templates_and_bombs_are_refused(
    client: AsyncTestClient[Any],
) -> None:
    await client.post("/api/v1/workflow-templates", json=template())
    sneaky = {"workflowId": "w2", "config": {"name": "n", "reviewer": "{{ trigger.secret }}"}}
    body = assert_problem(await client.post("/api/v1/workflow-templates/approval-flow/instantiate", json=sneaky), 422)
    assert body["errors"][0] == {
        "pointer": "/config/reviewer",
        "code": "template_injection",
        "detail": body["errors"][0]["detail"],
    }
    bomb = template()
    bomb["id"] = "bomb"
    bomb["definition"]["displayName"] = "[[ 'a' * 10**8 ]]"
    await client.post("/api/v1/workflow-templates", json=bomb)
    made = await client.post(
        "/api/v1/workflow-templates/bomb/instantiate",
        json={"workflowId": "w3", "config": {"name": "n", "reviewer": "x"}},
    )
    problems = assert_problem(made, 422)["errors"]
    assert [(p["pointer"], p["code"]) for p in problems] == [("/definition/displayName", "template_budget_exceeded")]


async def test_an_instantiation_problem_points_at_the_field_that_failed(client: AsyncTestClient[Any]) -> None:
    """A render that failed pointed at /definition whichever field it was (README: one pointer per
    problem): now at the field, as a config or validation problem does."""
    failing = template()
    failing["id"] = "failing"
    failing["definition"]["description"] = "[[ config.threshold * 1e308 ]]"
    assert (await client.post("/api/v1/workflow-templates", json=failing)).status_code == 201
    config = {"name": "n", "reviewer": "r", "threshold": 10}
    made = await client.post(
        "/api/v1/workflow-templates/failing/instantiate", json={"workflowId": "f", "config": config}
    )
    problems = assert_problem(made, 422)["errors"]
    assert [(p["pointer"], p["code"]) for p in problems] == [("/definition/description", "template_error")]
    assert "produced inf" in problems[0]["detail"]
    failing["definition"]["description"] = "fine"
    failing["definition"]["nodes"][1]["parameters"]["message"] = "Sent to [[ config.reviewer.__class__ ]]"
    assert (await client.post("/api/v1/workflow-templates", json=failing)).status_code == 201
    made = await client.post(
        "/api/v1/workflow-templates/failing/instantiate", json={"workflowId": "f", "config": config}
    )
    problems = assert_problem(made, 422)["errors"]
    assert [(p["pointer"], p["code"]) for p in problems] == [
        ("/definition/nodes/1/parameters/message", "template_error")
    ]
    assert "SecurityError" in problems[0]["detail"]


async def test_a_hostile_workflow_template_is_refused_and_the_api_stays_responsive(
    client: AsyncTestClient[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """In process this template froze the API for 40 s; it renders in a helper, so the API's event loop
    goes on: checked by where it renders (the API's own renderer would fail the test), not by timing
    /health/live under whatever else the machine runs."""
    from dataworkflows import templating

    hostile = template()
    hostile["id"] = "hostile"
    loops = "[% for a in range(10000) %][% for b in range(10000) %][% for c in range(10000) %][% endfor %]"
    hostile["definition"]["description"] = loops + "[% endfor %][% endfor %]"
    assert (await client.post("/api/v1/workflow-templates", json=hostile)).status_code == 201
    request = {"workflowId": "bombed", "config": {"name": "B", "reviewer": "r"}}

    def in_the_apis_process(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the instantiation rendered in the API's process")

    monkeypatch.setattr(templating, "render_instantiation", in_the_apis_process)
    refused = await client.post("/api/v1/workflow-templates/hostile/instantiate", json=request)
    body = assert_problem(refused, 422)
    assert [(p["pointer"], p["code"]) for p in body["errors"]] == [
        ("/definition/description", "template_budget_exceeded")
    ]
    assert_problem(await client.get("/api/v1/workflows/bombed"), 404)


async def test_a_workflow_template_is_bounded_and_compiled_off_the_event_loop(
    client: AsyncTestClient[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: a workflow template's text had no bound and was compiled on the API's event loop, when it
    was stored and again at every instantiation: 20,000 lookups (660 kB) froze the API for 10 s each time.
    Past templating.MAX_TEMPLATE_CHARS ({{ }} and [[ ]] strings together) it is refused before it is
    compiled; within it, compiled in a thread when stored, and not again when instantiated (checked by
    where the compile runs, not by how long anything took)."""
    import threading

    from dataworkflows.api import workflow_templates as api_templates

    compiled_on: list[threading.Thread] = []
    validate = api_templates.validate_template

    def recorded(raw: Any, *, compile_templates: bool = True) -> Any:
        if compile_templates:
            compiled_on.append(threading.current_thread())
        return validate(raw, compile_templates=compile_templates)

    monkeypatch.setattr(api_templates, "validate_template", recorded)

    def lookups(template_id: str, count: int) -> dict[str, Any]:
        stored = template()
        stored["id"] = template_id
        stored["definition"]["nodes"][0]["parameters"]["message"] = {
            **{f"k{i}": "{{ trigger.a" + str(i) + " }}" for i in range(count)},
            "who": "[[ config.reviewer ]]",
        }
        return stored

    refused = assert_problem(await client.post("/api/v1/workflow-templates", json=lookups("huge", 20_000)), 422)
    assert [(e["pointer"], e["code"]) for e in refused["errors"]] == [("/definition", "too_large")]
    assert f"at most {MAX_TEMPLATE_CHARS} characters of templates" in refused["errors"][0]["detail"]
    stored = await client.post("/api/v1/workflow-templates", json=lookups("large", 4_000))
    assert stored.status_code == 201, stored.text
    request = {"workflowId": "from-large", "config": {"name": "L", "reviewer": "r"}}
    made = await client.post("/api/v1/workflow-templates/large/instantiate", json=request)
    assert made.status_code == 201, made.text
    message = made.json()["definition"]["nodes"][0]["parameters"]["message"]
    assert (message["who"], message["k3999"]) == ("r", "{{ trigger.a3999 }}")
    # Every compile ran off the event loop's thread; the instantiation compiled nothing.
    assert compiled_on and all(thread is not threading.current_thread() for thread in compiled_on)


async def test_a_definition_with_too_much_template_text_is_refused_before_it_is_compiled(
    client: AsyncTestClient[Any],
) -> None:
    raw = {
        "id": "wordy",
        "displayName": "Wordy",
        "startNode": "a",
        "nodes": [{"id": "a", "actionType": "core.echo", "parameters": {"message": "{{ trigger.a }} " * 9_000}}],
    }
    body = assert_problem(await client.post("/api/v1/workflows", json=raw), 422)
    assert [(e["pointer"], e["code"]) for e in body["errors"]] == [("/nodes/0/parameters", "too_large")]
    assert "at most 131072 characters" in body["errors"][0]["detail"]
    assert (await client.get("/api/v1/workflows/wordy")).status_code == 404
    raw["nodes"][0]["parameters"]["message"] = "{{ trigger.a }} " * 8_000
    assert (await client.post("/api/v1/workflows", json=raw)).status_code == 201


@pytest.mark.parametrize("where", ["message", "displayName"])
async def test_a_placeholder_rendering_a_lone_surrogate_is_refused(client: AsyncTestClient[Any], where: str) -> None:
    """A review: an instantiation whose [[ ]] made a lone surrogate (a string literal's escape, rendered in
    process) answered 500 (the definition's checksum could not encode it)."""
    stored = template()
    stored["id"] = "surrogate-" + where.lower()
    if where == "message":
        stored["definition"]["nodes"][0]["parameters"]["message"] = "[[ '\\ud800' ]]"
    else:
        stored["definition"]["displayName"] = "[[ '\\ud800' ]]"
    assert (await client.post("/api/v1/workflow-templates", json=stored)).status_code == 201
    made = await client.post(
        f"/api/v1/workflow-templates/{stored['id']}/instantiate",
        json={"workflowId": "from-" + where.lower(), "config": {"name": "n", "reviewer": "r"}},
    )
    body = assert_problem(made, 422)
    assert "lone UTF-16 surrogate" in str(body), body
