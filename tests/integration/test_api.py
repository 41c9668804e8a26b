"""The HTTP API in-process (Litestar test client) against a real database: the lifecycle of a
request and every error shape."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from litestar.testing import AsyncTestClient

from dataworkflows import errors
from dataworkflows.api.app import create_app
from dataworkflows.api.services import services_of
from dataworkflows.config import Settings
from dataworkflows.db import Database
from tests.conftest import load_fixture


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(Settings(database_url=dsn, max_body_bytes=64 * 1024, max_trigger_depth=16))
    async with AsyncTestClient(app) as test_client:
        yield test_client


def raw_client(client: AsyncTestClient[Any]) -> httpx.AsyncClient:
    """A client for the running app that sends header bytes as given, as a server hands them over:
    the test client re-encodes every header value as UTF-8 (bytes that are not UTF-8 arrive as
    something else)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=client.app), base_url=str(client.base_url))


def assert_problem(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert "Traceback" not in response.text
    return body


async def test_create_publish_execute_and_read(client: AsyncTestClient[Any]) -> None:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    created = await client.post("/api/v1/workflows", json=raw, headers={"X-Principal-Id": "ana"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert (body["status"], body["currentVersion"], body["latestVersion"], body["createdBy"]) == (
        "Draft",
        None,
        1,
        "ana",
    )
    assert body["definition"] == raw and body["checksum"].startswith("sha256:")

    draft_run = await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}})
    assert assert_problem(draft_run, 409)["code"] == "workflow_not_runnable"

    published = await client.post("/api/v1/workflows/simple-echo/publish")
    assert published.status_code == 200 and published.json()["status"] == "Active"
    assert published.json()["currentVersion"] == 1

    request = load_fixture("bundle1/execute-request.json") | {"requestId": "req-1"}
    first = await client.post("/api/v1/workflows/simple-echo/execute", json=request, headers={"X-Principal-Id": "bo"})
    assert first.status_code == 202
    started = first.json()
    assert started["status"] == "Pending" and started["created"] is True
    assert started["statusUrl"] == f"/api/v1/executions/{started['executionId']}"
    again = await client.post("/api/v1/workflows/simple-echo/execute", json=request)
    assert again.status_code == 202 and again.json()["executionId"] == started["executionId"]
    assert again.json()["created"] is False
    # The same request id for another request is a conflict, not the first run passed off as it.
    other = {**request, "trigger": {**request["trigger"], "extra": 1}}
    reused = await client.post("/api/v1/workflows/simple-echo/execute", json=other)
    problem = assert_problem(reused, 409)
    assert problem["code"] == "request_id_reused" and "different trigger" in problem["detail"]
    # The same trigger with its keys in another order is the same request.
    reordered = {**request, "trigger": dict(reversed(list(request["trigger"].items())))}
    same = await client.post("/api/v1/workflows/simple-echo/execute", json=reordered)
    assert same.status_code == 202 and same.json()["executionId"] == started["executionId"]

    status = await client.get(started["statusUrl"])
    assert status.status_code == 200
    execution = status.json()
    assert execution["trigger"] == request["trigger"] and execution["principalId"] == "bo"
    assert execution["workflowChecksum"] == body["checksum"]
    assert [n["status"] for n in execution["nodes"]] == ["Ready", "Pending"]
    assert (await client.get(f"{started['statusUrl']}/actions")).json() == []
    events = (await client.get(f"{started['statusUrl']}/events")).json()
    assert [e["type"] for e in events] == ["execution_requested"]

    listing = (await client.get("/api/v1/executions", params={"workflowId": "simple-echo"})).json()
    assert [i["id"] for i in listing["items"]] == [started["executionId"]]
    workflows = (await client.get("/api/v1/workflows")).json()
    assert [w["id"] for w in workflows["items"]] == ["simple-echo"]
    assert (await client.get("/api/v1/workflows", params={"status": "Active"})).json()["items"] == workflows["items"]
    versions = (await client.get("/api/v1/workflows/simple-echo/versions")).json()
    assert [(v["version"], v["publishedAt"] is not None) for v in versions] == [(1, True)]


async def test_auto_activate_and_duplicate_create(client: AsyncTestClient[Any]) -> None:
    raw = load_fixture("bundle2/retry-workflow.json")
    created = await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw)
    assert created.json()["status"] == "Active"
    assert assert_problem(await client.post("/api/v1/workflows", json=raw), 409)["code"] == "workflow_exists"


async def test_the_create_that_loses_a_race_for_an_id_says_so_in_words(
    client: AsyncTestClient[Any], db: Database
) -> None:
    """Two creates of one id at once: the loser passed the existence check before the winner
    committed, then met the primary key, and its 409 quoted PostgreSQL ('duplicate key value violates
    unique constraint "workflows_pkey"'). The insert the loser runs, on an id taken meanwhile:"""
    raw = load_fixture("bundle2/retry-workflow.json")
    assert (await client.post("/api/v1/workflows", json=raw)).status_code == 201
    with pytest.raises(errors.WorkflowExists) as lost:
        await db.fetch_one(
            "insert_workflow",
            id=raw["id"],
            display_name="x",
            description=None,
            principal="p",
            max_concurrent_executions=None,
        )
    assert "already exists" in lost.value.message and "workflows_pkey" not in lost.value.message


async def test_invalid_definition_lists_every_problem(client: AsyncTestClient[Any]) -> None:
    raw = {
        "id": "bad",
        "displayName": "Bad",
        "startNode": "a",
        "nodes": [
            {
                "id": "a",
                "actionType": "core.echo",
                "edges": [{"targetNode": "ghost"}, {"targetNode": "b", "condition": "x.("}],
            },
            {"id": "b", "actionType": "core.nope"},
            {"id": "c", "actionType": "core.echo", "parameters": {"delayMs": "soon"}},
        ],
    }
    body = assert_problem(await client.post("/api/v1/workflows", json=raw), 422)
    pointers = {e["pointer"]: e["code"] for e in body["errors"]}
    assert pointers["/nodes/0/edges/0/targetNode"] == "unknown_node"
    assert pointers["/nodes/0/edges/1/condition"] == "condition_syntax"
    assert pointers["/nodes/1/actionType"] == "unknown_action_type"
    assert pointers["/nodes/2/parameters/delayMs"] == "invalid_parameter"
    assert (await client.get("/api/v1/workflows/bad")).status_code == 404


async def test_bad_requests_get_problem_details(client: AsyncTestClient[Any]) -> None:
    malformed = await client.post(
        "/api/v1/workflows", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert_problem(malformed, 400)
    assert_problem(await client.post("/api/v1/workflows", json=[1, 2]), 400)
    assert_problem(await client.post("/api/v1/workflows/nope/execute", json={"trigger": {}}), 404)
    assert_problem(await client.get("/api/v1/workflows/nope"), 404)
    assert_problem(await client.get("/api/v1/executions/not-a-uuid"), 404)
    assert_problem(await client.get("/api/v1/executions/00000000-0000-0000-0000-000000000000"), 404)
    assert_problem(await client.get("/api/v1/executions", params={"cursor": "!!!"}), 400)
    assert_problem(await client.post("/api/v1/workflows/x/execute", json={"trigger": [1]}), 400)
    assert_problem(await client.post("/api/v1/workflows/x/execute", json={"trigger": {}, "extra": 1}), 400)
    huge = {"trigger": {"blob": "x" * 70_000}}
    body = assert_problem(
        await client.post(
            "/api/v1/workflows/x/execute",
            content=json.dumps(huge).encode(),
            headers={"content-type": "application/json"},
        ),
        413,
    )
    assert body["code"] == "body_too_large"


async def test_deeply_nested_trigger_is_refused(client: AsyncTestClient[Any]) -> None:
    await client.post(
        "/api/v1/workflows", params={"autoActivate": "true"}, json=load_fixture("bundle1/simple-echo-workflow.json")
    )
    nested: dict[str, Any] = {"leaf": 1}
    for _ in range(40):
        nested = {"n": nested}
    body = assert_problem(await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": nested}), 422)
    assert "nested deeper" in body["detail"]


async def test_database_down_gives_503(tmp_path: Any) -> None:
    settings = Settings(
        database_url=f"host={tmp_path} port=1 user=nobody dbname=none connect_timeout=1",
        db_timeout_seconds=0.5,
        # The API's overdue-runs pass waits for a connection too: once at the start, and not again
        # while the waits below are counted (on a loaded machine its next pass fell among them).
        recovery_interval_seconds=3600,
    )
    async with AsyncTestClient(create_app(settings)) as test_client:
        assert (await test_client.get("/health/live")).status_code == 200
        assert_problem(await test_client.get("/health/ready"), 503)
        # HEAD too (a probe that uses it read the 405 as down), with no body, and the GET's headers
        # (its own handlers answered Content-Length 0 and text/plain).
        for path, status in (("/health/live", 200), ("/health/ready", 503)):
            got, headed = await test_client.get(path), await test_client.head(path)
            assert (headed.status_code, headed.content) == (status, b""), headed
            assert headed.headers["content-length"] == got.headers["content-length"] != "0", headed.headers
            assert headed.headers["content-type"] == got.headers["content-type"], headed.headers
        # One wait for a connection a request (the rate limiter's): it went on to the handler's,
        # and its caller waited twice DW_DB_TIMEOUT_SECONDS for the 503.
        pool = services_of(test_client.app.state).db.pool
        waits = 0
        real_getconn = pool.getconn

        async def counted(*args: Any, **kwargs: Any) -> Any:
            nonlocal waits
            waits += 1
            return await real_getconn(*args, **kwargs)

        pool.getconn = counted  # type: ignore[method-assign]
        body = assert_problem(await test_client.get("/api/v1/workflows"), 503)
        assert body["code"] == "database_unavailable"
        assert_problem(await test_client.post("/api/v1/workflows/x/execute", json={"trigger": {}}), 503)
        assert waits == 2


async def test_hostile_input_gets_4xx_not_500(client: AsyncTestClient[Any]) -> None:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    nul = {**raw, "displayName": "bad\u0000name"}
    assert assert_problem(await client.post("/api/v1/workflows", json=nul), 422)["code"] == "invalid_input"
    body = b'{"trigger": {"a": "\xff"}}'
    assert_problem(
        await client.post("/api/v1/workflows/x/execute", content=body, headers={"content-type": "application/json"}),
        400,
    )
    deep = "[" * 1500 + "]" * 1500
    assert_problem(
        await client.post("/api/v1/workflows", content=deep.encode(), headers={"content-type": "application/json"}), 400
    )
    newline_id = {**raw, "id": "nl\n"}
    assert assert_problem(await client.post("/api/v1/workflows", json=newline_id), 422)["errors"][0]["pointer"] == "/id"
    forever = json.loads(json.dumps(raw))
    forever["nodes"][0]["timeout"] = "P99999999999999999999D"
    assert "/nodes/0/timeout" in {
        e["pointer"] for e in assert_problem(await client.post("/api/v1/workflows", json=forever), 422)["errors"]
    }
    nested = json.loads(json.dumps(raw))
    value: Any = "x"
    for _ in range(100):
        value = {"v": value}
    nested["nodes"][0]["parameters"]["message"] = value
    assert assert_problem(await client.post("/api/v1/workflows", json=nested), 422)["errors"][0]["code"] == "too_deep"
    assert_problem(
        await client.post("/api/v1/workflows", params={"maxConcurrentExecutions": "99999999999"}, json=raw), 400
    )
    cursor = "WyIyMDIwLTAxLTAxIiwgNV0"  # base64 of ["2020-01-01", 5]
    assert_problem(await client.get("/api/v1/executions", params={"cursor": cursor}), 400)
    bomb = json.loads(json.dumps(raw))
    bomb["nodes"][0]["parameters"]["message"] = "{{ 'a' * 10**8 + '1' }}"
    assert (await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=bomb)).status_code == 201
    assert (await client.post("/api/v1/workflows", json=raw)).json()["detail"].startswith("a workflow with id")


async def test_stream_after_the_last_event_of_a_finished_run_closes(
    client: AsyncTestClient[Any], db: Any, conditions: Any
) -> None:
    from tests.integration.test_runtime import make_runtime

    await client.post(
        "/api/v1/workflows", params={"autoActivate": "true"}, json=load_fixture("bundle1/simple-echo-workflow.json")
    )
    started = (await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}})).json()
    from uuid import UUID

    await make_runtime(db, conditions).run_execution(UUID(started["executionId"]))
    response = await client.get(
        f"{started['statusUrl']}/events",
        headers={"Accept": "text/event-stream", "Last-Event-ID": "99999999"},
        timeout=10,
    )
    assert response.status_code == 200 and "event:" not in response.text
    bad = await client.get(
        f"{started['statusUrl']}/events",
        headers={"Accept": "text/event-stream", "Last-Event-ID": "\u00b2".encode()},
        timeout=10,
    )
    assert bad.status_code == 200 and bad.text.count("event:") >= 7
    # The Accept header as HTTP reads it, not as a substring: media types are case-insensitive, and
    # q=0 refuses (it was JSON for the first, a stream for the second).
    for accept, streams in [
        ("TEXT/EVENT-STREAM", True),
        ("text/event-stream;q=0, application/json", False),
        ("application/json;q=0.5, text/event-stream", True),
        ("text/event-stream;q=0.2, application/json", False),
        ("*/*", False),
    ]:
        answer = await client.get(f"{started['statusUrl']}/events", headers={"Accept": accept}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.headers["content-type"].startswith("text/event-stream") is streams, accept


async def test_a_request_id_that_would_be_the_correlation_id_is_held_to_its_characters(
    client: AsyncTestClient[Any],
) -> None:
    """Without correlationId and X-Correlation-Id, the requestId is the run's correlation id: a
    requestId with a control, invisible or line-separator character is refused as a correlationId
    with one is (it used to start a run whose correlation id held them)."""
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    assert (await client.post("/api/v1/workflows?autoActivate=true", json=raw)).status_code == 201
    url = "/api/v1/workflows/simple-echo/execute"
    for value in ("x\nforged", "order\u202e42", "order\x0742", "order\u2028"):
        body = assert_problem(await client.post(url, json={"trigger": {}, "requestId": value}), 422)
        assert [e["pointer"] for e in body["errors"]] == ["/requestId"], body
        assert value not in json.dumps(body), "the value is not echoed"
    started = await client.post(url, json={"trigger": {}, "requestId": "order-42 (José)"})
    assert started.status_code == 202, started.text
    assert (await client.get(started.json()["statusUrl"])).json()["correlationId"] == "order-42 (José)"
    listed = (await client.get("/api/v1/executions", params={"workflowId": "simple-echo"})).json()
    assert len(listed["items"]) == 1, "nothing was started by a refused request"


async def test_a_correlation_id_is_taken_as_sent_or_refused_never_cut(client: AsyncTestClient[Any]) -> None:
    """correlationId (body) and X-Correlation-Id (header) over 200 characters, or with a control
    character, are refused (422 with a pointer; 400 naming the header) and start nothing; they were
    cut to 200 characters, and the run was recorded under a correlation id nobody sent."""
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    assert (await client.post("/api/v1/workflows?autoActivate=true", json=raw)).status_code == 201
    url = "/api/v1/workflows/simple-echo/execute"
    longest = "c" * 200
    for started in (
        await client.post(url, json={"correlationId": longest}),
        await client.post(url, json={}, headers={"X-Correlation-Id": longest}),
    ):
        assert started.status_code == 202, started.text
        execution = (await client.get(started.json()["statusUrl"])).json()
        assert execution["correlationId"] == longest

    for value, says in [("c" * 201, "at most 200 characters (this one has 201)"), ("order\n42", "control"),
                        ("order\x7f42", "control"), ("order\x8542", "control")]:  # fmt: skip
        body = assert_problem(await client.post(url, json={"correlationId": value, "requestId": "r-body"}), 422)
        assert body["code"] == "invalid_input" and says in body["detail"], body
        assert [e["pointer"] for e in body["errors"]] == ["/correlationId"], body
        assert value not in json.dumps(body), "the value is not echoed"
    for value, says in [("c" * 201, "at most 200 characters (this one has 201)"), ("order\t42", "control"),
                        ("order\x0142", "control")]:  # fmt: skip
        refused = await client.post(url, json={"requestId": "r-header"}, headers={"X-Correlation-Id": value})
        body = assert_problem(refused, 400)
        assert body["code"] == "bad_request" and "X-Correlation-Id" in body["detail"] and says in body["detail"], body
        assert value not in body["detail"]
    # The body's field wins over the header, but a header it overrides is refused all the same.
    both = await client.post(url, json={"correlationId": "order-42"}, headers={"X-Correlation-Id": "c" * 201})
    assert assert_problem(both, 400)["code"] == "bad_request"
    listed = (await client.get("/api/v1/executions", params={"workflowId": "simple-echo"})).json()
    assert len(listed["items"]) == 2, "nothing was started by a refused request"


async def test_a_correlation_id_header_is_utf8_text(client: AsyncTestClient[Any]) -> None:
    """X-Correlation-Id is read as the UTF-8 the client sent (header bytes reach the app decoded as
    latin-1): `€` was refused as a control character, `é` stored as `Ã©`, and the limit counted bytes."""
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    assert (await client.post("/api/v1/workflows?autoActivate=true", json=raw)).status_code == 201
    url = "/api/v1/workflows/simple-echo/execute"
    raw = raw_client(client)
    # UTF-8 as UTF-8; other bytes as latin-1 (what http.client sends for é).
    for value, sent in [
        *[(v, v.encode()) for v in ["order-42 €", "commande-é", "注文" * 100]],
        ("ordre-é", b"ordre-\xe9"),
    ]:
        started = await raw.post(url, json={}, headers={"X-Correlation-Id": sent})
        assert started.status_code == 202, (value, started.text)
        assert (await client.get(started.json()["statusUrl"])).json()["correlationId"] == value
    for value, says in [
        (("€" * 201).encode(), "at most 200 characters (this one has 201)"),
        ("order\u009b42".encode(), "control"),
        ("order\u2029".encode(), "line-separator"),
    ]:
        refused = await raw.post(url, json={"requestId": "r-utf8"}, headers={"X-Correlation-Id": value})
        body = assert_problem(refused, 400)
        assert body["code"] == "bad_request" and "X-Correlation-Id" in body["detail"] and says in body["detail"], body
    listed = (await client.get("/api/v1/executions", params={"workflowId": "simple-echo"})).json()
    assert len(listed["items"]) == 4, "nothing was started by a refused request"


async def test_a_paths_control_characters_are_escaped_in_the_log(client: AsyncTestClient[Any]) -> None:
    """A review: a route's request context bound the path as sent, so a %1b in /ui/… or in the public
    webhook receiver's path reached the console log as a raw escape sequence (a terminal's title, a
    cleared screen for whoever tails it); a path no route took was escaped already."""
    import structlog
    from structlog.testing import LogCapture

    from dataworkflows.logs import processors

    capture = LogCapture()  # behind the production chain: the request's bound context included
    structlog.configure(processors=processors(capture), cache_logger_on_first_use=False)
    try:
        await client.get("/ui/%1b%5d0;TITLE%07%1b%5b2JUIPATH")
        await client.post("/api/v1/hooks/%1b%5b2JHOOK%E2%80%AE", json={})
    finally:
        structlog.reset_defaults()
    logs = capture.entries
    paths = [str(line.get("path")) for line in logs if "path" in line]
    assert any("UIPATH" in path for path in paths) and any("HOOK" in path for path in paths), logs
    for path in paths:
        assert path.isprintable(), path
    assert any("\\x1b]0;TITLE\\x07\\x1b[2JUIPATH" in path for path in paths), paths


async def test_a_stream_of_a_redriven_run_stays_open_while_it_runs_again(
    client: AsyncTestClient[Any], db: Any, conditions: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: the live stream read the run's first end (execution_failed) and closed, though
    execution_redriven followed it and the run was Running again. With a stream span of 1.5 s it now
    stays open to its end (and says to reconnect), while the run waits for a worker."""
    from uuid import UUID

    from tests.integration.test_runtime import echo, make_runtime, wf

    monkeypatch.setattr("dataworkflows.api.executions._MAX_STREAM_SECONDS", 1.5)
    runtime = make_runtime(db, conditions)
    raw = wf("redo", echo("a", simulateFailure="permanent", failUntilAttempt=2))
    assert (await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw)).status_code == 201
    started = (await client.post("/api/v1/workflows/redo/execute", json={"trigger": {}})).json()
    assert await runtime.run_execution(UUID(started["executionId"])) == "Failed"
    letters = await db.fetch_all("list_dead_letters", open=True, kind=None, before=None, limit=10)
    assert (await db.operations.redrive(letters[0]["id"], principal="ops", queue="executions")).action == "requeued"
    text = (await client.get(f"{started['statusUrl']}/events", headers={"Accept": "text/event-stream"})).text
    events = [line.removeprefix("event: ") for line in text.splitlines() if line.startswith("event: ")]
    assert events[-2:] == ["execution_failed", "execution_redriven"], events
    assert "reconnect: the stream's time is up" in text, text
