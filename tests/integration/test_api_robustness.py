"""The HTTP API against input no client should send: integers no row can have, in every path and
query position, and a client that hangs up in the middle of its request body."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from litestar.testing import AsyncTestClient

from dataworkflows.api.app import create_app
from dataworkflows.config import Settings
from dataworkflows.db import Database
from tests.acceptance.conftest import Stack, free_port
from tests.conftest import load_fixture

BIGINT_MAX = 2**63 - 1

# Integers no id or version can be: zero, negative, past PostgreSQL's integer and bigint, and past
# Python's int-from-string digit limit (4300).
IMPOSSIBLE = ["0", "-1", "-0", str(2**31), str(BIGINT_MAX), str(2**63), str(-(2**63) - 1), "9" * 40, "9" * 5000]

# Every route with an int path parameter; {n} is the integer.
INT_PATHS = [
    ("GET", "/api/v1/dead-letters/{n}"),
    ("POST", "/api/v1/dead-letters/{n}/redrive"),
    ("GET", "/api/v1/workflows/simple-echo/versions/{n}"),
    ("GET", "/api/v1/workflows/nope/versions/{n}"),
]

# Every int query parameter, with values that are out of its range (or not integers at all).
INT_QUERIES = [
    ("GET", "/api/v1/workflows", "limit"),
    ("GET", "/api/v1/executions", "limit"),
    ("GET", "/api/v1/dead-letters", "limit"),
    ("GET", "/api/v1/resource-links", "limit"),
    ("GET", "/api/v1/executions/{execution}/events", "limit"),
    ("GET", "/api/v1/executions/{execution}/events", "after"),
    ("POST", "/api/v1/workflows/simple-echo/publish", "version"),
    ("GET", "/api/v1/workflow-templates/nope", "version"),
    ("POST", "/api/v1/workflows", "maxConcurrentExecutions"),
]
OUT_OF_RANGE = ["-1", str(2**63), str(-(2**63) - 1), "9" * 40, "9" * 5000, "1e30", "0x10", "1.5", ""]


@pytest.fixture
async def client(dsn: str) -> AsyncIterator[AsyncTestClient[Any]]:
    app = create_app(Settings(database_url=dsn, max_body_bytes=64 * 1024, max_trigger_depth=16))
    async with AsyncTestClient(app) as test_client:
        yield test_client


@pytest.fixture
async def execution(client: AsyncTestClient[Any]) -> str:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    created = await client.post("/api/v1/workflows", params={"autoActivate": "true"}, json=raw)
    assert created.status_code == 201, created.text
    assert created.headers["location"] == "/api/v1/workflows/simple-echo"
    started = await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {}})
    assert started.status_code == 202, started.text
    return str(started.json()["executionId"])


def assert_problem(response: Any, *statuses: int) -> dict[str, Any]:
    assert response.status_code in statuses, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body = response.json()
    assert body["status"] == response.status_code and body["title"] and body["detail"]
    assert "Traceback" not in response.text
    return body


# A body value of another JSON type than its field's: Litestar's lenient conversion read these as
# 30, 7 and False. (method, path, body, the field's pointer)
WRONG_JSON_TYPES = [
    ("PATCH", "/api/v1/workflows/simple-echo/limits", {"rateLimitPerMinute": "30"}, "/rateLimitPerMinute"),
    ("PATCH", "/api/v1/workflows/simple-echo/limits", {"maxConcurrentExecutions": "1e1"}, "/maxConcurrentExecutions"),
    ("PATCH", "/api/v1/workflows/simple-echo/retention", {"retentionDays": "7"}, "/retentionDays"),
    (
        "POST",
        "/api/v1/workflows/simple-echo/triggers",
        {"kind": "webhook", "name": "hook", "enabled": "false", "config": {"signature": "none"}},
        "/enabled",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "pointer"), WRONG_JSON_TYPES)
async def test_a_body_value_of_another_json_type_is_400(
    client: AsyncTestClient[Any], execution: str, method: str, path: str, body: dict[str, Any], pointer: str
) -> None:
    problem = assert_problem(await client.request(method, path, json=body), 400)
    assert problem["errors"] == [{"pointer": pointer, "detail": problem["errors"][0]["detail"]}], problem
    assert "got `str`" in problem["detail"], problem
    workflow = (await client.get("/api/v1/workflows/simple-echo")).json()
    assert (workflow["rateLimitPerMinute"], workflow["maxConcurrentExecutions"], workflow["retentionDays"]) == (
        None,
        None,
        None,
    )
    assert (await client.get("/api/v1/workflows/simple-echo/triggers")).json() == []


@pytest.mark.parametrize("value", IMPOSSIBLE)
@pytest.mark.parametrize(("method", "path"), INT_PATHS)
async def test_an_id_or_version_that_cannot_exist_is_404(
    client: AsyncTestClient[Any], execution: str, method: str, path: str, value: str
) -> None:
    response = await client.request(method, path.format(n=value))
    assert assert_problem(response, 404)["code"].endswith("not_found")


@pytest.mark.parametrize("written", ["+1", "%EF%BC%91", "%D9%A1", "1_0", " 1", "1%20"])
async def test_a_number_in_a_path_is_written_in_ascii_digits(
    client: AsyncTestClient[Any], execution: str, written: str
) -> None:
    """Python's int() read `1_0` as 10, and `+1`, a fullwidth one (U+FF11) and an Arabic-Indic one (U+0661) as 1: the
    version 1 answered 200 (the same values as query parameters were 400s)."""
    for path in ("/api/v1/workflows/simple-echo/versions/{n}", "/api/v1/dead-letters/{n}"):
        problem = assert_problem(await client.get(path.format(n=written)), 404)
        assert "a number in a path is written in the digits 0-9" in problem["detail"], problem
    assert (await client.get("/api/v1/workflows/simple-echo/versions/1")).status_code == 200


@pytest.mark.parametrize("value", OUT_OF_RANGE)
@pytest.mark.parametrize(("method", "path", "name"), INT_QUERIES)
async def test_an_int_query_value_out_of_range_is_400(
    client: AsyncTestClient[Any], execution: str, method: str, path: str, name: str, value: str
) -> None:
    kwargs: dict[str, Any] = {"params": {name: value}}
    if method == "POST" and path == "/api/v1/workflows":
        kwargs["json"] = load_fixture("bundle2/retry-workflow.json")
    response = await client.request(method, path.format(execution=execution), **kwargs)
    assert_problem(response, 400)


@pytest.mark.parametrize("value", ["0", "-1", str(2**31), str(BIGINT_MAX)])
async def test_publishing_a_version_that_cannot_exist_is_4xx(client: AsyncTestClient[Any], value: str) -> None:
    raw = load_fixture("bundle1/simple-echo-workflow.json")
    assert (await client.post("/api/v1/workflows", json=raw)).status_code == 201
    response = await client.post("/api/v1/workflows/simple-echo/publish", params={"version": value})
    assert_problem(response, 400, 404)


async def test_reading_events_after_the_largest_id_is_empty(client: AsyncTestClient[Any], execution: str) -> None:
    response = await client.get(f"/api/v1/executions/{execution}/events", params={"after": str(BIGINT_MAX)})
    assert response.status_code == 200 and response.json() == []


def _cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


# What a cursor of each list holds before its key (paging.scoped): the list and its filters, here none.
_SCOPES = {
    "/api/v1/dead-letters": ["dead-letters", None, None, None],
    "/api/v1/workflows": ["workflows", None],
    "/api/v1/executions": ["executions", None, None, None, None, None, None],
}


def _key(path: str, key: Any) -> str:
    """The cursor of `path`'s unfiltered list whose key is `key`."""
    return _cursor([*_SCOPES[path], key])


@pytest.mark.parametrize(
    ("path", "cursor"),
    [
        ("/api/v1/dead-letters", _key("/api/v1/dead-letters", 2**63)),
        ("/api/v1/dead-letters", _key("/api/v1/dead-letters", -(2**63) - 1)),
        ("/api/v1/dead-letters", _key("/api/v1/dead-letters", 10**40)),
        ("/api/v1/dead-letters", _key("/api/v1/dead-letters", 0)),
        ("/api/v1/dead-letters", _key("/api/v1/dead-letters", -5)),
        ("/api/v1/dead-letters", _key("/api/v1/dead-letters", True)),
        ("/api/v1/dead-letters", _key("/api/v1/dead-letters", 1.5)),
        ("/api/v1/workflows", _key("/api/v1/workflows", "a\u0000b")),
        ("/api/v1/workflows", _key("/api/v1/workflows", 2**63)),
        ("/api/v1/executions", _key("/api/v1/executions", ["2020-01-01T00:00:00+00:00", str(2**63)])),
        ("/api/v1/executions", _key("/api/v1/executions", ["99999-01-01", "00000000-0000-0000-0000-000000000000"])),
        # A page's cursor names its time with its offset (the server's time zone would read this one).
        ("/api/v1/executions", _key("/api/v1/executions", ["2020-01-01T00:00:00", str(uuid.UUID(int=0))])),
        ("/api/v1/executions", base64.urlsafe_b64encode(b"9" * 5000).decode()),
    ],
)
async def test_a_cursor_no_page_produced_is_400(client: AsyncTestClient[Any], path: str, cursor: str) -> None:
    response = await client.get(path, params={"cursor": cursor})
    body = assert_problem(response, 400)
    assert body["code"] == "bad_request" and [e["parameter"] for e in body["errors"]] == ["cursor"]


@pytest.mark.parametrize(
    ("path", "cursor"),
    [
        ("/api/v1/dead-letters", _key("/api/v1/dead-letters", BIGINT_MAX)),
        ("/api/v1/dead-letters", _key("/api/v1/dead-letters", 1)),
        # The ends of what a timestamp can be, with the offsets that push them past a year's edge.
        (
            "/api/v1/executions",
            _key("/api/v1/executions", ["0001-01-01T00:00:00+14:00", "00000000-0000-0000-0000-000000000000"]),
        ),
        (
            "/api/v1/executions",
            _key("/api/v1/executions", ["9999-12-31T23:59:59-14:00", "00000000-0000-0000-0000-000000000000"]),
        ),
    ],
)
async def test_an_extreme_but_well_formed_cursor_is_a_page(
    client: AsyncTestClient[Any], path: str, cursor: str
) -> None:
    response = await client.get(path, params={"cursor": cursor})
    assert response.status_code == 200 and response.json()["items"] == [], response.text


# A client that hangs up mid-body, against a real server: the in-process test client never sends
# http.disconnect while a body is being read.


_REQUESTS = re.compile(r"^dataworkflows_http_requests_total\{(.*)\} (\S+)$", re.MULTILINE)


def _counter(metrics: str, status: str) -> float:
    """dataworkflows_http_requests_total summed over routes; labels hold braces ({workflow_id})."""
    return sum(float(value) for labels, value in _REQUESTS.findall(metrics) if f'status="{status}"' in labels)


def _requests(metrics: str) -> str:
    return "\n".join(line for line in metrics.splitlines() if line.startswith("dataworkflows_http_requests_total"))


def _hang_up_mid_body(port: int, path: str) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: 100000\r\n\r\n"
        )
        sock.sendall(head.encode() + b'{"trigger": {"blob": "' + b"x" * 1000)
        time.sleep(0.2)


def test_a_client_that_hangs_up_mid_body_is_a_499_not_a_500(dsn: str, tmp_path: Path) -> None:
    env = {**os.environ, "DATABASE_URL": dsn, "DW_LOG_FORMAT": "json"}
    stack = Stack(dsn=dsn, port=free_port(), logs=tmp_path, env=env)
    try:
        stack.start_api()
        with httpx.Client(base_url=stack.url, timeout=10) as http:
            before = http.get("/metrics").text
            for path in ["/api/v1/workflows/simple-echo/execute", "/api/v1/workflows"]:
                _hang_up_mid_body(stack.port, path)
            # A request uvicorn cannot parse: its warning was plain text among the JSON lines (its
            # own logging config gave its loggers handlers of their own; a review).
            with socket.create_connection(("127.0.0.1", stack.port), timeout=5) as sock:
                sock.sendall(b"GARBAGE\x01 / HTTP/1.1\r\n\r\n")
                sock.recv(300)
            deadline = time.monotonic() + 10
            while True:
                after = http.get("/metrics").text
                if _counter(after, "499") - _counter(before, "499") >= 2 or time.monotonic() > deadline:
                    break
                time.sleep(0.1)
    finally:
        stack.stop()
    logs = stack.read_logs()
    assert _counter(after, "500") == _counter(before, "500"), _requests(after)
    assert _counter(after, "499") - _counter(before, "499") == 2, _requests(after)
    assert 'route="/api/v1/workflows/{workflow_id}/execute",status="499"' in after, _requests(after)
    assert "Traceback" not in logs and '"level": "error"' not in logs, logs
    assert "client disconnected" in logs, logs
    lines = [line for line in (tmp_path / "api.log").read_text().splitlines() if line.strip()]
    assert all(line.startswith("{") and line.endswith("}") for line in lines), lines
    assert any('"Invalid HTTP request received."' in line for line in lines), lines


async def test_a_405_says_which_methods_the_path_allows(client: AsyncTestClient[Any], execution: str) -> None:
    # RFC 9110 15.5.6: a 405 carries Allow. Litestar puts it on its exception; the problem kept it.
    # (A workflow's path takes DELETE since workflows can be deleted: PATCH is one it does not take.)
    for method, path in [("PATCH", "/api/v1/workflows/simple-echo"), ("PUT", f"/api/v1/executions/{execution}")]:
        response = await client.request(method, path)
        assert_problem(response, 405)
        allowed = {m.strip() for m in response.headers.get("allow", "").split(",")}
        assert "GET" in allowed and method not in allowed, (path, response.headers)
        # HEAD with GET, as OPTIONS says (Litestar's 405 named its routes' methods only).
        assert "HEAD" in allowed, (path, response.headers)
        options = await client.options(path)
        assert {m.strip() for m in options.headers["allow"].split(",")} == allowed, (options.headers, allowed)
    # A HEAD of a path that takes no GET is a 405 with the same Allow.
    head = await client.head("/api/v1/workflows/simple-echo/execute")
    assert head.status_code == 405, head
    assert [m.strip() for m in head.headers["allow"].split(",")] == ["POST", "OPTIONS"], head.headers


# A value msgspec cannot take, deep inside a body: the pointer goes as far as msgspec names the way
# (a trigger's keys it does not name: `$.trigger[...][...][2]`). It was "/trigger/////////2", each
# `[...]` a slash of its own.
DEEP_VALUES = [
    {"trigger": {"a": {"b": [1, 2, "1e400"]}}},
    {"trigger": {"k": "1e400"}},
    {"trigger": {"a/b": {"c~d": "1e400"}}},
    {"trigger": {"list": ["1e400"]}},
]


@pytest.mark.parametrize("body", DEEP_VALUES)
async def test_a_bad_value_deep_in_a_body_is_pointed_at(
    client: AsyncTestClient[Any], execution: str, body: dict[str, Any]
) -> None:
    # 1e400 is past a float's range: json.dumps cannot write it, so the body is written by hand.
    raw = json.dumps(body).replace('"1e400"', "1e400")
    response = await client.post(
        "/api/v1/workflows/simple-echo/execute", content=raw, headers={"content-type": "application/json"}
    )
    problem = assert_problem(response, 400)
    assert [e["pointer"] for e in problem["errors"]] == ["/trigger"], problem
    assert problem["detail"] == "the request body at /trigger: Number out of range", problem


def test_msgspec_paths_become_pointers_as_far_as_they_name_the_way() -> None:
    from dataworkflows.api.params import _known_path

    assert _known_path(".nodes[2].parameters[...][0]") == "nodes.2.parameters"
    assert _known_path(".rateLimitPerMinute") == "rateLimitPerMinute"
    assert _known_path("[...]") == ""
    assert _known_path("[3]") == "3"


async def test_head_is_answered_wherever_get_is(client: AsyncTestClient[Any], execution: str) -> None:
    # RFC 9110 9.3.2: HEAD is GET without the body. Only the health checks took it (405 elsewhere).
    for path in [
        "/api/v1/workflows",
        "/api/v1/workflows/simple-echo",
        f"/api/v1/executions/{execution}",
        f"/api/v1/executions/{execution}/events",
        "/metrics",
    ]:
        got = await client.get(path)
        head = await client.head(path)
        assert (head.status_code, head.content) == (got.status_code, b""), path
        if path != "/metrics":  # its counters moved with the GET
            assert head.headers.get("content-length") == got.headers.get("content-length"), path
        assert head.headers["content-type"] == got.headers["content-type"], path
    # A missing one is the GET's 404, without its problem document.
    missing = await client.head("/api/v1/workflows/nope")
    assert (missing.status_code, missing.content) == (404, b"")
    # A path without GET still refuses it.
    assert (await client.head("/api/v1/workflows/simple-echo/execute")).status_code == 405
    # Counted as what the client sent.
    metrics = (await client.get("/metrics")).text
    assert 'method="HEAD",route="/api/v1/workflows/{workflow_id}",status="200"' in metrics, [
        line for line in metrics.splitlines() if "HEAD" in line
    ]


async def test_options_names_every_method_of_the_path(client: AsyncTestClient[Any], execution: str) -> None:
    """Litestar's OPTIONS named one route's methods where a path has several handlers (`OPTIONS, POST` for
    /workflows, which lists too), and never HEAD, which every GET route takes."""
    expected = {
        "/api/v1/workflows": "GET, HEAD, POST, OPTIONS",
        "/api/v1/connections/x": "GET, HEAD, PUT, PATCH, DELETE, OPTIONS",
        f"/api/v1/executions/{execution}": "GET, HEAD, OPTIONS",
        "/api/v1/workflows/simple-echo/execute": "POST, OPTIONS",
    }
    for path, allow in expected.items():
        response = await client.options(path)
        assert (response.status_code, response.headers.get("allow")) == (204, allow), (path, response.headers)


async def test_a_created_trigger_says_where_it_is(client: AsyncTestClient[Any], execution: str) -> None:
    hook = await client.post(
        "/api/v1/workflows/simple-echo/triggers",
        json={"kind": "webhook", "name": "located", "config": {"signature": "none"}},
    )
    assert hook.status_code == 201, hook.text
    assert hook.headers["location"] == f"/api/v1/triggers/{hook.json()['id']}"
    assert (await client.get(hook.headers["location"])).json()["name"] == "located"


async def test_a_nul_character_in_a_trigger_or_a_signal_is_pointed_at(
    client: AsyncTestClient[Any], execution: str
) -> None:
    # PostgreSQL stores none; its refusal named no field ("the database refused a value").
    for trigger, pointer in [
        ({"a": {"b": ["ok", "x\u0000y"]}}, "/trigger/a/b/1"),
        ({"k\u0000": 1}, "/trigger/k\u0000"),
        ({"a/b": "\u0000"}, "/trigger/a~1b"),
    ]:
        answer = await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": trigger})
        problem = assert_problem(answer, 422)
        assert [(e["pointer"], e["code"]) for e in problem["errors"]] == [(pointer, "nul_character")], problem
    signal = await client.post(f"/api/v1/executions/{execution}/signals/go", json={"payload": {"n": "\u0000"}})
    problem = assert_problem(signal, 422)
    assert [e["pointer"] for e in problem["errors"]] == ["/payload/n"], problem
    # Anywhere in a JSON body: a signal's ids, an approval's comment (the database's 422 named none).
    for body, pointer in [({"signalId": "a\u0000"}, "/signalId"), ({"correlationKey": "\u0000"}, "/correlationKey")]:
        signal = await client.post(f"/api/v1/executions/{execution}/signals/go", json=body)
        assert [e["pointer"] for e in assert_problem(signal, 422)["errors"]] == [pointer], body
    decision = await client.post(
        f"/api/v1/approvals/{uuid.uuid4()}/decision",
        json={"decision": "approve", "comment": "a\u0000b"},
        headers={"X-Principal-Id": "ana"},
    )
    assert [e["pointer"] for e in assert_problem(decision, 422)["errors"]] == ["/comment"]
    # The six characters \u0000 written as text are no NUL.
    text = await client.post(f"/api/v1/executions/{execution}/signals/go", json={"payload": {"n": "\\u0000"}})
    assert text.status_code == 202, text.text


async def test_a_lone_surrogate_escape_is_named(client: AsyncTestClient[Any], execution: str) -> None:
    # msgspec's words for it were "Input data was truncated".
    for content in [b'{"trigger": {"a": "\\ud800"}}', b'{"trigger": {"a": "x\\udfffy"}}']:
        answer = await client.post(
            "/api/v1/workflows/simple-echo/execute", content=content, headers={"Content-Type": "application/json"}
        )
        assert "lone UTF-16 surrogate" in assert_problem(answer, 400)["detail"], content
    # A pair is a character.
    paired = await client.post(
        "/api/v1/workflows/simple-echo/execute",
        content=b'{"trigger": {"a": "\\ud83d\\ude00"}}',
        headers={"Content-Type": "application/json"},
    )
    assert paired.status_code == 202, paired.text


async def test_a_body_of_whitespace_or_null_is_a_400_that_says_so(client: AsyncTestClient[Any], execution: str) -> None:
    """Whitespace was "Input data was truncated"; `null` was read as no body by the routes whose body
    may be left out (a redrive, a resume: "no body, or `{}`"), and did what they do."""
    json_type = {"Content-Type": "application/json"}
    for path in ("/api/v1/workflows/simple-echo/execute", f"/api/v1/executions/{execution}/resume"):
        blank = await client.post(path, content=b" \n ", headers=json_type)
        assert assert_problem(blank, 400)["detail"] == "the request body holds only whitespace: send a JSON object"
        null = await client.post(path, content=b" null ", headers=json_type)
        assert "Expected `object`, got `null`" in assert_problem(null, 400)["detail"], null.text
    # No body at all is still no body.
    answer = await client.post(f"/api/v1/executions/{execution}/resume")
    assert answer.status_code in (202, 409), answer.text


async def test_a_stored_value_too_deep_to_read_is_not_a_bad_request(
    client: AsyncTestClient[Any], db: Database, execution: str
) -> None:
    """An attempt recorded before outputs were capped at 100 levels could nest deeper than the JSON
    decoders go: the GET said 400 "the request body is nested too deeply" (a GET has none)."""
    deep = "[" * 990 + "]" * 990
    async with db.connection() as conn:
        await conn.execute(
            "UPDATE dw.node_states SET outputs = %s::jsonb WHERE execution_id = %s", (deep, uuid.UUID(execution))
        )
    problem = assert_problem(await client.get(f"/api/v1/executions/{execution}"), 422)
    assert problem["code"] == "stored_value_too_deep", problem


def refuse_as_too_large(monkeypatch: pytest.MonkeyPatch, *names: str) -> None:
    """The named queries fail as PostgreSQL fails a value past its 1 GB allocation (XX000): reproducing
    it takes a value of that size, so the error is raised where the statement would have run."""
    from dataworkflows import db as data_layer

    real = data_layer._run
    refused = {data_layer.QUERIES[name] for name in names}

    async def run(conn: Any, query: str, params: dict[str, Any], role: str | None, **kwargs: Any) -> Any:
        if query in refused:
            raise psycopg.errors.InternalError_("invalid memory alloc request size 1073741824")
        return await real(conn, query, params, role, **kwargs)

    monkeypatch.setattr(data_layer, "_run", run)


async def test_a_read_the_database_cannot_answer_in_one_piece_is_not_the_request_s_fault(
    client: AsyncTestClient[Any], execution: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A review: a GET whose stored values PostgreSQL could not answer (past its 1 GB allocation) said
    422 "Invalid input" (a GET has none), and an event stream broke off with a traceback in the log at
    once, which its client reconnected to for ever."""
    refuse_as_too_large(
        monkeypatch, "list_node_states", "list_events", "list_executions", "start_execution_then_notify"
    )
    for path in (f"/api/v1/executions/{execution}", f"/api/v1/executions/{execution}/events", "/api/v1/executions"):
        problem = assert_problem(await client.get(path), 422)
        assert problem["code"] == "stored_value_too_large", problem
        assert "too large for the database to answer in one piece" in problem["detail"], problem
    stream = await client.get(f"/api/v1/executions/{execution}/events", headers={"Accept": "text/event-stream"})
    assert assert_problem(stream, 422)["code"] == "stored_value_too_large"
    # A write's value is its own fault, as it was.
    started = await client.post("/api/v1/workflows/simple-echo/execute", json={"trigger": {"a": 1}})
    problem = assert_problem(started, 422)
    assert problem["code"] == "invalid_input" and "cannot hold a value this large" in problem["detail"], problem
