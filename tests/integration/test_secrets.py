"""Issue 14, item 5: connection allow-lists (publish and run time) and the scrubbing of trigger
values and secrets from recorded errors and log lines, end to end."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any, ClassVar
from uuid import UUID

import msgspec
import psycopg
import pytest
import structlog
from litestar.testing import AsyncTestClient
from structlog.testing import LogCapture

from dataworkflows.actions import (
    ActionContext,
    ActionRegistry,
    ActionResult,
    ActionServices,
    ResourceLink,
    default_registry,
)
from dataworkflows.api.app import create_app
from dataworkflows.conditions import ConditionPool
from dataworkflows.config import Settings
from dataworkflows.credentials import Cipher
from dataworkflows.db import Database
from dataworkflows.http_client import make_http_client
from dataworkflows.logs import processors
from dataworkflows.publishing import compile_for_publish, prepare_definition
from dataworkflows.runtime import Runtime, RuntimeSettings
from dataworkflows.sqlfiles import load_migrations
from dataworkflows.statuses import AttemptStatus
from dataworkflows.template_pool import TemplatePool
from dataworkflows.workers.app import build_services
from tests.conftest import start
from tests.fakes import SLACK_TOKEN, FakeServers, fake_servers
from tests.integration.test_api import assert_problem

KEY = Cipher.generate_key()
FAST = {"maxAttempts": 2, "initialDelay": "PT0.05S", "backoffMultiplier": 2, "maxDelay": "PT1S", "jitter": False}
PASSWORD = "Hunter2-Correct-Horse"  # mixed case: a URL host is lower-cased on its way into the message
LEAKED = "leaky-secret-value-0123456789"


class LeakyParams(msgspec.Struct, frozen=True, rename="camel", forbid_unknown_fields=True):
    connection: str = "leaky"


class LeakyAction:
    """A careless third-party action: it returns its credential in its outputs and its error."""

    type_name: ClassVar[str] = "test.leaky"
    description: ClassVar[str] = "echoes its credential"
    connector: ClassVar[str] = "test"
    Params: ClassVar[type[msgspec.Struct]] = LeakyParams

    async def execute(self, ctx: ActionContext, params: Any) -> ActionResult:
        secret = (await ctx.require_services().credentials.get(params.connection)).reveal()
        if ctx.trigger.get("fail"):
            return ActionResult.failed("leaky_failed", f"the server refused token {secret}")
        return ActionResult.succeeded({"token": secret, "wrapped": {"list": [f"Bearer {secret}"]}})


@pytest.fixture
async def fakes() -> AsyncIterator[FakeServers]:
    async with fake_servers() as servers:
        yield servers


@pytest.fixture
async def runtime(
    db: Database,
    conditions: ConditionPool,
    templates: TemplatePool,
    fakes: FakeServers,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Runtime]:
    monkeypatch.setenv("DW_CONNECTION_LEAKY", LEAKED)
    monkeypatch.setenv("DW_CONNECTION_SHADOWED", SLACK_TOKEN)
    settings = Settings(
        http_allowed_hosts=f"127.0.0.1:{fakes.port}",
        slack_api_url=f"{fakes.base}/slack/api",
        credentials_key=KEY,
    )
    http = make_http_client(settings.allowed_hosts)
    services: ActionServices = build_services(settings, db, http)
    try:
        yield Runtime(
            db, registry(), RuntimeSettings(worker_id="w", lease_seconds=10), conditions, services, templates=templates
        )
    finally:
        await http.aclose()


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(Settings(database_url=dsn, credentials_key=KEY))) as c:
        yield c


@pytest.fixture
def logged() -> Iterator[LogCapture]:
    """Log lines as the production chain leaves them (scrubbing included), captured."""
    capture = LogCapture()
    structlog.configure(processors=processors(capture), cache_logger_on_first_use=False)
    try:
        yield capture
    finally:
        structlog.reset_defaults()


def workflow(workflow_id: str, *nodes: dict[str, Any]) -> dict[str, Any]:
    return {"id": workflow_id, "displayName": workflow_id, "startNode": nodes[0]["id"], "nodes": list(nodes)}


def slack_node(connection: str | None = None) -> dict[str, Any]:
    parameters: dict[str, Any] = {"channel": "C1", "text": "hi"}
    if connection is not None:
        parameters["connection"] = connection
    return {"id": "post", "actionType": "slack.post-message", "parameters": parameters, "retryPolicy": FAST}


def registry() -> ActionRegistry:
    actions = default_registry()
    actions.register(LeakyAction())
    actions.register(CodeLeakyAction())
    actions.register(LinkLeakyAction())
    return actions


async def publish(db: Database, raw: dict[str, Any]) -> None:
    """As tests.conftest.publish, with the test's action registered (no publish-time connection
    check: these tests are about the run's)."""
    conditions = ConditionPool(size=1)
    try:
        prepared = await prepare_definition(raw, registry(), conditions)
    finally:
        await conditions.close()
    version, _ = await db.workflows.save_definition(prepared, "tests")
    definition = prepared.definition
    plan = compile_for_publish(definition, version)
    await db.workflows.publish(workflow_id=definition.id, version=version, plan=plan, principal="tests")


async def run(db: Database, runtime: Runtime, raw: dict[str, Any], trigger: dict[str, Any]) -> UUID:
    await publish(db, raw)
    execution_id = await start(db, raw["id"], trigger)
    await runtime.run_execution(execution_id)
    return UUID(str(execution_id))


async def stored_texts(db: Database, execution_id: UUID) -> dict[str, str]:
    """Every place a run's errors are recorded, as text."""
    queries = {
        "attempts": "SELECT error, outputs, parameters FROM dw.action_executions WHERE execution_id = %s",
        "nodes": "SELECT error, outputs FROM dw.node_states WHERE execution_id = %s",
        "execution": "SELECT error FROM dw.executions WHERE id = %s",
        "v_executions": "SELECT error_message FROM dw.v_executions WHERE id = %s",
        "dead_letters": "SELECT error FROM dw.dead_letters WHERE execution_id = %s",
        "v_dead_letters": "SELECT error_message FROM dw.v_dead_letters WHERE execution_id = %s",
        "events": "SELECT details FROM dw.execution_events WHERE execution_id = %s",
    }
    found = {}
    async with db.connection() as conn:
        for name, sql in queries.items():
            rows = await (await conn.execute(sql, (execution_id,))).fetchall()
            found[name] = json.dumps([list(row) for row in rows], default=str)
    return found


# --- allow-lists through the API ---------------------------------------------------------------


def crm_secret(token: str) -> str:
    return json.dumps({"hosts": ["crm.example.com"], "bearer": token})


async def test_allow_lists_are_set_on_create_changed_later_and_kept_on_rotation(client: AsyncTestClient[Any]) -> None:
    created = await client.put("/api/v1/connections/crm", json={"kind": "http", "secret": crm_secret("s3cret-token")})
    assert created.status_code == 200
    assert created.json()["allowedWorkflows"] == [], "a new connection is usable by no workflow until allowed"

    changed = await client.patch("/api/v1/connections/crm", json={"allowedWorkflows": ["sync-b", "sync-a", "sync-a"]})
    assert changed.status_code == 200 and changed.json()["allowedWorkflows"] == ["sync-a", "sync-b"]
    rotated = await client.put("/api/v1/connections/crm", json={"kind": "http", "secret": crm_secret("new-token")})
    assert rotated.json()["allowedWorkflows"] == ["sync-a", "sync-b"], "rotating the secret keeps the list"
    # "*" alone or ids, not both: the mix was stored as ["*"], dropping the ids without a word.
    for mixed in (["x", "*"], ["*", "x"]):
        body = {"kind": "http", "secret": crm_secret("other-token"), "allowedWorkflows": mixed}
        refused = assert_problem(await client.put("/api/v1/connections/crm", json=body), 422)
        assert [(e["pointer"], e["code"]) for e in refused["errors"]] == [
            (f"/allowedWorkflows/{mixed.index('*')}", "all_with_ids")
        ], refused
        assert "other-token" not in json.dumps(refused)
        patched = await client.patch("/api/v1/connections/crm", json={"allowedWorkflows": mixed})
        assert assert_problem(patched, 422)["errors"][0]["code"] == "all_with_ids"
    kept = (await client.get("/api/v1/connections/crm")).json()["allowedWorkflows"]
    assert kept == ["sync-a", "sync-b"], "a refused request changes nothing"
    everyone = await client.put(
        "/api/v1/connections/crm",
        json={"kind": "http", "secret": crm_secret("new-token"), "allowedWorkflows": ["*"]},
    )
    assert everyone.json()["allowedWorkflows"] == ["*"]
    one = (await client.get("/api/v1/connections/crm")).json()
    assert one["allowedWorkflows"] == ["*"] and "secret" not in one
    listed = (await client.get("/api/v1/connections")).json()
    assert [(c["name"], c["allowedWorkflows"]) for c in listed] == [("crm", ["*"])]

    bad = assert_problem(await client.patch("/api/v1/connections/crm", json={"allowedWorkflows": ["no spaces"]}), 422)
    assert "no spaces" in bad["detail"] and bad["errors"][0]["pointer"] == "/allowedWorkflows/0"
    long_id = {"allowedWorkflows": ["ok", "x" * 5000]}
    bad = assert_problem(await client.patch("/api/v1/connections/crm", json=long_id), 422)
    assert bad["errors"][0]["pointer"] == "/allowedWorkflows/1" and "x" * 101 not in json.dumps(bad)
    assert_problem(await client.patch("/api/v1/connections/crm", json={"allowedWorkflows": "sync-a"}), 400)
    assert_problem(await client.patch("/api/v1/connections/crm", json={"other": []}), 400)
    assert_problem(await client.patch("/api/v1/connections/nope", json={"allowedWorkflows": []}), 404)
    assert_problem(await client.get("/api/v1/connections/nope"), 404)
    too_many = {"allowedWorkflows": [f"w{i}" for i in range(1001)]}
    assert_problem(await client.patch("/api/v1/connections/crm", json=too_many), 422)


# --- kinds and the shape of their secrets ----------------------------------------------------------


async def test_an_unknown_kind_or_a_secret_its_actions_cannot_use_is_refused_when_stored(
    client: AsyncTestClient[Any],
) -> None:
    """Before, any kind was stored (ftp), and an http connection whose secret was a bare token was
    stored and failed only when a run used it (connection_invalid)."""
    bare = "Sup3r-Secret-Token-42"
    for body, pointers in [
        ({"kind": "ftp", "secret": bare}, ["/kind"]),
        ({"kind": "HTTP", "secret": crm_secret(bare)}, ["/kind"]),
        ({"kind": "http", "secret": bare}, ["/secret"]),
        ({"kind": "http", "secret": json.dumps({"bearer": bare})}, ["/secret/hosts"]),
        (
            {"kind": "http", "secret": json.dumps({"hosts": ["https://crm.example.com"], "bearer": bare})},
            ["/secret/hosts/0"],
        ),
        ({"kind": "slack", "secret": json.dumps({"token": bare})}, ["/secret"]),
        ({"kind": "monday", "secret": f"{bare} {bare}"}, ["/secret"]),
        ({"kind": "ftp", "secret": "  \n"}, ["/kind", "/secret"]),
    ]:
        answer = await client.put("/api/v1/connections/crm", json=body)
        problem = assert_problem(answer, 422)
        assert problem["code"] == "invalid_input"
        assert [entry["pointer"] for entry in problem["errors"]] == pointers, problem
        assert bare not in answer.text and "Sup3r" not in answer.text, "the secret is never echoed"
        assert_problem(await client.get("/api/v1/connections/crm"), 404)

    stored = await client.put("/api/v1/connections/crm", json={"kind": "http", "secret": crm_secret(bare)})
    assert stored.status_code == 200 and stored.json()["kind"] == "http"


async def test_a_connection_stored_with_a_kind_no_longer_taken_stays_readable(
    client: AsyncTestClient[Any], postgresql: psycopg.Connection
) -> None:
    with postgresql.transaction():
        postgresql.execute(
            "INSERT INTO dw.connections (tenant_id, name, kind, secret, key_id, allowed_workflows) "
            "VALUES ('default', 'legacy', 'ftp', '\\x00', 'k', '{sync}')"
        )
    one = await client.get("/api/v1/connections/legacy")
    assert one.status_code == 200 and one.json()["kind"] == "ftp"
    assert [c["kind"] for c in (await client.get("/api/v1/connections")).json()] == ["ftp"]
    changed = await client.patch("/api/v1/connections/legacy", json={"allowedWorkflows": ["sync", "other"]})
    assert changed.status_code == 200 and changed.json()["kind"] == "ftp"
    # Storing its secret again takes a kind of today.
    assert_problem(await client.put("/api/v1/connections/legacy", json={"kind": "ftp", "secret": "t"}), 422)
    rotated = await client.put("/api/v1/connections/legacy", json={"kind": "slack", "secret": "xoxb-1"})
    assert rotated.status_code == 200 and rotated.json()["allowedWorkflows"] == ["other", "sync"]
    assert_problem(await client.delete("/api/v1/connections/nope"), 404)
    assert (await client.delete("/api/v1/connections/legacy")).status_code == 204


async def test_publish_refuses_a_stored_connection_the_workflow_may_not_use(client: AsyncTestClient[Any]) -> None:
    for name, allowed in (("slack", ["someone-else"]), ("slack-ops", ["ops"])):
        body = {"kind": "slack", "secret": SLACK_TOKEN, "allowedWorkflows": allowed}
        assert (await client.put(f"/api/v1/connections/{name}", json=body)).status_code == 200

    # The action's default connection ("slack") counts; so does a forEach's action.
    raw = workflow(
        "notify",
        slack_node(),
        {
            "id": "each",
            "nodeType": "forEach",
            "parameters": {
                "items": [1, 2],
                "action": {
                    "actionType": "slack.post-message",
                    "parameters": {"channel": "C", "text": "x", "connection": "slack-ops"},
                },
            },
        },
    )
    assert (await client.post("/api/v1/workflows", json=raw)).status_code == 201
    body = assert_problem(await client.post("/api/v1/workflows/notify/publish"), 422)
    assert body["code"] == "connection_not_allowed"
    assert [(e["pointer"], e["code"]) for e in body["errors"]] == [
        ("/nodes/0/parameters/connection", "connection_not_allowed"),
        ("/nodes/1/parameters/action/parameters/connection", "connection_not_allowed"),
    ]
    assert SLACK_TOKEN not in json.dumps(body)
    other = {**raw, "id": "notify-now"}
    assert assert_problem(await client.post("/api/v1/workflows?autoActivate=true", json=other), 422)["code"] == (
        "connection_not_allowed"
    )

    await client.patch("/api/v1/connections/slack", json={"allowedWorkflows": ["notify"]})
    await client.patch("/api/v1/connections/slack-ops", json={"allowedWorkflows": ["*"]})
    published = await client.post("/api/v1/workflows/notify/publish")
    assert published.status_code == 200 and published.json()["status"] == "Active"

    # Not stored (an environment connection, or one stored later) or chosen by a template: the run
    # decides.
    later = workflow("later", slack_node("not-stored-yet"), {**slack_node("{{ trigger.conn }}"), "id": "dyn"})
    assert (await client.post("/api/v1/workflows?autoActivate=true", json=later)).status_code == 201


async def test_publish_refuses_a_stored_connection_of_another_kind_than_its_action(
    client: AsyncTestClient[Any],
) -> None:
    """A node whose stored connection has another kind than its action's connector (a Slack node
    naming an http connection) is refused at publish, each with a pointer to its connection field.
    It was published, and its run sent the http connection's JSON to Slack as a token."""
    crm = {"kind": "http", "secret": crm_secret("crm-bearer-token"), "allowedWorkflows": ["*"]}
    assert (await client.put("/api/v1/connections/crm", json=crm)).status_code == 200
    slack = {"kind": "slack", "secret": SLACK_TOKEN, "allowedWorkflows": ["*"]}
    assert (await client.put("/api/v1/connections/slack", json=slack)).status_code == 200
    call = {"id": "call", "actionType": "http.request", "parameters": {"url": "https://crm.example.com/x"}}
    raw = workflow(
        "crossed",
        slack_node("crm"),
        {**call, "parameters": {**call["parameters"], "connection": "slack"}},
        {
            "id": "each",
            "nodeType": "forEach",
            "parameters": {
                "items": [1],
                "action": {"actionType": "monday.get-items", "parameters": {"boardId": 1, "connection": "crm"}},
            },
        },
    )
    assert (await client.post("/api/v1/workflows", json=raw)).status_code == 201
    body = assert_problem(await client.post("/api/v1/workflows/crossed/publish"), 422)
    assert body["code"] == "connection_kind_mismatch", body
    assert [(e["pointer"], e["code"]) for e in body["errors"]] == [
        ("/nodes/0/parameters/connection", "connection_kind_mismatch"),
        ("/nodes/1/parameters/connection", "connection_kind_mismatch"),
        ("/nodes/2/parameters/action/parameters/connection", "connection_kind_mismatch"),
    ], body
    assert (
        "connection 'crm' has kind 'http', but slack.post-message takes a 'slack' connection"
        in body["errors"][0]["detail"]
    )
    assert SLACK_TOKEN not in json.dumps(body) and "crm-bearer-token" not in json.dumps(body)
    assert (await client.get("/api/v1/workflows/crossed")).json()["status"] == "Draft", "not published"

    # autoActivate refuses it before the Draft is written.
    refused = assert_problem(await client.post("/api/v1/workflows?autoActivate=true", json={**raw, "id": "now"}), 422)
    assert refused["code"] == "connection_kind_mismatch"
    assert_problem(await client.get("/api/v1/workflows/now"), 404)

    # A connection the workflow may not use and of another kind: both are said, at its pointer.
    await client.patch("/api/v1/connections/crm", json={"allowedWorkflows": ["someone-else"]})
    both = assert_problem(await client.post("/api/v1/workflows/crossed/publish"), 422)
    assert both["code"] == "connection_not_allowed"
    assert [(e["pointer"], e["code"]) for e in both["errors"]][:2] == [
        ("/nodes/0/parameters/connection", "connection_not_allowed"),
        ("/nodes/0/parameters/connection", "connection_kind_mismatch"),
    ], both

    # Each node naming a connection of its action's kind, or one not stored (an environment
    # connection has no kind; the run decides), publishes.
    to_crm = {**call, "parameters": {**call["parameters"], "connection": "crm"}}
    fixed = workflow("straight", slack_node("slack"), to_crm)
    await client.patch("/api/v1/connections/crm", json={"allowedWorkflows": ["*"]})
    assert (await client.post("/api/v1/workflows?autoActivate=true", json=fixed)).status_code == 201
    elsewhere = workflow("env-only", slack_node("from-the-environment"))
    assert (await client.post("/api/v1/workflows?autoActivate=true", json=elsewhere)).status_code == 201


async def test_a_run_fails_a_node_whose_connection_was_stored_again_with_another_kind(
    client: AsyncTestClient[Any], db: Database, runtime: Runtime, fakes: FakeServers, logged: LogCapture
) -> None:
    """Published with a Slack connection that is then stored again as an http one: the node fails
    for good (connection_kind_mismatch, not retried), nothing is sent, and the secret is nowhere in
    the run's records or logs. It sent the http connection's JSON to Slack as the token."""
    body = {"kind": "slack", "secret": SLACK_TOKEN, "allowedWorkflows": ["*"]}
    assert (await client.put("/api/v1/connections/team", json=body)).status_code == 200
    raw = workflow("announce", slack_node("team"))
    execution_id = await run(db, runtime, raw, {})
    execution = await db.fetch_one("get_execution", id=execution_id)
    assert execution is not None and execution["status"] == "Succeeded"
    assert len(fakes.state.slack_messages) == 1

    secret = crm_secret("crm-bearer-token")
    assert (await client.put("/api/v1/connections/team", json={"kind": "http", "secret": secret})).status_code == 200
    execution_id = await run(db, runtime, raw, {})
    attempts = await db.fetch_all("list_attempts", id=execution_id)
    assert [(a["status"], a["error"]["code"]) for a in attempts] == [("Failed", "connection_kind_mismatch")], (
        "permanent: not retried"
    )
    message = attempts[0]["error"]["message"]
    assert "connection 'team' has kind 'http', but slack.post-message takes a 'slack' connection" in message, message
    assert len(fakes.state.slack_messages) == 1, "nothing was sent with the http connection's secret"
    for sink, text in (await stored_texts(db, execution_id)).items():
        assert "crm-bearer-token" not in text and "crm.example.com" not in text, sink
    assert "crm-bearer-token" not in json.dumps(logged.entries, default=str)


async def test_a_run_cannot_use_a_connection_that_does_not_admit_its_workflow(
    client: AsyncTestClient[Any], db: Database, runtime: Runtime, fakes: FakeServers
) -> None:
    body = {"kind": "slack", "secret": SLACK_TOKEN, "allowedWorkflows": ["owner-flow"]}
    assert (await client.put("/api/v1/connections/slack-finance", json=body)).status_code == 200
    # The connection is chosen by the caller's input, so publish cannot see it: the run refuses it.
    raw = workflow("deputy", slack_node("{{ trigger.conn }}"))
    execution_id = await run(db, runtime, raw, {"conn": "slack-finance"})
    attempts = await db.fetch_all("list_attempts", id=execution_id)
    assert [(a["status"], a["error"]["code"]) for a in attempts] == [("Failed", "connection_not_allowed")], (
        "permanent: not retried"
    )
    # The name came from the trigger, so the recorded message scrubs it (see the revoked case below).
    assert "may not be used by workflow 'deputy'" in attempts[0]["error"]["message"]
    assert fakes.state.slack_messages == [], "nothing was sent with the borrowed token"
    assert SLACK_TOKEN not in json.dumps(await stored_texts(db, execution_id))

    # A refused stored connection does not fall back to an environment one of the same name.
    body = {"kind": "slack", "secret": SLACK_TOKEN, "allowedWorkflows": []}
    assert (await client.put("/api/v1/connections/shadowed", json=body)).status_code == 200
    execution_id = await run(db, runtime, workflow("shadow", slack_node("{{ trigger.conn }}")), {"conn": "shadowed"})
    attempts = await db.fetch_all("list_attempts", id=execution_id)
    assert [a["error"]["code"] for a in attempts] == ["connection_not_allowed"]

    # Allowed later: the same workflow runs.
    await client.patch("/api/v1/connections/slack-finance", json={"allowedWorkflows": ["deputy"]})
    execution_id = await run(db, runtime, raw, {"conn": "slack-finance"})
    execution = await db.fetch_one("get_execution", id=execution_id)
    assert execution is not None and execution["status"] == "Succeeded"
    assert len(fakes.state.slack_messages) == 1

    # Published while allowed, revoked afterwards: the run refuses it, naming it.
    await client.patch("/api/v1/connections/slack-finance", json={"allowedWorkflows": ["literal"]})
    await publish(db, workflow("literal", slack_node("slack-finance")))
    await client.patch("/api/v1/connections/slack-finance", json={"allowedWorkflows": []})
    execution_id = await run(db, runtime, workflow("literal", slack_node("slack-finance")), {})
    attempts = await db.fetch_all("list_attempts", id=execution_id)
    assert [a["error"]["code"] for a in attempts] == ["connection_not_allowed"]
    assert "connection 'slack-finance' may not be used by workflow 'literal'" in attempts[0]["error"]["message"]


async def test_environment_connections_are_usable_by_every_workflow(db: Database, runtime: Runtime) -> None:
    node = {"id": "leak", "actionType": "test.leaky", "parameters": {}, "retryPolicy": FAST}
    execution_id = await run(db, runtime, workflow("any-flow", node), {})
    execution = await db.fetch_one("get_execution", id=execution_id)
    assert execution is not None and execution["status"] == "Succeeded"


def test_the_migration_admits_every_workflow_to_existing_connections(postgresql: psycopg.Connection) -> None:
    """Upgrading: connections stored before 0020 keep working for every workflow; a row inserted
    afterwards without a list admits none. (As the tables' owner: the application role may not
    alter them.)"""
    migration = next(m for m in load_migrations() if m.version == "0020")
    with postgresql.transaction(force_rollback=True):
        postgresql.execute("ALTER TABLE dw.connections DROP COLUMN allowed_workflows")
        postgresql.execute(
            "INSERT INTO dw.connections (tenant_id, name, kind, secret, key_id) "
            "VALUES ('default', 'old', 'slack', '\\x00', 'k')"
        )
        postgresql.execute(migration.sql)
        postgresql.execute(
            "INSERT INTO dw.connections (tenant_id, name, kind, secret, key_id) "
            "VALUES ('default', 'new', 'slack', '\\x00', 'k')"
        )
        rows = postgresql.execute("SELECT name, allowed_workflows FROM dw.connections ORDER BY name").fetchall()
    assert [tuple(r) for r in rows] == [("new", []), ("old", ["*"])]


# --- scrubbing ---------------------------------------------------------------------------------


async def test_a_trigger_value_in_a_url_host_is_scrubbed_from_every_recorded_error_and_log_line(
    db: Database, runtime: Runtime, client: AsyncTestClient[Any], logged: LogCapture
) -> None:
    node = {
        "id": "call",
        "actionType": "http.request",
        "parameters": {"url": "http://{{ trigger.nested.password }}.invalid/login"},
        "retryPolicy": FAST,
    }
    trigger = {"user": "ann", "nested": {"password": PASSWORD}}
    execution_id = await run(db, runtime, workflow("login", node), trigger)

    texts = await stored_texts(db, execution_id)
    assert "cannot resolve" in texts["attempts"] and "[redacted].invalid" in texts["attempts"]
    # The rendered URL is the run's input and is kept as such (action_executions.parameters); the
    # errors are scrubbed everywhere they are recorded.
    rows = await db.fetch_all("list_attempts", id=execution_id)
    texts["attempts"] = json.dumps([a["error"] for a in rows])
    for sink, text in texts.items():
        assert PASSWORD.lower() not in text.lower(), f"{sink} shows the password: {text}"
    assert "[redacted]" in texts["v_executions"] and "[redacted]" in texts["dead_letters"]
    assert "[redacted]" in texts["events"]

    shown = (await client.get(f"/api/v1/executions/{execution_id}")).json()
    assert PASSWORD.lower() not in json.dumps(shown["error"]).lower()
    assert shown["trigger"] == trigger, "the trigger itself is kept as given"

    lines = json.dumps(logged.entries, default=str)
    assert "execution finished" in lines and "[redacted]" in lines
    assert PASSWORD.lower() not in lines.lower()


async def test_resolved_secrets_never_reach_outputs_errors_or_logs(
    db: Database, runtime: Runtime, logged: LogCapture
) -> None:
    node = {"id": "leak", "actionType": "test.leaky", "parameters": {}, "retryPolicy": FAST}
    execution_id = await run(db, runtime, workflow("leaky-ok", node), {"user": "ann-the-user"})
    attempts = await db.fetch_all("list_attempts", id=execution_id)
    assert attempts[0]["outputs"] == {"token": "[redacted]", "wrapped": {"list": ["Bearer [redacted]"]}}
    assert attempts[0]["parameters"] == {}, "parameters name the connection (by default), never hold the secret"

    execution_id = await run(db, runtime, workflow("leaky-fail", node), {"fail": True})
    texts = await stored_texts(db, execution_id)
    assert "the server refused token [redacted]" in texts["attempts"]
    for sink, text in texts.items():
        assert LEAKED not in text, sink
    assert LEAKED not in json.dumps(logged.entries, default=str)


async def test_a_secret_in_an_action_s_error_never_reaches_what_the_run_reads_of_it(
    db: Database, runtime: Runtime, client: AsyncTestClient[Any]
) -> None:
    """An error is data the run reads (`errors` in a failure handler's templates, conditions and
    transforms; a forEach's `errors` outputs), recorded as parameters and outputs: the secrets its
    nodes resolved are scrubbed from it as from outputs. They were scrubbed only where the error was
    recorded as an error (a review: an http.request whose server echoed the bearer token in its
    Content-Encoding showed it, lower-cased, in all three)."""
    failing = {"id": "leak", "actionType": "test.leaky", "parameters": {}, "retryPolicy": {"maxAttempts": 1}}
    failing["edges"] = [{"targetNode": "report", "when": "failure"}]
    report = {
        "id": "report",
        "actionType": "core.echo",
        "parameters": {"message": "failed: {{ errors.leak.message }}"},
        "edges": [{"targetNode": "shape"}],
    }
    shape = {
        "id": "shape",
        "nodeType": "transform",
        "parameters": {"expression": "({seen: errors.leak.message})"},
        "edges": [{"targetNode": "each"}],
    }
    each = {
        "id": "each",
        "nodeType": "forEach",
        "parameters": {
            "items": [1],
            "onItemFailure": "continue",
            "action": {"actionType": "test.leaky", "parameters": {}},
        },
    }
    execution_id = await run(db, runtime, workflow("leaky-handled", failing, report, shape, each), {"fail": True})

    texts = await stored_texts(db, execution_id)
    for sink, text in texts.items():
        assert LEAKED not in text, f"{sink} shows the secret: {text}"
    shown = (await client.get(f"/api/v1/executions/{execution_id}")).json()
    assert shown["status"] == "Succeeded", shown
    nodes = {n["nodeId"]: n for n in shown["nodes"]}
    assert nodes["report"]["outputs"] == {"echo": "failed: the server refused token [redacted]"}
    assert nodes["shape"]["outputs"] == {"seen": "the server refused token [redacted]"}
    assert nodes["each"]["outputs"]["errors"] == [
        {"index": 0, "error": {"code": "leaky_failed", "message": "the server refused token [redacted]"}}
    ]
    actions = (await client.get(f"/api/v1/executions/{execution_id}/actions")).json()
    assert LEAKED not in json.dumps(actions) and LEAKED not in json.dumps(shown)


class CodeLeakyAction(LeakyAction):
    """A careless third-party action that builds its error's code from what the server said (here its
    credential), the code being the one part of an error the scrubber left alone."""

    type_name: ClassVar[str] = "test.code-leaky"

    async def execute(self, ctx: ActionContext, params: Any) -> ActionResult:
        secret = (await ctx.require_services().credentials.get(params.connection)).reveal()
        return ActionResult.failed(f"refused_{secret}", "the server refused the request")


async def test_a_secret_in_an_action_s_error_code_is_never_recorded_or_read(
    db: Database, runtime: Runtime, client: AsyncTestClient[Any], logged: LogCapture
) -> None:
    failing = {"id": "leak", "actionType": "test.code-leaky", "parameters": {}, "retryPolicy": {"maxAttempts": 1}}
    failing["edges"] = [{"targetNode": "report", "when": "failure"}]
    report = {"id": "report", "actionType": "core.echo", "parameters": {"message": "{{ errors.leak.code }}"}}
    execution_id = await run(db, runtime, workflow("code-leaky", failing, report), {})
    texts = await stored_texts(db, execution_id)
    for sink, text in texts.items():
        assert LEAKED not in text, f"{sink} shows the secret: {text}"
    shown = (await client.get(f"/api/v1/executions/{execution_id}")).json()
    actions = (await client.get(f"/api/v1/executions/{execution_id}/actions")).json()
    events = (await client.get(f"/api/v1/executions/{execution_id}/events")).json()
    for answer in (shown, actions, events):
        assert LEAKED not in json.dumps(answer), answer
    assert LEAKED not in json.dumps(logged.entries, default=str)


class LinkLeakyAction(LeakyAction):
    """A careless third-party action that records the resource it touched with its credential in it."""

    type_name: ClassVar[str] = "test.link-leaky"

    async def execute(self, ctx: ActionContext, params: Any) -> ActionResult:
        secret = (await ctx.require_services().credentials.get(params.connection)).reveal()
        link = ResourceLink("crm.item", f"item-for-{secret}", f"id-{secret}", {"token": secret})
        return ActionResult(AttemptStatus.SUCCEEDED, {"ok": True}, resource_links=(link,))


async def test_a_secret_in_an_action_s_resource_links_is_never_recorded_or_answered(
    db: Database, runtime: Runtime, client: AsyncTestClient[Any]
) -> None:
    node = {"id": "link", "actionType": "test.link-leaky", "parameters": {}, "retryPolicy": FAST}
    execution_id = await run(db, runtime, workflow("link-leaky", node), {})
    links = (await client.get("/api/v1/resource-links", params={"executionId": str(execution_id)})).json()
    assert links["items"] if isinstance(links, dict) else links, links
    assert LEAKED not in json.dumps(links), links
    async with db.connection() as conn:
        rows = await (await conn.execute("SELECT * FROM dw.resource_links")).fetchall()
    assert LEAKED not in json.dumps([list(r) for r in rows], default=str)
