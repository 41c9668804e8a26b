"""Issue 6: http.request, Slack, monday.com, credentials, SSRF, resource links, the catalog, all
against local fake servers on loopback."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID

import httpx
import pytest
from litestar import Response as LitestarResponse
from litestar.testing import AsyncTestClient

import tests.fakes as fakes_module
from dataworkflows.actions import default_registry
from dataworkflows.api.app import create_app
from dataworkflows.circuit_breaker import CircuitBreakers
from dataworkflows.conditions import ConditionPool
from dataworkflows.config import Settings
from dataworkflows.credentials import Cipher
from dataworkflows.db import Database
from dataworkflows.errors import DefinitionError
from dataworkflows.http_client import make_http_client
from dataworkflows.runtime import Runtime, RuntimeSettings
from dataworkflows.template_pool import TemplatePool
from dataworkflows.workers.app import build_services
from tests.conftest import publish, start
from tests.fakes import HTTP_TOKEN, MONDAY_TOKEN, SLACK_TOKEN, FakeServers, fake_servers
from tests.integration.test_api import assert_problem
from tests.integration.test_waits import sql

FAST = {"maxAttempts": 3, "initialDelay": "PT0.05S", "backoffMultiplier": 2, "maxDelay": "PT5S", "jitter": False}
CREDENTIAL_KEY = Cipher.generate_key()


@pytest.fixture
async def fakes() -> AsyncIterator[FakeServers]:
    async with fake_servers() as servers:
        yield servers


@pytest.fixture
def env_credentials(monkeypatch: pytest.MonkeyPatch, fakes: FakeServers) -> None:
    monkeypatch.setenv("DW_CONNECTION_SLACK", SLACK_TOKEN + "\n")  # pasted from a file
    monkeypatch.setenv("DW_CONNECTION_MONDAY", MONDAY_TOKEN)
    hosts = [f"127.0.0.1:{fakes.port}"]
    monkeypatch.setenv("DW_CONNECTION_EXAMPLE_API", json.dumps({"hosts": hosts, "bearer": HTTP_TOKEN}))
    monkeypatch.setenv("DW_CONNECTION_PLAIN", HTTP_TOKEN)


@pytest.fixture
async def runtime(
    db: Database, conditions: ConditionPool, templates: TemplatePool, fakes: FakeServers, env_credentials: None
) -> AsyncIterator[Runtime]:
    settings = Settings(
        http_allowed_hosts=f"127.0.0.1:{fakes.port},localhost:{fakes.port}",
        slack_api_url=f"{fakes.base}/slack/api",
        monday_api_url=f"{fakes.base}/monday/v2",
        credentials_key=CREDENTIAL_KEY,
    )
    # These tests check how each answer is taken, several failing ones in a row to one destination:
    # no circuit opens here (circuit breakers: test_circuit_breakers).
    http = make_http_client(settings.allowed_hosts, circuits=CircuitBreakers(failures=0))
    try:
        yield connector_runtime(db, conditions, templates, settings, http)
    finally:
        await http.aclose()


def connector_runtime(
    db: Database, conditions: ConditionPool, templates: TemplatePool, settings: Settings, http: httpx.AsyncClient
) -> Runtime:
    """A runtime whose actions reach the network through `http`, with the services `settings` give."""
    return Runtime(
        db,
        default_registry(),
        RuntimeSettings(worker_id="w", lease_seconds=10),
        conditions,
        build_services(settings, db, http),
        templates=templates,
    )


def node(node_id: str, action: str, retry: dict[str, Any] | None = None, **parameters: Any) -> dict[str, Any]:
    data: dict[str, Any] = {"id": node_id, "actionType": action, "parameters": parameters, "retryPolicy": retry or FAST}
    return data


async def run_one(
    db: Database, runtime: Runtime, workflow_id: str, *nodes: dict[str, Any], trigger: dict[str, Any] | None = None
) -> tuple[UUID, dict[str, Any], list[dict[str, Any]]]:
    raw = {"id": workflow_id, "displayName": workflow_id, "startNode": nodes[0]["id"], "nodes": list(nodes)}
    await publish(db, raw)
    execution_id = await start(db, workflow_id, trigger)
    await runtime.run_execution(execution_id)
    execution = await db.fetch_one("get_execution", id=execution_id)
    attempts = await db.fetch_all("list_attempts", id=execution_id)
    assert execution is not None
    return execution_id, execution, attempts


async def test_http_request_success_with_connection_and_query(
    db: Database, runtime: Runtime, fakes: FakeServers, capsys: pytest.CaptureFixture[str]
) -> None:
    _, execution, attempts = await run_one(
        db,
        runtime,
        "http-ok",
        node(
            "call",
            "http.request",
            url=f"{fakes.base}/http/json",
            query={"q": "{{ trigger.q }}"},
            connection="example-api",
        ),
        trigger={"q": "dataworkflows"},
    )
    assert execution["status"] == "Succeeded"
    outputs = attempts[0]["outputs"]
    assert outputs["status"] == 200 and outputs["body"]["hello"] == "world"
    assert outputs["body"]["authorized"] is True and outputs["body"]["query"] == {"q": "dataworkflows"}
    assert "set-cookie" not in outputs["headers"]
    row_text = json.dumps(attempts, default=str)
    assert HTTP_TOKEN not in row_text and "example-api" in row_text, "rows name the connection, never the secret"
    assert HTTP_TOKEN not in capsys.readouterr().out


async def test_a_header_the_request_could_not_send_fails_the_node_as_invalid_parameters(
    db: Database, runtime: Runtime, fakes: FakeServers
) -> None:
    """httpx sends header values as ASCII: a rendered value with other text (or a line break) used to
    raise out of the action (action_exception, with a traceback in the log); it is now a parameter
    the node's attempt refuses, and says which header."""
    _, execution, attempts = await run_one(
        db,
        runtime,
        "http-header-text",
        node("call", "http.request", url=f"{fakes.base}/http/json", headers={"X-Customer": "{{ trigger.name }}"}),
        trigger={"name": "Jos\u00e9"},
    )
    assert execution["status"] == "Failed"
    assert [(a["status"], a["error"]["code"]) for a in attempts] == [("Failed", "invalid_parameters")]
    assert "X-Customer" in attempts[0]["error"]["message"] and "visible ASCII" in attempts[0]["error"]["message"]


async def test_http_retriable_and_permanent_statuses(db: Database, runtime: Runtime, fakes: FakeServers) -> None:
    _, execution, attempts = await run_one(
        db, runtime, "http-flaky", node("call", "http.request", url=f"{fakes.base}/http/flaky/a")
    )
    assert execution["status"] == "Succeeded"
    assert [(a["status"], (a["error"] or {}).get("code")) for a in attempts] == [
        ("RetriableFailure", "http_503"),
        ("RetriableFailure", "http_503"),
        ("Succeeded", None),
    ]

    _, execution, attempts = await run_one(
        db, runtime, "http-404", node("call", "http.request", url=f"{fakes.base}/http/status/404")
    )
    assert execution["status"] == "Failed"
    assert [(a["status"], a["error"]["code"]) for a in attempts] == [("Failed", "http_404")]
    assert attempts[0]["outputs"]["status"] == 404

    _, execution, attempts = await run_one(
        db,
        runtime,
        "http-expected",
        node("call", "http.request", url=f"{fakes.base}/http/status/404", expectedStatus=[200, 404]),
    )
    assert execution["status"] == "Succeeded"

    _, execution, attempts = await run_one(
        db, runtime, "http-big", node("call", "http.request", url=f"{fakes.base}/http/big", maxResponseBytes=1000)
    )
    assert [a["error"]["code"] for a in attempts] == ["response_too_large"]


async def test_timeout_ms_bounds_the_whole_request(db: Database, runtime: Runtime, fakes: FakeServers) -> None:
    """timeoutMs bounded each read (httpx's timeout), not the request: a server dripping a byte every
    0.2 s held the attempt until the node's own timeout (5 minutes by default). Now it is the whole
    call's deadline: connecting, sending, every redirect and reading the body."""
    began = time.monotonic()
    drip = node("call", "http.request", url=f"{fakes.base}/http/drip", timeoutMs=600)
    _, execution, attempts = await run_one(db, runtime, "drip", {**drip, "retryPolicy": {"maxAttempts": 1}})
    assert execution["status"] == "Failed"
    assert [(a["status"], a["error"]["code"]) for a in attempts] == [("RetriableFailure", "timeout")], attempts
    assert "600 ms" in attempts[0]["error"]["message"], attempts[0]["error"]
    assert time.monotonic() - began < 5, "the attempt outlived timeoutMs by far"


async def test_retry_after_is_honoured(db: Database, runtime: Runtime, fakes: FakeServers) -> None:
    _, execution, attempts = await run_one(
        db,
        runtime,
        "http-429",
        node(
            "call", "http.request", retry={**FAST, "maxAttempts": 2}, url=f"{fakes.base}/http/status/429?retryAfter=1"
        ),
    )
    assert execution["status"] == "Failed" and len(attempts) == 2
    assert attempts[0]["error"]["retryAfter"] == 1.0
    assert (attempts[1]["start_time"] - attempts[0]["end_time"]).total_seconds() >= 0.95


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/x",
        "http://10.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9/",
        "http://[::ffff:10.0.0.1]/",
        "http://localhost:9/",
    ],
)
async def test_ssrf_refusals(db: Database, runtime: Runtime, url: str) -> None:
    _, execution, attempts = await run_one(db, runtime, "ssrf", node("call", "http.request", url=url))
    assert execution["status"] == "Failed"
    assert [a["error"]["code"] for a in attempts] == ["destination_blocked"], "permanent, not retried"


async def test_ssrf_refuses_a_redirect_to_a_private_address(db: Database, runtime: Runtime, fakes: FakeServers) -> None:
    target = f"http://127.0.0.2:{fakes.port}/http/json"  # loopback, but not the allowed host
    _, _execution, attempts = await run_one(
        db, runtime, "ssrf-redirect", node("call", "http.request", url=f"{fakes.base}/http/redirect?to={target}")
    )
    assert [a["error"]["code"] for a in attempts] == ["destination_blocked"]
    assert fakes.state.calls["http:json"] == 0


async def test_slack_post_message(db: Database, runtime: Runtime, fakes: FakeServers) -> None:
    _, execution, attempts = await run_one(
        db,
        runtime,
        "slack-ok",
        node("post", "slack.post-message", channel="C123", text="Deployed {{ trigger.version }}"),
        trigger={"version": "1.2"},
    )
    assert execution["status"] == "Succeeded"
    assert attempts[0]["outputs"] == {"channel": "C123", "ts": "1700000000.000000"}
    assert fakes.state.slack_messages[0]["text"] == "Deployed 1.2"

    _, execution, attempts = await run_one(
        db, runtime, "slack-missing", node("post", "slack.post-message", channel="C-missing", text="x")
    )
    assert [(a["status"], a["error"]["code"]) for a in attempts] == [("Failed", "slack_channel_not_found")]

    _, execution, attempts = await run_one(
        db, runtime, "slack-ratelimited", node("post", "slack.post-message", channel="C-ratelimited", text="x")
    )
    assert execution["status"] == "Succeeded"
    assert [a["status"] for a in attempts] == ["RetriableFailure", "Succeeded"]
    assert attempts[0]["error"]["retryAfter"] == 1.0
    assert (attempts[1]["start_time"] - attempts[0]["end_time"]).total_seconds() >= 0.95

    _, execution, attempts = await run_one(
        db, runtime, "slack-busy", node("post", "slack.post-message", channel="C-busy", text="x")
    )
    assert [a["status"] for a in attempts] == ["RetriableFailure", "Succeeded"]

    _, execution, attempts = await run_one(
        db,
        runtime,
        "slack-no-connection",
        node("post", "slack.post-message", channel="C1", text="x", connection="nope"),
    )
    assert [a["error"]["code"] for a in attempts] == ["connection_not_found"]


async def test_slack_bad_token_is_permanent(db: Database, runtime: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DW_CONNECTION_SLACK_OTHER", "xoxb-wrong")
    _, _execution, attempts = await run_one(
        db, runtime, "slack-auth", node("post", "slack.post-message", channel="C1", text="x", connection="slack-other")
    )
    assert [(a["status"], a["error"]["code"]) for a in attempts] == [("Failed", "slack_invalid_auth")]


async def test_a_secret_too_short_to_scrub_is_refused_when_stored_and_when_used(
    client: AsyncTestClient[Any], db: Database, runtime: Runtime, monkeypatch: pytest.MonkeyPatch, fakes: FakeServers
) -> None:
    """A run's scrubber does not look for values under 4 characters, so such a credential could
    reach logs, errors and outputs: PUT refuses it (422 naming where, never quoting it), and an
    environment connection of that length fails the node before the action sees it."""
    for body, pointer in [
        ({"kind": "slack", "secret": "x9Q"}, "/secret"),
        ({"kind": "http", "secret": json.dumps({"hosts": ["a.example"], "bearer": "x9Q"})}, "/secret/bearer"),
    ]:
        problem = assert_problem(await client.put("/api/v1/connections/short", json=body), 422)
        assert [(e["pointer"], e["code"]) for e in problem["errors"]] == [(pointer, "secret_too_short")]
        assert "x9Q" not in json.dumps(problem)
    assert_problem(await client.get("/api/v1/connections/short"), 404)
    monkeypatch.setenv("DW_CONNECTION_SLACK_SHORT", "x9Q")
    _, execution, attempts = await run_one(
        db, runtime, "slack-short", node("post", "slack.post-message", channel="C1", text="x", connection="slack-short")
    )
    assert execution["status"] == "Failed"
    assert [(a["status"], a["error"]["code"]) for a in attempts] == [("Failed", "secret_too_short")]
    assert fakes.state.calls["slack:C1"] == 0, "the action never ran"


async def test_an_error_code_never_carries_a_remote_echo_of_the_credential(
    db: Database, runtime: Runtime, fakes: FakeServers
) -> None:
    """Slack's `error` and monday's `extensions.code` became the node's error code as sent, and a code
    is a structural key, never scrubbed: a service that repeated the credential in it put the token
    in the run, its attempts, events and dead letter (and the trace's error.type). A remote code
    that is not one (letters, digits, underscores) is now <service>_error; the message keeps the
    remote's words, scrubbed."""
    cases = [
        ("slack-echo", node("post", "slack.post-message", channel="C-echo-auth", text="x"), "slack_error", SLACK_TOKEN),
        (
            "monday-echo",
            node("create", "monday.create-item", boardId="echo-auth", itemName="x"),
            "monday_error",
            MONDAY_TOKEN,
        ),
    ]
    for workflow_id, step, code, token in cases:
        root, _execution, attempts = await run_one(db, runtime, workflow_id, step)
        assert [(a["status"], a["error"]["code"]) for a in attempts] == [("Failed", code)], attempts
        assert "[redacted]" in attempts[0]["error"]["message"], attempts[0]["error"]
        stored = await sql(
            db,
            "SELECT row_to_json(e)::text,"
            " (SELECT json_agg(a)::text FROM dw.action_executions a WHERE a.execution_id = e.id),"
            " (SELECT json_agg(v)::text FROM dw.execution_events v WHERE v.execution_id = e.id),"
            " (SELECT json_agg(d)::text FROM dw.dead_letters d WHERE d.execution_id = e.id)"
            " FROM dw.executions e WHERE e.id = %s",
            root,
        )
        assert all(token not in (text or "") for text in stored[0]), (workflow_id, stored)


async def test_monday_items_filters_paging_errors(db: Database, runtime: Runtime, fakes: FakeServers) -> None:
    fakes.state.boards["42"] = [
        {"id": str(i), "name": f"item {i}", "columns": {"status": "Done" if i % 2 else "Open"}} for i in range(1, 15)
    ]
    _, execution, attempts = await run_one(
        db,
        runtime,
        "monday-get",
        node(
            "get",
            "monday.get-items",
            boardId=42,
            filters=[{"columnId": "status", "compareValue": "Done"}],
            pageSize=3,
            limit=5,
        ),
    )
    assert execution["status"] == "Succeeded"
    outputs = attempts[0]["outputs"]
    assert outputs["count"] == 5 and outputs["pages"] == 2 and outputs["truncated"] is True
    assert [i["id"] for i in outputs["items"]] == ["1", "3", "5", "7", "9"]
    assert outputs["items"][0]["columnValues"] == {"status": "Done"}

    fakes.state.boards["budget"] = [{"id": "1", "name": "a", "columns": {}}]
    _, execution, attempts = await run_one(
        db, runtime, "monday-budget", node("get", "monday.get-items", boardId="budget")
    )
    assert [(a["status"], (a["error"] or {}).get("code")) for a in attempts] == [
        ("RetriableFailure", "monday_COMPLEXITY_BUDGET_EXHAUSTED"),
        ("Succeeded", None),
    ]
    assert attempts[0]["error"]["retryAfter"] == 1

    _, execution, attempts = await run_one(
        db, runtime, "monday-bad-board", node("create", "monday.create-item", boardId=999, itemName="x")
    )
    assert [(a["status"], a["error"]["code"]) for a in attempts] == [("Failed", "monday_InvalidBoardIdException")]

    _, execution, attempts = await run_one(
        db,
        runtime,
        "monday-create-update",
        node(
            "create",
            "monday.create-item",
            boardId=42,
            itemName="Ticket {{ trigger.id }}",
            columnValues={"status": "Open"},
            retry=FAST,
        )
        | {"edges": [{"targetNode": "update"}]},
        node(
            "update",
            "monday.update-item",
            boardId=42,
            itemId="{{ nodes.create.itemId }}",
            columnValues={"status": "Done"},
        ),
        trigger={"id": 7},
    )
    assert execution["status"] == "Succeeded"
    created = fakes.state.created[-1]
    assert created["name"] == "Ticket 7" and created["columns"] == {"status": "Done"}

    _, execution, attempts = await run_one(
        db, runtime, "monday-no-token", node("get", "monday.get-items", boardId=42, connection="monday-missing")
    )
    assert [a["error"]["code"] for a in attempts] == ["connection_not_found"]


async def test_create_item_is_idempotent_across_racing_runs(
    db: Database, runtime: Runtime, fakes: FakeServers, client: AsyncTestClient[Any]
) -> None:
    """The seeds' step 99: duplicate executions for one ticket create one item."""
    fakes.state.create_delay = 0.3  # widen the race window
    raw = {
        "id": "ticket-sync",
        "displayName": "Ticket sync",
        "startNode": "create",
        "nodes": [
            node(
                "create",
                "monday.create-item",
                boardId=42,
                itemName="Ticket {{ trigger.ticketId }}",
                idempotencyKey="{{ trigger.ticketId }}",
                retry={**FAST, "maxAttempts": 10, "initialDelay": "PT0.2S"},
            )
        ],
    }
    await publish(db, raw)
    first, second = (
        await start(db, "ticket-sync", {"ticketId": "T-1"}),
        await start(db, "ticket-sync", {"ticketId": "T-1"}),
    )
    outcomes = await asyncio.gather(runtime.run_execution(first), runtime.run_execution(second))
    assert outcomes == ["Succeeded", "Succeeded"]
    assert fakes.state.calls["monday:create"] == 1, "exactly one item was created"
    outputs = [(await db.fetch_all("list_node_states", id=e))[0]["outputs"] for e in (first, second)]
    assert outputs[0]["itemId"] == outputs[1]["itemId"]
    assert sorted(o["created"] for o in outputs) == [False, True]

    third = await start(db, "ticket-sync", {"ticketId": "T-1"})
    assert await runtime.run_execution(third) == "Succeeded"
    assert fakes.state.calls["monday:create"] == 1
    links = (await client.get("/api/v1/resource-links", params={"type": "monday.item", "key": "42:T-1"})).json()
    assert {(link["action"], link["executionId"]) for link in links} == {
        ("created", str(first if outputs[0]["created"] else second)),
        ("found", str(second if outputs[0]["created"] else first)),
        ("found", str(third)),
    }
    assert {link["externalId"] for link in links} == {outputs[0]["itemId"]}


async def test_a_compensated_create_releases_its_key_and_its_undo_links_its_own(
    db: Database, runtime: Runtime, fakes: FakeServers, client: AsyncTestClient[Any]
) -> None:
    """Planning's note: a compensation's resource links were not recorded, and the item its node
    created stayed linked to the key: the next run for the ticket was handed the id of the item
    the compensation had removed (created: false) instead of creating one. A compensation that
    succeeds releases what its node created; what its own action creates is linked under it."""
    from dataworkflows.compensations import CompensationRunner

    create = node(
        "create",
        "monday.create-item",
        boardId=42,
        itemName="Ticket {{ trigger.ticketId }}",
        idempotencyKey="{{ trigger.ticketId }}",
    )
    create["compensation"] = {
        "actionType": "monday.create-item",
        "parameters": {
            "boardId": 42,
            "itemName": "Cancel {{ trigger.ticketId }} ({{ nodes.create.itemId }})",
            "idempotencyKey": "cancel-{{ trigger.ticketId }}",
        },
    }
    create["edges"] = [{"targetNode": "boom"}]
    boom = node("boom", "core.echo", message="x", simulateFailure="{{ 'permanent' if trigger.fail else none }}")
    await publish(db, {"id": "undone-ticket", "displayName": "U", "startNode": "create", "nodes": [create, boom]})
    first = await start(db, "undone-ticket", {"ticketId": "T-9", "fail": True})
    assert await runtime.run_execution(first) == "Failed"
    runner = CompensationRunner(
        data=db.compensations,
        plans=runtime.plans,
        kinds=runtime.kinds,
        worker_id="w",
        park_threshold_seconds=30.0,
        stopping=asyncio.Event(),
    )
    assert await runner.run(first) == "done"
    (step,) = await db.compensations.steps(first)
    assert step.status == "Succeeded", step.error
    first_item = (await db.fetch_all("list_node_states", id=first))[0]["outputs"]["itemId"]

    again = await start(db, "undone-ticket", {"ticketId": "T-9", "fail": False})
    assert await runtime.run_execution(again) == "Succeeded"
    outputs = (await db.fetch_all("list_node_states", id=again))[0]["outputs"]
    assert outputs["created"] is True and outputs["itemId"] != first_item
    assert fakes.state.calls["monday:create"] == 3  # the item, its undo's, the item again
    links = (await client.get("/api/v1/resource-links", params={"type": "monday.item", "key": "42:T-9"})).json()
    assert sorted((link["action"], link["executionId"], link["externalId"]) for link in links) == sorted(
        [
            ("created", str(first), first_item),
            ("released", str(first), first_item),
            ("created", str(again), outputs["itemId"]),
        ]
    )
    undo = (await client.get("/api/v1/resource-links", params={"type": "monday.item", "key": "42:cancel-T-9"})).json()
    assert [(link["action"], link["executionId"], link["nodeId"]) for link in undo] == [
        ("created", str(first), "create")
    ]
    events = await sql(
        db,
        "SELECT details FROM dw.execution_events WHERE execution_id = %s AND type = 'compensation_succeeded'",
        first,
    )
    assert events[0][0]["resourcesReleased"] == 1


async def test_a_release_keeps_the_id_its_key_had_on_entries_made_before_the_upgrade(
    db: Database, runtime: Runtime, fakes: FakeServers, client: AsyncTestClient[Any]
) -> None:
    """A review: an entry of dw.v_resource_links made before migration 0076 has no id of its own
    (the view shows its key's). Released, the key had none, so the entries of the item a run created
    before the upgrade showed no id, and once the key was created again the new item's: its history
    said the first run had created the second run's item. The release names the id on them."""
    from dataworkflows.compensations import CompensationRunner

    create = node(
        "create",
        "monday.create-item",
        boardId=42,
        itemName="Ticket {{ trigger.ticketId }}",
        idempotencyKey="{{ trigger.ticketId }}",
    )
    create["compensation"] = {"actionType": "core.echo", "parameters": {"message": "undone"}}
    create["edges"] = [{"targetNode": "boom"}]
    boom = node("boom", "core.echo", message="x", simulateFailure="{{ 'permanent' if trigger.fail else none }}")
    await publish(db, {"id": "undone-old", "displayName": "U", "startNode": "create", "nodes": [create, boom]})
    first = await start(db, "undone-old", {"ticketId": "T-9", "fail": True})
    assert await runtime.run_execution(first) == "Failed"
    found = await start(db, "undone-old", {"ticketId": "T-9", "fail": True})
    assert await runtime.run_execution(found) == "Failed"
    # As the entries were written before the upgrade.
    await sql(db, "UPDATE dw.resource_touches SET external_id = NULL")
    runner = CompensationRunner(
        data=db.compensations,
        plans=runtime.plans,
        kinds=runtime.kinds,
        worker_id="w",
        park_threshold_seconds=30.0,
        stopping=asyncio.Event(),
    )
    assert await runner.run(first) == "done"
    first_item = (await db.fetch_all("list_node_states", id=first))[0]["outputs"]["itemId"]
    again = await start(db, "undone-old", {"ticketId": "T-9", "fail": False})
    assert await runtime.run_execution(again) == "Succeeded"
    second_item = (await db.fetch_all("list_node_states", id=again))[0]["outputs"]["itemId"]
    assert second_item != first_item
    links = (await client.get("/api/v1/resource-links", params={"type": "monday.item", "key": "42:T-9"})).json()
    assert sorted((link["action"], link["executionId"], link["externalId"]) for link in links) == sorted(
        [
            ("created", str(first), first_item),
            ("found", str(found), first_item),
            ("released", str(first), first_item),
            ("created", str(again), second_item),
        ]
    )


async def test_a_compensations_claim_is_not_taken_for_over_by_its_nodes_ended_attempt(
    db: Database, runtime: Runtime, fakes: FakeServers
) -> None:
    """A review: a compensation's action claimed its key as execution:node:attempt, its attempt
    numbers its step's. Its node's attempt of that number had ended long before, so another run's
    claim of the key took the live claim for one whose attempt was over: in doubt, it looked the
    item up while the first create was under way and failed for good (monday_outcome_unknown), or
    found nothing and made a second. It waits now (pending), then finds the item made."""
    from dataworkflows.compensations import CompensationRunner

    create = node(
        "create",
        "monday.create-item",
        boardId=42,
        itemName="Ticket {{ trigger.ticketId }}",
        idempotencyKey="{{ trigger.ticketId }}",
    )
    create["compensation"] = {
        "actionType": "monday.create-item",
        "parameters": {
            "boardId": 42,
            "itemName": "Cancel {{ trigger.ticketId }}",
            "idempotencyKey": "cancel-{{ trigger.ticketId }}",
        },
        "retryPolicy": {**FAST, "maxAttempts": 8, "initialDelay": "PT0.3S"},
    }
    create["edges"] = [{"targetNode": "boom"}]
    boom = node("boom", "core.echo", message="x", simulateFailure="permanent")
    await publish(db, {"id": "undone-twice", "displayName": "U", "startNode": "create", "nodes": [create, boom]})
    first = await start(db, "undone-twice", {"ticketId": "T-9"})
    second = await start(db, "undone-twice", {"ticketId": "T-9"})
    assert await runtime.run_execution(first) == "Failed"
    assert await runtime.run_execution(second) == "Failed"
    fakes.state.answer_delay = 1.5  # the first compensation's create is under way a while

    def runner() -> CompensationRunner:
        return CompensationRunner(
            data=db.compensations,
            plans=runtime.plans,
            kinds=runtime.kinds,
            worker_id="w",
            park_threshold_seconds=30.0,
            stopping=asyncio.Event(),
        )

    async def a_moment_later() -> str:
        await asyncio.sleep(0.5)
        return await runner().run(second)

    assert await asyncio.gather(runner().run(first), a_moment_later()) == ["done", "done"]
    for run in (first, second):
        (step,) = await db.compensations.steps(run)
        assert step.status == "Succeeded", step.error
    assert fakes.state.calls["monday:create"] == 2  # the ticket's item, and one undo's
    first_undo = (await db.compensations.steps(first))[0].outputs
    second_undo = (await db.compensations.steps(second))[0].outputs
    assert first_undo == {"itemId": second_undo["itemId"], "created": True}
    assert second_undo["created"] is False


def in_doubt_node(retry: dict[str, Any] | None = None) -> dict[str, Any]:
    """A create whose answer comes after the node's timeout (the fake makes the item, then answers
    late: the attempt never hears of it)."""
    return {
        **node(
            "create",
            "monday.create-item",
            retry or {**FAST, "maxAttempts": 4},
            boardId=77,
            itemName="Ticket T-9",
            idempotencyKey="T-9",
        ),
        "timeout": "PT0.4S",
    }


async def test_a_create_never_answered_is_looked_up_not_made_again(
    db: Database, runtime: Runtime, fakes: FakeServers
) -> None:
    """A review: monday.create-item released its claim after any failure, and a node timeout let the
    next attempt take the claim over: each retry of a create whose answer never came (a timeout, a
    cut connection, a 5xx: monday.com may have made the item) created another item. Now the next
    attempt finds the claim in doubt and looks the item up by name among those made since the key
    was first claimed (an older namesake is not it)."""
    old = {"id": "1", "name": "Ticket T-9", "columns": {}, "created_at": "2026-01-01T00:00:00Z"}
    fakes.state.boards["77"] = [old]
    fakes.state.answer_delay = 1.0
    execution_id, execution, attempts = await run_one(db, runtime, "doubt", in_doubt_node())
    assert execution["status"] == "Succeeded", (execution, attempts)
    assert fakes.state.calls["monday:create"] == 1, "one item, however many attempts"
    assert [a["error"]["code"] for a in attempts if a["error"]] == ["action_timeout"], attempts
    (created,) = fakes.state.created
    outputs = (await db.fetch_all("list_node_states", id=execution_id))[0]["outputs"]
    assert outputs == {"itemId": created["id"], "created": True}
    # Linked: another run of the key finds it without asking monday.com.
    fakes.state.answer_delay = 0
    _, again, _ = await run_one(db, runtime, "doubt-again", in_doubt_node())
    assert again["status"] == "Succeeded" and fakes.state.calls["monday:create"] == 1


async def test_a_create_in_doubt_among_namesakes_fails_and_makes_no_third(
    db: Database, runtime: Runtime, fakes: FakeServers
) -> None:
    """Two items of the name made since the key was claimed (another process made one meanwhile):
    which is this key's cannot be told, and creating again would make a third."""
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    fakes.state.boards["77"] = [{"id": "1", "name": "Ticket T-9", "columns": {}, "created_at": now}]
    fakes.state.answer_delay = 1.0
    _, execution, attempts = await run_one(db, runtime, "doubt", in_doubt_node())
    assert execution["status"] == "Failed", (execution, attempts)
    assert [a["error"]["code"] for a in attempts] == ["action_timeout", "monday_outcome_unknown"], attempts
    assert "2 items" in attempts[-1]["error"]["message"]
    assert fakes.state.calls["monday:create"] == 1


def first_create_answers(monkeypatch: pytest.MonkeyPatch, status: int, body: Any, *, makes: bool) -> None:
    """The fake's first create_item answers `status` with `body`, having made the item or not; the
    later ones behave."""
    real = fakes_module._create
    seen = {"n": 0}

    async def flaky(state: Any, variables: dict[str, Any]) -> Any:
        seen["n"] += 1
        if seen["n"] > 1:
            return await real(state, variables)
        if makes:
            await real(state, variables)
        else:
            state.calls["monday:create"] += 1
        return LitestarResponse(body, status_code=status)

    monkeypatch.setattr(fakes_module, "_create", flaky)


def ticket(key: str, name: str = "Ticket") -> dict[str, Any]:
    retry = {**FAST, "maxAttempts": 3}
    return node("create", "monday.create-item", retry, boardId=78, itemName=name, idempotencyKey=key)


async def test_an_in_doubt_create_never_takes_another_keys_item(
    db: Database, runtime: Runtime, fakes: FakeServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: key A made "Ticket" and linked it; key B's first create answered 502 having made
    nothing, and B's next attempt, in doubt, took A's item (the one of that name) as its own."""
    _, first, attempts_a = await run_one(db, runtime, "key-a", ticket("A"))
    assert first["status"] == "Succeeded"
    item_a = attempts_a[-1]["outputs"]["itemId"]
    first_create_answers(monkeypatch, 502, "bad gateway", makes=False)
    _, second, attempts_b = await run_one(db, runtime, "key-b", ticket("B"))
    assert second["status"] == "Succeeded", attempts_b
    assert attempts_b[-1]["outputs"]["itemId"] not in (item_a, None)
    assert [i["name"] for i in fakes.state.created] == ["Ticket", "Ticket"]


async def test_an_in_doubt_create_never_takes_an_item_a_compensation_undid(
    db: Database, runtime: Runtime, fakes: FakeServers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: a compensation released its node's item ("Ticket T-9"), which its undo left on the
    board (it changed it, or made a cancellation of its own). The next run's first create answered
    502 having made nothing, and its next attempt, in doubt, found the undone item among those of
    the name made lately, linked to no key now, and took it as its own (created: true)."""
    from dataworkflows.compensations import CompensationRunner

    create = node(
        "create", "monday.create-item", boardId=42, itemName="Ticket {{ trigger.ticketId }}", idempotencyKey="T-9"
    )
    create["compensation"] = {"actionType": "core.echo", "parameters": {"message": "undone"}}
    create["edges"] = [{"targetNode": "boom"}]
    boom = node("boom", "core.echo", message="x", simulateFailure="{{ 'permanent' if trigger.fail else none }}")
    await publish(db, {"id": "undone-doubt", "displayName": "U", "startNode": "create", "nodes": [create, boom]})
    first = await start(db, "undone-doubt", {"ticketId": "T-9", "fail": True})
    assert await runtime.run_execution(first) == "Failed"
    runner = CompensationRunner(
        data=db.compensations,
        plans=runtime.plans,
        kinds=runtime.kinds,
        worker_id="w",
        park_threshold_seconds=30.0,
        stopping=asyncio.Event(),
    )
    assert await runner.run(first) == "done"
    undone = (await db.fetch_all("list_node_states", id=first))[0]["outputs"]["itemId"]
    first_create_answers(monkeypatch, 502, "bad gateway", makes=False)
    again = await start(db, "undone-doubt", {"ticketId": "T-9", "fail": False})
    assert await runtime.run_execution(again) == "Succeeded"
    outputs = (await db.fetch_all("list_node_states", id=again))[0]["outputs"]
    assert outputs["itemId"] != undone and outputs["created"] is True
    assert [i["id"] for i in fakes.state.created] == [undone, outputs["itemId"]]


async def test_a_refused_create_gives_up_its_claim_of_a_released_key(
    db: Database, runtime: Runtime, fakes: FakeServers, monkeypatch: pytest.MonkeyPatch, client: AsyncTestClient[Any]
) -> None:
    """A review: a refused create gives its claim up by deleting the key's row, which a released key
    (migration 0076) keeps with its entries: the delete broke their foreign key, and the attempt
    ended in an error of the engine's instead of its retry. The claim is given up, the entries stay."""
    from dataworkflows.compensations import CompensationRunner

    create = node(
        "create", "monday.create-item", boardId=42, itemName="Ticket {{ trigger.ticketId }}", idempotencyKey="T-9"
    )
    create["compensation"] = {"actionType": "core.echo", "parameters": {"message": "undone"}}
    create["edges"] = [{"targetNode": "boom"}]
    boom = node("boom", "core.echo", message="x", simulateFailure="{{ 'permanent' if trigger.fail else none }}")
    await publish(db, {"id": "undone-refused", "displayName": "U", "startNode": "create", "nodes": [create, boom]})
    first = await start(db, "undone-refused", {"ticketId": "T-9", "fail": True})
    assert await runtime.run_execution(first) == "Failed"
    runner = CompensationRunner(
        data=db.compensations,
        plans=runtime.plans,
        kinds=runtime.kinds,
        worker_id="w",
        park_threshold_seconds=30.0,
        stopping=asyncio.Event(),
    )
    assert await runner.run(first) == "done"
    undone = (await db.fetch_all("list_node_states", id=first))[0]["outputs"]["itemId"]
    # Refused (a rate limit): the claim is given up, and the retry creates the item.
    refusal = {
        "errors": [{"message": "Rate limit", "extensions": {"code": "RATE_LIMIT_EXCEEDED", "retry_in_seconds": 0}}]
    }
    first_create_answers(monkeypatch, 429, refusal, makes=False)
    again = await start(db, "undone-refused", {"ticketId": "T-9", "fail": False})
    ended = await runtime.run_execution(again)
    assert ended == "Succeeded", [
        (a["attempt"], a["status"], a["error"]) for a in await db.fetch_all("list_attempts", id=again)
    ]
    attempts = await db.fetch_all("list_attempts", id=again)
    codes = [a["error"]["code"] if a["error"] else None for a in attempts if a["node_id"] == "create"]
    assert codes == ["monday_RATE_LIMIT_EXCEEDED", None], attempts
    outputs = (await db.fetch_all("list_node_states", id=again))[0]["outputs"]
    assert outputs["itemId"] != undone and outputs["created"] is True
    links = (await client.get("/api/v1/resource-links", params={"type": "monday.item", "key": "42:T-9"})).json()
    assert sorted((link["action"], link["executionId"], link["externalId"]) for link in links) == sorted(
        [
            ("created", str(first), undone),
            ("released", str(first), undone),
            ("created", str(again), outputs["itemId"]),
        ]
    )


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, {"errors": [{"message": "Internal error", "extensions": {"code": "InternalServerException"}}]}),
        (200, "<html>upstream reset</html>"),
    ],
    ids=["500-with-a-monday-code", "200-unreadable"],
)
async def test_a_create_that_may_have_acted_is_not_made_twice(
    db: Database, runtime: Runtime, fakes: FakeServers, monkeypatch: pytest.MonkeyPatch, status: int, body: Any
) -> None:
    """A review: the claim was released after a 500 whose body named monday's own code, and after an
    unreadable 200 (a failure for good: the key's next run made a second item)."""
    first_create_answers(monkeypatch, status, body, makes=True)
    _, execution, attempts = await run_one(db, runtime, "dup", ticket("D", "Ticket D"))
    if execution["status"] != "Succeeded":  # the unreadable 200 fails for good: the key's next run
        _, execution, attempts = await run_one(db, runtime, "dup-again", ticket("D", "Ticket D"))
    # The retry, or the next run, found the item the first create made.
    assert execution["status"] == "Succeeded", attempts
    assert len(fakes.state.created) == 1, (fakes.state.created, attempts)


@pytest.mark.parametrize(
    ("key_a", "key_b", "name"), [("A", "B", "Ticket"), ("1", "2", "Sprint 12 review")], ids=["no-key", "inside-a-word"]
)
async def test_an_item_in_doubt_whose_name_lacks_its_key_is_never_taken(
    db: Database,
    runtime: Runtime,
    fakes: FakeServers,
    monkeypatch: pytest.MonkeyPatch,
    key_a: str,
    key_b: str,
    name: str,
) -> None:
    """A third review: key A's create made "Ticket" and answered 502 (in doubt, not linked); key B's
    made nothing (502), and B's retry took A's item as its own, so A's rerun made a second one. A
    name without its key as a word of its own may be another key's ("Sprint 12 review" holds "12",
    not "1" or "2": a fourth review): the node fails monday_outcome_unknown instead."""
    real = fakes_module._create
    seen = {"n": 0}

    async def flaky(state: Any, variables: dict[str, Any]) -> Any:
        seen["n"] += 1
        if seen["n"] == 1:
            await real(state, variables)  # made, never heard
        elif seen["n"] == 2:
            state.calls["monday:create"] += 1  # made nothing
        else:
            return await real(state, variables)
        return LitestarResponse("bad gateway", status_code=502)

    monkeypatch.setattr(fakes_module, "_create", flaky)
    once = {**ticket(key_a, name), "retryPolicy": {**FAST, "maxAttempts": 1}}
    _, a, _ = await run_one(db, runtime, "key-a", once)
    assert a["status"] == "Failed"
    _, b, attempts_b = await run_one(db, runtime, "key-b", ticket(key_b, name))
    assert b["status"] == "Failed", attempts_b
    assert attempts_b[-1]["error"]["code"] == "monday_outcome_unknown"
    assert "does not hold the key" in attempts_b[-1]["error"]["message"]
    assert len(fakes.state.created) == 1


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    async with AsyncTestClient(create_app(Settings(database_url=dsn, credentials_key=CREDENTIAL_KEY))) as c:
        yield c


async def test_action_catalog(client: AsyncTestClient[Any]) -> None:
    catalog = {a["type"]: a for a in (await client.get("/api/v1/actions")).json()}
    assert set(catalog) >= {
        "core.echo",
        "http.request",
        "slack.post-message",
        "monday.get-items",
        "monday.create-item",
        "monday.update-item",
    }
    slack = catalog["slack.post-message"]
    assert slack["connector"] == "slack"
    schema = json.dumps(slack["parametersSchema"])
    assert "channel" in schema and "threadTs" in schema


async def test_connections_are_stored_encrypted_and_used(
    client: AsyncTestClient[Any], db: Database, runtime: Runtime, dsn: str, fakes: FakeServers
) -> None:
    body = {"kind": "slack", "secret": SLACK_TOKEN, "allowedWorkflows": ["slack-db"]}
    stored = await client.put("/api/v1/connections/slack-db", json=body)
    assert stored.status_code == 200 and "secret" not in stored.json()
    listing = (await client.get("/api/v1/connections")).text
    assert SLACK_TOKEN not in listing and "slack-db" in listing
    async with db.connection() as conn:
        blob = (await (await conn.execute("SELECT secret FROM dw.connections")).fetchone())[0]
    assert SLACK_TOKEN.encode() not in bytes(blob)
    _, execution, _ = await run_one(
        db, runtime, "slack-db", node("post", "slack.post-message", channel="C9", text="from db", connection="slack-db")
    )
    assert execution["status"] == "Succeeded"
    assert (await client.delete("/api/v1/connections/slack-db")).status_code == 204
    assert_problem(await client.delete("/api/v1/connections/slack-db"), 404)
    async with AsyncTestClient(create_app(Settings(database_url=dsn))) as keyless:
        body = assert_problem(await keyless.put("/api/v1/connections/x", json={"kind": "slack", "secret": "s3cr"}), 409)
        assert "DW_CREDENTIALS_KEY" in body["detail"]


async def test_a_connection_only_goes_where_it_says(db: Database, runtime: Runtime, fakes: FakeServers) -> None:
    _, _, attempts = await run_one(
        db,
        runtime,
        "conn-elsewhere",
        node("call", "http.request", url=f"http://localhost:{fakes.port}/http/json", connection="example-api"),
    )
    assert [a["error"]["code"] for a in attempts] == ["connection_host_mismatch"]
    assert f"may not be sent to http://localhost:{fakes.port} (see its hosts" in attempts[0]["error"]["message"]
    _, _, attempts = await run_one(
        db, runtime, "conn-plain", node("call", "http.request", url=f"{fakes.base}/http/json", connection="plain")
    )
    assert [a["error"]["code"] for a in attempts] == ["connection_invalid"]


async def test_credentials_are_dropped_on_a_cross_origin_redirect_and_scrubbed(
    db: Database, runtime: Runtime, fakes: FakeServers
) -> None:
    other_origin = f"http://localhost:{fakes.port}/http/echo-headers"
    _, execution, attempts = await run_one(
        db,
        runtime,
        "conn-redirect",
        node("call", "http.request", url=f"{fakes.base}/http/redirect?to={other_origin}", connection="example-api"),
    )
    assert execution["status"] == "Succeeded"
    assert "authorization" not in attempts[0]["outputs"]["body"]["headers"]
    # Same origin: the server echoes the credential back, and it is scrubbed from the outputs.
    _, _, attempts = await run_one(
        db,
        runtime,
        "conn-echo",
        node("call", "http.request", url=f"{fakes.base}/http/echo-headers", connection="example-api"),
    )
    echoed = attempts[0]["outputs"]["body"]["headers"]["authorization"]
    assert "[redacted]" in echoed and HTTP_TOKEN not in json.dumps(attempts, default=str)


async def test_a_compressed_response_cannot_exceed_the_cap(db: Database, runtime: Runtime, fakes: FakeServers) -> None:
    import tracemalloc

    tracemalloc.start()
    try:
        _, _, attempts = await run_one(
            db,
            runtime,
            "gzip-bomb",
            node("call", "http.request", url=f"{fakes.base}/http/gzip-bomb", maxResponseBytes=1_000_000),
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [a["error"]["code"] for a in attempts] == ["response_too_large"]
    assert peak < 40_000_000, f"decompression was bounded (peak {peak} bytes)"


async def test_redirects_drop_caller_credentials_and_bogus_charsets_decode(
    db: Database, runtime: Runtime, fakes: FakeServers
) -> None:
    other_origin = f"http://localhost:{fakes.port}/http/echo-headers"
    _, _, attempts = await run_one(
        db,
        runtime,
        "own-auth",
        node(
            "call",
            "http.request",
            url=f"{fakes.base}/http/redirect?to={other_origin}",
            headers={"Authorization": "Bearer caller-own-token", "X-Trace": "t1"},
        ),
    )
    echoed = attempts[0]["outputs"]["body"]["headers"]
    assert "authorization" not in echoed and echoed["x-trace"] == "t1"


async def test_http_request_sends_an_idempotency_key_per_logical_attempt(
    db: Database, runtime: Runtime, fakes: FakeServers
) -> None:
    base = f"{fakes.base}/http/record"
    retry = {"maxAttempts": 2, "initialDelay": "PT0.01S", "jitter": False}
    execution_id, execution, _ = await run_one(
        db,
        runtime,
        "idempotent",
        {**node("post", "http.request", url=f"{base}/post", method="POST"), "edges": [{"targetNode": "get"}]},
        {**node("get", "http.request", url=f"{base}/get"), "edges": [{"targetNode": "forced"}]},
        {
            **node("forced", "http.request", url=f"{base}/forced", idempotencyKey=True),
            "edges": [{"targetNode": "mine"}],
        },
        {
            **node("mine", "http.request", url=f"{base}/mine", method="PUT", idempotencyKey="order-{{ trigger.n }}"),
            "edges": [{"targetNode": "off"}],
        },
        {
            **node("off", "http.request", url=f"{base}/off", method="DELETE", idempotencyKey=False),
            "edges": [{"targetNode": "retried"}],
        },
        node("retried", "http.request", retry, url=f"{base}/retried?status=503", method="POST"),
        trigger={"n": 42},
    )
    assert execution["status"] == "Failed"  # retried answers 503 twice
    keys = fakes.state.idempotency_keys
    assert keys["post"] == [f"{execution_id}:post:0"]
    assert keys["get"] == [None]  # a safe method sends none unless asked
    assert keys["forced"] == [f"{execution_id}:forced:0"]
    assert keys["mine"] == ["order-42"]
    assert keys["off"] == [None]
    # A retry is the same request again (the first call may have been acted on): the same key.
    assert keys["retried"] == [f"{execution_id}:retried:0"] * 2


async def test_an_interrupted_call_is_sent_again_with_the_same_key(
    db: Database, runtime: Runtime, fakes: FakeServers
) -> None:
    raw = {
        "id": "slow-post",
        "displayName": "slow-post",
        "startNode": "call",
        "nodes": [node("call", "http.request", url=f"{fakes.base}/http/record/slow?sleepMs=800", method="POST")],
    }
    await publish(db, raw)
    execution_id = await start(db, "slow-post")
    first = asyncio.ensure_future(runtime.run_execution(execution_id))
    await asyncio.sleep(0.3)  # the call is in flight
    runtime.stop_starting()
    first.cancel()  # the grace period is over: the attempt is cut short, the run handed back
    with pytest.raises(asyncio.CancelledError):
        await first
    second = Runtime(
        db,
        default_registry(),
        RuntimeSettings(worker_id="w2", lease_seconds=10),
        runtime.conditions,
        templates=runtime.templates,
        kinds=runtime.kinds,
    )
    assert await second.run_execution(execution_id) == "Succeeded"
    # The target saw the call twice (at least once), with one key to de-duplicate it by.
    assert fakes.state.idempotency_keys["slow"] == [f"{execution_id}:call:0"] * 2


async def test_every_server_error_but_501_and_505_is_retried(
    db: Database, runtime: Runtime, fakes: FakeServers
) -> None:
    """A proxy's 520-524 or a 507 failed the node for good at its first answer (README: 5xx retry)."""
    for status, expected in ((522, ["RetriableFailure"] * 3), (507, ["RetriableFailure"] * 3), (501, ["Failed"])):
        _, execution, attempts = await run_one(
            db, runtime, f"http-{status}", node("call", "http.request", url=f"{fakes.base}/http/status/{status}")
        )
        assert execution["status"] == "Failed"
        statuses = [a["status"] for a in attempts]
        assert statuses == expected, (status, statuses)
        assert {a["error"]["code"] for a in attempts} == {f"http_{status}"}


async def test_a_nodes_header_does_not_go_beside_the_connections_of_the_same_name(
    db: Database, runtime: Runtime, fakes: FakeServers
) -> None:
    """Names are case-insensitive: both went, and a server reading the first Authorization took the node's."""
    _, execution, attempts = await run_one(
        db,
        runtime,
        "header-case",
        node(
            "call",
            "http.request",
            url=f"{fakes.base}/http/echo-raw-headers",
            connection="example-api",
            headers={"authorization": "Bearer chosen-by-the-node", "accept-encoding": "identity", "X-Own": "1"},
        ),
    )
    assert execution["status"] == "Succeeded", attempts
    sent = attempts[0]["outputs"]["body"]["headers"]
    by_name: dict[str, list[str]] = {}
    for name, value in sent:
        by_name.setdefault(name.lower(), []).append(value)
    # One Authorization: the connection's (its secret scrubbed from the outputs), not the node's too.
    assert by_name["authorization"] == ["[redacted]"], by_name
    assert by_name["accept-encoding"] == ["identity"] and by_name["x-own"] == ["1"]
    # The same name twice in the node's own headers is refused when published.
    with pytest.raises(DefinitionError):
        await publish(db, {"id": "twice", "displayName": "t", "startNode": "c", "nodes": [
            node("c", "http.request", url=f"{fakes.base}/http/json", headers={"X-A": "1", "x-a": "2"})]})  # fmt: skip


async def test_expected_status_must_name_a_status(db: Database) -> None:
    """An empty list failed every answer, a 200 included."""
    for expected in ([], [42]):
        with pytest.raises(DefinitionError):
            await publish(db, {"id": "exp", "displayName": "e", "startNode": "c", "nodes": [
                node("c", "http.request", url="https://example.com/", expectedStatus=expected)]})  # fmt: skip


async def test_raw_deflate_nul_characters_and_deep_json_answers_are_recorded(
    db: Database, runtime: Runtime, fakes: FakeServers
) -> None:
    """Raw deflate failed unsupported_encoding; a NUL failed the node unrecordable_result for good; JSON
    nested past the recorder's depth failed it too, and 100,000 deep raised a RecursionError."""
    _, execution, attempts = await run_one(
        db, runtime, "raw-deflate", node("call", "http.request", url=f"{fakes.base}/http/raw-deflate")
    )
    assert execution["status"] == "Succeeded", attempts
    assert attempts[0]["outputs"]["body"] == {"hello": "world"}
    bodies = {}
    for kind in (
        "nul-text",
        "nul-json",
        "deep",
        "very-deep",
        "surrogate",
        "nan",
        "infinity",
        "overflow",
        "utf7-text",
        "hex-text",
    ):
        _, execution, attempts = await run_one(
            db, runtime, f"odd-{kind}", node("call", "http.request", url=f"{fakes.base}/http/odd-json/{kind}")
        )
        assert execution["status"] == "Succeeded", (kind, attempts)
        bodies[kind] = attempts[0]["outputs"]["body"]
    assert bodies["nul-text"] == "before\ufffdafter"
    assert bodies["nul-json"] == {"a": "x\ufffdy", "k\ufffd": 1}
    assert bodies["deep"] == "[" * 150 + "]" * 150  # kept as text, as JSON that does not parse is
    assert isinstance(bodies["very-deep"], str) and len(bodies["very-deep"]) == 200_000
    # A review: a lone surrogate crashed the node task (engine_error); it becomes U+FFFD, as a NUL does.
    assert bodies["surrogate"] == {"a": "cut \ufffd", "\ufffdk": "pair \U0001f600"}
    # A review: these were stored as null while the worker went on with nan (a template read them and
    # failed, or read null once the run had been parked): not JSON, they are kept as text.
    assert (bodies["nan"], bodies["infinity"], bodies["overflow"]) == ('{"x": NaN}', "[-Infinity]", '{"a": 1e999}')
    # A second review: in text too; and charset=hex (a codec, not a charset) failed action_exception.
    assert (bodies["utf7-text"], bodies["hex-text"]) == ("cut \ufffd", "plain")


async def test_monday_answers_of_the_wrong_shape_fail_as_bad_responses(
    db: Database, runtime: Runtime, fakes: FakeServers
) -> None:
    """They raised (KeyError, AttributeError: action_exception with a traceback), and a cursor that
    never ended called monday.com hundreds of times a second until the node's timeout."""
    cases = {
        "errors-object": ("monday.get-items", "monday_error"),
        "data-string": ("monday.get-items", "monday_bad_response"),
        "loop": ("monday.get-items", "monday_bad_response"),
        "created-string": ("monday.create-item", "monday_bad_response"),
    }
    for board, (action, code) in cases.items():
        params = {"boardId": board, "itemName": "x"} if action == "monday.create-item" else {"boardId": board}
        _, execution, attempts = await run_one(db, runtime, f"monday-{board}", node("m", action, **params))
        assert execution["status"] == "Failed", (board, attempts)
        assert [a["error"]["code"] for a in attempts] == [code], (board, attempts)
    loop = await db.fetch_all("list_attempts", id=(await run_one(
        db, runtime, "monday-loop-again", node("m", "monday.get-items", boardId="loop")))[0])  # fmt: skip
    assert "cursor seen before" in loop[0]["error"]["message"]
    # Empty pages end the paging: what was read is the answer.
    _, execution, attempts = await run_one(
        db, runtime, "monday-empty", node("m", "monday.get-items", boardId="empty-loop")
    )
    assert execution["status"] == "Succeeded" and attempts[0]["outputs"]["count"] == 0
