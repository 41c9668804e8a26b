"""core.template.render end to end: rendered by the runtime in the template helpers, small documents
inline in the outputs, large ones stored once in dw.documents and served by GET
/api/v1/documents/{id} (per tenant); hostile templates fail their node with the budget error while
another run on the same worker finishes; the sample project brief loaded as `up` loads it."""

from __future__ import annotations

import asyncio
import hashlib
import json
from typing import Any
from uuid import UUID

import psycopg
import pytest
from litestar.testing import AsyncTestClient

from dataworkflows.actions import ActionContext, ActionServices, default_registry
from dataworkflows.actions.template_render import DocumentServices, TemplateRenderAction, TemplateRenderParams
from dataworkflows.api.app import create_app
from dataworkflows.conditions import ConditionPool
from dataworkflows.config import Settings
from dataworkflows.db import Database
from dataworkflows.errors import DefinitionError
from dataworkflows.examples import example_definitions, example_template_sets, load_examples, load_template_sets
from dataworkflows.runtime import Runtime, RuntimeSettings
from dataworkflows.workers.app import build_services, run_worker
from tests.conftest import current_templates, load_fixture, publish, start
from tests.integration.test_api import assert_problem
from tests.integration.test_document_templates import HOSTILE, _helpers_run_this_tree  # noqa: F401
from tests.integration.test_runtime import attempts, echo, nodes, to, wf


def make_runtime(db: Database, conditions: ConditionPool, inline_bytes: int = 16 * 1024) -> Runtime:
    services = ActionServices(
        credentials=None,  # type: ignore[arg-type]
        http=None,
        resources=None,  # type: ignore[arg-type]
        documents=DocumentServices(db, current_templates(), inline_bytes=inline_bytes),
    )
    settings = RuntimeSettings(worker_id="test-worker", lease_seconds=5.0, park_threshold_seconds=30.0)
    return Runtime(db, default_registry(), settings, conditions, services, templates=current_templates())


async def make_templates(db: Database, set_id: str = "briefs", **templates: tuple[str, str]) -> None:
    await db.document_templates.create_set(set_id=set_id, display_name=set_id, description=None, principal="t")
    for name, (fmt, body) in templates.items():
        await db.document_templates.create(
            set_id=set_id, name=name, format=fmt, body=body, sample_data={}, checksum=f"c-{name}", principal="t"
        )


def render_node(node_id: str, *edges: dict[str, Any], **params: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"id": node_id, "actionType": "core.template.render", "parameters": params}
    if edges:
        node["edges"] = list(edges)
    return node


async def run(db: Database, runtime: Runtime, raw: dict[str, Any], trigger: dict[str, Any]) -> tuple[UUID, str]:
    await publish(db, raw)
    execution_id = await start(db, raw["id"], trigger)
    return execution_id, await runtime.run_execution(execution_id)


async def test_small_documents_are_inline_and_large_ones_stored_and_served(
    db: Database, conditions: ConditionPool, dsn: str
) -> None:
    await make_templates(
        db,
        main=(
            "markdown",
            "{% import 'parts' as p %}# {{ title }}\n{% for row in rows %}{{ p.row(row) }}\n{% endfor %}",
        ),
        parts=("markdown", "{% macro row(r) %}- {{ r }}{% endmacro %}"),
    )
    runtime = make_runtime(db, conditions, inline_bytes=200)
    raw = wf(
        "render-doc",
        render_node(
            "doc",
            to("say"),
            templateId="briefs/main",
            data={"title": "{{ trigger.title }}", "rows": "{{ trigger.rows }}"},
        ),
        echo("say", message="{{ nodes.doc.bytes }} bytes"),
    )
    execution_id, outcome = await run(db, runtime, raw, {"title": "Small", "rows": ["a", "b"]})
    assert outcome == "Succeeded"
    outputs = (await nodes(db, execution_id))["doc"]["outputs"]
    document = "# Small\n- a\n- b\n"
    assert outputs == {
        "templateId": "briefs/main",
        "templateVersion": 1,
        "contentType": "text/markdown; charset=utf-8",
        "checksum": "sha256:" + hashlib.sha256(document.encode()).hexdigest(),
        "bytes": len(document),
        "document": document,
    }

    rows = [f"row number {i}" for i in range(40)]
    execution_id, outcome = await run(db, runtime, raw, {"title": "Large", "rows": rows})
    assert outcome == "Succeeded"
    outputs = (await nodes(db, execution_id))["doc"]["outputs"]
    assert "document" not in outputs and outputs["bytes"] > 200, outputs
    expected = "# Large\n" + "".join(f"- {r}\n" for r in rows)
    assert outputs["checksum"] == "sha256:" + hashlib.sha256(expected.encode()).hexdigest()

    async with AsyncTestClient(create_app(Settings(database_url=dsn))) as client:
        fetched = await client.get(f"/api/v1/documents/{outputs['documentId']}")
        assert fetched.status_code == 200, fetched.text
        assert fetched.text == expected
        assert fetched.headers["content-type"] == "text/markdown; charset=utf-8"
        # A template's output may hold any markup its data put there: opened in a tab it runs no
        # script, in an origin of its own (not the console's, whose token it would reach).
        policy = fetched.headers["content-security-policy"]
        assert policy.startswith("default-src 'none'") and policy.endswith("; sandbox") and "script" not in policy
        assert fetched.headers["x-content-type-options"] == "nosniff"
        # A conditional read of the copy the client has: 304 without the body (it was 200 and all).
        etag = fetched.headers["etag"]
        for condition in (etag, f"W/{etag}", f'"other", {etag}', "*"):
            again = await client.get(f"/api/v1/documents/{outputs['documentId']}", headers={"If-None-Match": condition})
            assert (again.status_code, again.content, again.headers["etag"]) == (304, b"", etag), condition
        changed = await client.get(f"/api/v1/documents/{outputs['documentId']}", headers={"If-None-Match": '"x"'})
        assert changed.status_code == 200 and changed.text == expected
        other = {"X-Tenant-Id": "acme"}
        assert_problem(await client.get(f"/api/v1/documents/{outputs['documentId']}", headers=other), 404)
        assert_problem(await client.get("/api/v1/documents/not-a-uuid"), 404)
        assert_problem(await client.get(f"/api/v1/documents/{UUID(int=1)}"), 404)


async def test_a_replayed_or_retried_attempt_stores_the_document_once(db: Database, conditions: ConditionPool) -> None:
    await make_templates(db, big=("text", "{% for i in range(n) %}line {{ i }}\n{% endfor %}"))
    runtime = make_runtime(db, conditions)
    await publish(db, wf("holder", echo("a")))
    execution_id = await start(db, "holder", {})
    documents = DocumentServices(db, current_templates(), inline_bytes=100)
    services = ActionServices(credentials=None, http=None, resources=None, documents=documents)  # type: ignore[arg-type]
    params = TemplateRenderParams(template_id="briefs/big", data={"n": 50})
    ids = set()
    for attempt in (1, 1, 2):
        ctx = ActionContext(execution_id, "holder", 1, "doc", attempt, 3, {}, services=services)
        result = await TemplateRenderAction().execute(ctx, params)
        ids.add(result.outputs["documentId"])
    assert len(ids) == 1
    count = await db.fetch_one("get_document", id=UUID(ids.pop()))
    assert count is not None and count["attempt"] == 1
    del runtime


async def test_version_pinning_and_errors(db: Database, conditions: ConditionPool) -> None:
    await make_templates(db, main=("text", "v1 {% include 'part' %}"), part=("text", "part1"))
    await db.document_templates.add_version(
        set_id="briefs",
        name="main",
        format="text",
        body="v2 {% include 'part' %}",
        sample_data={},
        checksum="m2",
        principal="t",
    )
    await asyncio.sleep(0.01)
    await db.document_templates.add_version(
        set_id="briefs", name="part", format="text", body="part2", sample_data={}, checksum="p2", principal="t"
    )
    runtime = make_runtime(db, conditions)
    raw = wf(
        "pinned",
        render_node("latest", to("pinned"), set="briefs", name="main"),
        render_node("pinned", to("missing", "failure"), templateId="briefs/main", version=1),
        render_node("missing", templateId="briefs/nope"),
    )
    execution_id, outcome = await run(db, runtime, raw, {})
    states = await nodes(db, execution_id)
    assert states["latest"]["outputs"]["document"] == "v2 part2"
    # A pinned version renders with the set's other templates as they were when it was saved.
    assert states["pinned"]["outputs"]["document"] == "v1 part1"
    assert states["pinned"]["outputs"]["templateVersion"] == 1
    with pytest.raises(DefinitionError):
        await publish(db, wf("bad-params", render_node("doc", data={})))
    # A version past PostgreSQL's integer: refused at publish, and when templated, a failed node
    # with invalid_parameters (it was an action_exception with the driver's traceback logged).
    with pytest.raises(DefinitionError) as refused:
        await publish(db, wf("huge-version", render_node("doc", templateId="briefs/main", version=2**31)))
    assert "1 to 2147483647" in str(refused.value.problems), refused.value.problems
    templated = wf("templated-version", render_node("doc", templateId="briefs/main", version="{{ trigger.v }}"))
    execution_id, outcome = await run(db, runtime, templated, {"v": 3_000_000_000})
    assert outcome == "Failed"
    rows = await attempts(db, execution_id)
    assert [r["error"]["code"] for r in rows] == ["invalid_parameters"], rows
    assert "1 to 2147483647" in rows[0]["error"]["message"]
    missing = wf("missing", render_node("doc", templateId="briefs/nope"))
    execution_id, outcome = await run(db, runtime, missing, {})
    assert outcome == "Failed"
    rows = await attempts(db, execution_id)
    assert [r["error"]["code"] for r in rows] == ["template_not_found"]


async def test_hostile_templates_fail_their_node_while_another_run_finishes(
    db: Database, conditions: ConditionPool
) -> None:
    await make_templates(db, **{name: ("text", body) for name, body in HOSTILE.items()}, ok=("text", "ok {{ who }}"))
    runtime = make_runtime(db, conditions)
    hostile = wf("hostile", render_node("doc", templateId="briefs/loops"))
    macros = wf("macros", render_node("doc", templateId="briefs/imported"))
    fine = wf(
        "fine", echo("wait", to("doc"), delayMs=200), render_node("doc", templateId="briefs/ok", data={"who": "you"})
    )
    for raw in (hostile, macros, fine):
        await publish(db, raw)
    ids = [await start(db, raw["id"], {}) for raw in (hostile, macros, fine)]
    outcomes = await asyncio.gather(*(runtime.run_execution(i) for i in ids))
    assert outcomes == ["Failed", "Failed", "Succeeded"]
    for execution_id in ids[:2]:
        rows = await attempts(db, execution_id)
        assert [r["error"]["code"] for r in rows] == ["template_budget_exceeded"], rows
    assert (await nodes(db, ids[2]))["doc"]["outputs"]["document"] == "ok you"


async def test_the_examples_leave_a_template_set_of_their_id_that_someone_else_made(
    db: Database, conditions: ConditionPool
) -> None:
    """A review: an author who made the set project-briefs before the examples were loaded (`up
    --no-examples` until then) got the examples' templates in it, and in strict mode a set is its
    creator's: that author then saved new versions of the brief that the example workflow, which
    only admins change, rendered and sent. The loader leaves such a set, as it leaves a workflow
    someone else made, and does not publish the example that renders from it."""
    await db.document_templates.create_set(
        set_id="project-briefs", display_name="Mine", description=None, principal="mallory"
    )
    assert await load_template_sets(db) == []
    assert await db.document_templates.get_version("project-briefs", "brief", None) is None
    loaded = await load_examples(db, default_registry(), conditions)
    assert "project-brief" not in loaded and "simple-echo" in loaded
    assert await db.workflows.get("project-brief") is None


async def test_the_sample_project_brief_loads_and_runs(db: Database, conditions: ConditionPool) -> None:
    assert [name for name, _ in example_template_sets()] == ["documents/project-brief-templates.json"]
    assert await load_template_sets(db) == ["project-briefs"]
    assert await load_template_sets(db) == ["project-briefs"]  # again: nothing new
    assert [v.version for v in await db.document_templates.versions("project-briefs", "brief")] == [1]
    assert "project-brief" in await load_examples(db, default_registry(), conditions)
    runtime = make_runtime(db, conditions)
    trigger = load_fixture("documents/project-brief-sample.json")["trigger"]
    execution_id = await start(db, "project-brief", trigger)
    assert await runtime.run_execution(execution_id) == "Succeeded"
    states = await nodes(db, execution_id)
    rendered = states["render"]["outputs"]
    assert rendered["document"].startswith("# Project brief: Website relaunch")
    assert "EUR 40,000.00" in rendered["document"] and "_Prepared for Acme GmbH" in rendered["document"]
    summary = states["summary"]["outputs"]["echo"]
    assert summary["text"].startswith("Brief for Website relaunch (Acme GmbH) is ready: ")
    assert summary["checksum"] == rendered["checksum"] and summary["documentId"] is None
    assert json.loads(json.dumps(summary))
    # The milestones' budgets are in the project's currency (they were EUR whatever it was).
    in_dollars = json.loads(json.dumps(trigger))
    in_dollars["project"]["currency"] = "USD"
    dollars_id = await start(db, "project-brief", in_dollars)
    assert await runtime.run_execution(dollars_id) == "Succeeded"
    document = (await nodes(db, dollars_id))["render"]["outputs"]["document"]
    rows = [line for line in document.splitlines() if line.startswith("| 1 ")]
    assert rows and "USD" in rows[0] and "EUR" not in document, document


async def test_markdown_as_html_and_the_workers_services(db: Database, conditions: ConditionPool, dsn: str) -> None:
    await make_templates(db, md=("markdown", "# {{ title }}\n<b>x</b>"), plain=("text", "t"))
    runtime = make_runtime(db, conditions)
    raw = wf(
        "as-html",
        render_node("doc", to("bad"), templateId="briefs/md", data={"title": "Hi"}, **{"as": "html"}),
        render_node("bad", templateId="briefs/plain", **{"as": "html"}),
    )
    execution_id, outcome = await run(db, runtime, raw, {})
    assert outcome == "Failed"
    states = await nodes(db, execution_id)
    assert states["doc"]["outputs"]["contentType"] == "text/html; charset=utf-8"
    assert states["doc"]["outputs"]["document"] == "<h1>Hi</h1>\n<p>&lt;b&gt;x&lt;/b&gt;</p>\n"
    assert states["bad"]["error"]["code"] == "invalid_parameters", states["bad"]["error"]

    # A worker's services carry the documents (its template pool and DW_DOCUMENT_INLINE_BYTES).
    services = build_services(Settings(database_url=dsn, document_inline_bytes=123), db, None, current_templates())
    assert isinstance(services.documents, DocumentServices) and services.documents.inline_bytes == 123
    assert build_services(Settings(database_url=dsn), db, None).documents is None


async def test_the_documents_table_is_tenant_isolated_in_sql(dsn: str) -> None:
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        row = await (
            await conn.execute(
                "SELECT c.relrowsecurity, c.relforcerowsecurity,"
                " (SELECT array_agg(p.polname ORDER BY p.polname) FROM pg_policy p WHERE p.polrelid = c.oid),"
                " has_table_privilege('dataworkflows_app', c.oid, 'SELECT, INSERT'),"
                " has_table_privilege('dataworkflows_maintenance', c.oid, 'SELECT, DELETE')"
                " FROM pg_class c WHERE c.relnamespace = 'dw'::regnamespace AND c.relname = 'documents'"
            )
        ).fetchone()
        assert row == (True, True, ["all_tenants", "tenant_isolation"], True, True)


async def test_in_a_worker_a_hostile_render_is_stopped_while_another_run_finishes(db: Database, dsn: str) -> None:
    """A real worker (its own template pool and services): a template with no step limit runs until
    the wall-clock limit kills its helper and fails its node, while a run started after it renders a
    large document in the other helper, stores it and finishes first."""
    await make_templates(
        db, spin=("text", HOSTILE["loops"]), big=("text", "{% for i in range(n) %}line {{ i }}\n{% endfor %}")
    )
    await publish(db, wf("spin", render_node("doc", templateId="briefs/spin")))
    await publish(db, wf("big", render_node("doc", templateId="briefs/big", data={"n": "{{ trigger.n }}"})))
    hostile = await start(db, "spin", {})
    fine = await start(db, "big", {"n": 200})
    settings = Settings(
        database_url=dsn,
        worker_poll_seconds=0.2,
        recovery_interval_seconds=0.5,
        template_timeout_seconds=1.5,
        template_max_steps=10**9,
        document_inline_bytes=100,
    )
    ended: dict[UUID, float] = {}
    stop = asyncio.Event()
    began = asyncio.get_running_loop().time()
    task = asyncio.create_task(run_worker(settings, concurrency=4, install_signal_handlers=False, stop=stop))
    try:
        while len(ended) < 2 and asyncio.get_running_loop().time() - began < 30:
            for execution_id in (hostile, fine):
                row = await db.fetch_one("get_execution", id=execution_id)
                if execution_id not in ended and row is not None and row["status"] in ("Succeeded", "Failed"):
                    ended[execution_id] = asyncio.get_running_loop().time() - began
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
    assert set(ended) == {hostile, fine}, ended
    assert ended[fine] < ended[hostile], ended
    [failed] = await attempts(db, hostile)
    assert failed["error"]["code"] == "template_budget_exceeded" and "longer than 1.5s" in failed["error"]["message"]
    outputs = (await nodes(db, fine))["doc"]["outputs"]
    stored = await db.document_templates.get_document(UUID(outputs["documentId"]))
    assert stored is not None and stored.body == "".join(f"line {i}\n" for i in range(200))


async def test_loading_the_examples_again_leaves_what_an_operator_changed(
    db: Database, conditions: ConditionPool
) -> None:
    """`up` loads the examples at every start: it published the fixture's version over an operator's
    publish or rollback, and made the fixture's text the latest version of a template they changed."""
    from dataworkflows.definitions import checksum
    from dataworkflows.examples import load_templates
    from dataworkflows.publishing import compile_for_publish, prepare_definition

    registry = default_registry()
    await load_template_sets(db)
    await load_templates(db)
    await load_examples(db, registry, conditions)
    # An operator publishes a v2 of an example, saves a template's text and a workflow template.
    raw = next(d for name, d in example_definitions() if d["id"] == "simple-echo")
    changed = await prepare_definition({**raw, "displayName": "Ours now"}, registry, conditions)
    version, _ = await db.workflows.save_definition(changed, "ops")
    await db.workflows.publish(
        workflow_id="simple-echo",
        version=version,
        plan=compile_for_publish(changed.definition, version),
        principal="ops",
    )
    footer = await db.document_templates.get_version("project-briefs", "footer", None)
    assert footer is not None
    ours = {"format": footer.format, "body": "OPERATOR FOOTER", "sampleData": {}}
    await db.document_templates.add_version(
        set_id="project-briefs",
        name="footer",
        format=footer.format,
        body="OPERATOR FOOTER",
        sample_data={},
        checksum=checksum(ours),
        principal="ops",
    )
    template = (await db.workflows.list_templates(limit=1))[0]
    full = await db.workflows.get_template(template.id)
    assert full is not None and full.definition is not None
    await db.workflows.add_template(
        template_id=template.id,
        display_name="Ours",
        description=None,
        parameters=full.parameters,
        definition_template=full.definition,
        checksum="sha256:ours",
        principal="ops",
    )
    # `up` starts again.
    await load_template_sets(db)
    await load_templates(db)
    await load_examples(db, registry, conditions)
    workflow = await db.workflows.get("simple-echo")
    assert workflow is not None and workflow.current_version == version and workflow.display_name == "Ours now"
    latest = await db.document_templates.get_version("project-briefs", "footer", None)
    assert latest is not None and (latest.body, latest.created_by) == ("OPERATOR FOOTER", "ops")
    again = await db.workflows.get_template(template.id)
    assert again is not None and (again.display_name, again.created_by) == ("Ours", "ops")
