"""Issue 18, traces: the execute request's span, the execution's and each attempt's, in the caller's
trace (W3C traceparent in, stored on the execution, continued by the worker, sent on by
http.request), checked with the SDK's in-memory exporter; and nothing secret in a span."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any
from uuid import UUID

import pytest
from litestar.testing import AsyncTestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from dataworkflows import traces
from dataworkflows.api.app import create_app
from dataworkflows.conditions import ConditionPool
from dataworkflows.config import Settings
from dataworkflows.db import Database
from dataworkflows.http_client import make_http_client
from dataworkflows.runtime import Runtime
from dataworkflows.template_pool import TemplatePool
from tests.conftest import publish
from tests.fakes import HTTP_TOKEN, FakeServers, fake_servers
from tests.integration.test_connectors import connector_runtime
from tests.integration.test_runtime import echo, to, wf
from tests.integration.test_subworkflows import drain, sub

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
OWN_TRACEPARENT = "00-11111111111111111111111111111111-2222222222222222-01"
TRIGGER_SECRET = "trigger-value-7f3a9c"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    traces.use(provider)
    try:
        yield exporter
    finally:
        traces.use(None)
        provider.shutdown()


@pytest.fixture
async def stack(
    dsn: str, db: Database, conditions: ConditionPool, templates: TemplatePool, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[AsyncTestClient[Any], Runtime, FakeServers]]:
    """The API in-process, a runtime whose http.request may call the loopback fake server (with a
    stored-in-the-environment bearer connection), and that server."""
    async with fake_servers() as fakes:
        hosts = [f"127.0.0.1:{fakes.port}"]
        monkeypatch.setenv("DW_CONNECTION_EXAMPLE_API", json.dumps({"hosts": hosts, "bearer": HTTP_TOKEN}))
        settings = Settings(http_allowed_hosts=f"127.0.0.1:{fakes.port}")
        http = make_http_client(settings.allowed_hosts)
        runtime = connector_runtime(db, conditions, templates, settings, http)
        try:
            async with AsyncTestClient(create_app(Settings(database_url=dsn))) as client:
                yield client, runtime, fakes
        finally:
            await http.aclose()


def http_node(node_id: str, url: str, *edges: dict[str, Any], **parameters: Any) -> dict[str, Any]:
    node: dict[str, Any] = {"id": node_id, "actionType": "http.request", "parameters": {"url": url, **parameters}}
    if edges:
        node["edges"] = list(edges)
    return node


async def execute(client: AsyncTestClient[Any], workflow_id: str, headers: dict[str, str]) -> UUID:
    response = await client.post(
        f"/api/v1/workflows/{workflow_id}/execute", json={"trigger": {"q": TRIGGER_SECRET}}, headers=headers
    )
    assert response.status_code == 202, response.text
    return UUID(response.json()["executionId"])


async def sent_headers(db: Database, execution_id: UUID, node_id: str) -> dict[str, str]:
    """The headers the loopback server received from the node's attempt (it echoes them back)."""
    (attempt,) = [a for a in await db.executions.attempts(execution_id) if a.node_id == node_id]
    headers = attempt.outputs["body"]["headers"]
    assert isinstance(headers, dict)
    return headers


def strings_in(span: ReadableSpan) -> list[str]:
    """Everything a span carries as text: its name, status, attributes and events."""
    found = [span.name, span.status.description or ""]
    found += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
    for event in span.events:
        found += [event.name, *(f"{k}={v}" for k, v in (event.attributes or {}).items())]
    return found


async def test_one_trace_from_the_request_through_the_worker_to_http_request_and_off_without_an_endpoint(
    db: Database, conditions: ConditionPool, spans: InMemorySpanExporter, stack: Any
) -> None:
    client, runtime, fakes = stack
    await publish(db, wf("traced-child", echo("inner")), conditions)
    echo_url = f"{fakes.base}/http/echo-headers"
    raw = wf(
        "traced",
        http_node("call", echo_url, to("own"), connection="example-api", query={"q": "{{ trigger.q }}"}),
        http_node("own", echo_url, to("kid"), headers={"TraceParent": OWN_TRACEPARENT}),
        sub("kid", "traced-child", to("fails")),
        echo("fails", simulateFailure="permanent"),
    )
    await publish(db, raw, conditions)

    execution_id = await execute(client, "traced", {"traceparent": TRACEPARENT, "tracestate": "vendor=abc"})
    await drain(db, runtime)

    finished = {s.name: s for s in spans.get_finished_spans()}
    request = finished["POST /api/v1/workflows/{workflow_id}/execute"]
    assert request.kind == SpanKind.SERVER
    # The request's span continues the caller's trace.
    assert request.parent is not None and request.parent.span_id == int(CALLER_SPAN, 16)
    assert request.context.trace_id == int(CALLER_TRACE, 16)
    assert request.attributes is not None
    assert request.attributes["dw.execution.id"] == str(execution_id)
    assert request.attributes["http.response.status_code"] == 202
    assert request.attributes["dw.workflow.id"] == "traced"

    every = spans.get_finished_spans()
    assert {s.context.trace_id for s in every} == {int(CALLER_TRACE, 16)}, "one trace, the caller's"
    runs = [s for s in every if s.name == "execution traced"]
    # The parent run is held twice: until it parks on its child, and after the child ended.
    assert len(runs) == 2 and all(r.parent is not None and r.parent.span_id == request.context.span_id for r in runs)
    assert {(r.attributes or {}).get("dw.execution.outcome") for r in runs} == {"parked", "Failed"}
    failed_run = next(r for r in runs if (r.attributes or {}).get("dw.execution.outcome") == "Failed")
    assert failed_run.status.status_code == StatusCode.ERROR
    attempts = {s.name: s for s in every if s.name.startswith("node ")}
    assert set(attempts) == {"node call", "node own", "node kid", "node fails", "node inner"}
    hold = {r.context.span_id for r in runs}
    for name in ("node call", "node own", "node kid", "node fails"):
        assert attempts[name].parent is not None and attempts[name].parent.span_id in hold, name
    assert (attempts["node call"].attributes or {})["dw.attempt.status"] == "Succeeded"
    assert (attempts["node kid"].attributes or {})["dw.attempt.status"] == "child_started"
    fails = attempts["node fails"]
    assert fails.status.status_code == StatusCode.ERROR
    assert (fails.attributes or {})["error.type"] == "simulated_permanent_failure"
    # The child run inherited the stored context: its execution span is in the same trace.
    (child_run,) = [s for s in every if s.name == "execution traced-child"]
    assert child_run.parent is not None and child_run.parent.span_id == request.context.span_id
    assert attempts["node inner"].parent is not None
    assert attempts["node inner"].parent.span_id == child_run.context.span_id

    # http.request sent the attempt's context on, with the caller's tracestate.
    call = attempts["node call"]
    headers = await sent_headers(db, execution_id, "call")
    assert headers["traceparent"] == f"00-{CALLER_TRACE}-{call.context.span_id:016x}-01"
    assert headers["tracestate"] == "vendor=abc"
    # A traceparent the workflow set (in any case) is sent as it is, and no second one.
    own = await sent_headers(db, execution_id, "own")
    assert own["traceparent"] == OWN_TRACEPARENT
    assert "tracestate" not in own

    # Nothing secret or from the trigger in any span.
    text = "\n".join(t for s in every for t in strings_in(s))
    for secret in (HTTP_TOKEN, TRIGGER_SECRET, "Bearer"):
        assert secret not in text

    # Off (the same API and worker, which read the switch at each call), the caller's context is
    # still stored, so that a traced worker could continue it; an invalid one is dropped; the
    # worker sends nothing on.
    traces.use(None)
    spans.clear()
    await publish(db, wf("untraced", http_node("call", echo_url)), conditions)
    with_context = await execute(client, "untraced", {"traceparent": TRACEPARENT, "tracestate": "vendor=abc"})
    without = await execute(client, "untraced", {})
    invalid = await execute(client, "untraced", {"traceparent": "00-not-a-trace-01"})
    await drain(db, runtime)
    assert await db.executions.trace_context(with_context) == {"traceparent": TRACEPARENT, "tracestate": "vendor=abc"}
    assert await db.executions.trace_context(without) is None
    assert await db.executions.trace_context(invalid) is None
    assert "traceparent" not in await sent_headers(db, with_context, "call")
    assert not spans.get_finished_spans()


async def test_a_run_started_without_a_trace_context_keeps_its_first_workers_for_its_tree(
    db: Database, conditions: ConditionPool, spans: InMemorySpanExporter, stack: Any
) -> None:
    """A review: a run a webhook or a schedule started (no stored context) began a new trace at each
    hold, and each child it started began one more; now its first hold's context is kept."""
    from tests.conftest import start

    _, runtime, _ = stack
    await publish(db, wf("untraced-child", echo("inner")), conditions)
    await publish(db, wf("untraced", sub("kid", "untraced-child", to("after")), echo("after")), conditions)
    execution_id = await start(db, "untraced")  # as a webhook's or a schedule's start: no context
    await drain(db, runtime)
    runs = [s for s in spans.get_finished_spans() if s.name.startswith("execution ")]
    assert {s.name for s in runs} == {"execution untraced", "execution untraced-child"}
    assert len(runs) >= 3, [s.name for s in runs]  # the parent parked on its child, then resumed
    assert len({s.context.trace_id for s in runs}) == 1, [(s.name, s.context.trace_id) for s in runs]
    kept = await db.executions.trace_context(execution_id)
    assert kept is not None and "traceparent" in kept
