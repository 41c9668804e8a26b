"""What traces cost per step: tracing off (the default) against on (the OpenTelemetry SDK, batching
spans to an exporter that drops them, so that no collector's speed is measured).

    .venv/bin/python bench/traces.py            # about 40 s on 2 cores
    .venv/bin/python bench/traces.py --quick    # about 15 s

1. The hooks alone, in-process, no database: what one attempt's hook (dataworkflows.traces.attempt),
   one http.request header injection and one execution's hook add around an awaited no-op, off and
   on; for reference, the OpenTelemetry API's own no-op tracer (what a span would cost if the off
   path went through it instead of testing one module global).
2. End to end, one embedded PostgreSQL (or a scratch database on DATABASE_URL): executions of a
   20-node echo chain run one after the other by an in-process runtime, rounds alternating off and
   on; per step: the worker's CPU time (this process, the span exporter's thread included: what
   tracing adds, and little disturbed by other load) and the wall time (dominated by PostgreSQL's
   commits, fsync on). Starting an execution (the API's path, with a stored trace context when on)
   is outside the timed part.

Prints a table; timings on a shared machine are noisy, so compare the medians of several rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from uuid import UUID

from opentelemetry import trace as otel_trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from dataworkflows import traces
from dataworkflows.actions import default_registry
from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database, make_pool
from dataworkflows.logs import configure_logging
from dataworkflows.migrations import migrate
from dataworkflows.publishing import compile_for_publish, prepare_definition
from dataworkflows.runtime import Runtime, RuntimeSettings
from dataworkflows.template_pool import TemplatePool
from dataworkflows.tenancy import DEFAULT_TENANT, tenant_scope
from harness import bench_database

CHAIN = 20


class DroppingExporter(SpanExporter):
    """Counts spans and sends them nowhere."""

    def __init__(self) -> None:
        self.exported = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.exported += len(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        return None


def sdk_provider() -> tuple[TracerProvider, DroppingExporter]:
    exporter = DroppingExporter()
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider, exporter


async def _noop() -> int:
    return 1


async def per_call_us(make: Callable[[], Awaitable[Any]], n: int) -> float:
    for _ in range(min(n, 1000)):
        await make()
    start = time.perf_counter()
    for _ in range(n):
        await make()
    return (time.perf_counter() - start) / n * 1e6


async def hooks(n: int) -> list[tuple[str, float]]:
    """Microseconds per call of each hook, off and on, less the bare await it wraps."""

    async def injected() -> None:
        traces.inject({"Accept-Encoding": "gzip"})

    async def api_noop_span() -> int:
        with otel_trace.NoOpTracer().start_as_current_span("x"):
            return await _noop()

    one = UUID(int=1)
    bare = await per_call_us(_noop, n)
    rows = [("bare `await` of a no-op coroutine (subtracted below)", bare)]
    traces.use(None)
    rows.append(
        ("off: attempt hook", await per_call_us(lambda: traces.attempt("n", "core.echo", 1, _noop()), n) - bare)
    )
    rows.append(
        (
            "off: execution hook",
            await per_call_us(lambda: traces.execution(None, one, "w", 1, "w", _noop), n) - bare,
        )
    )  # type: ignore[arg-type]
    rows.append(("off: http.request header injection", await per_call_us(injected, n) - bare))
    rows.append(("reference: OpenTelemetry API no-op tracer span", await per_call_us(api_noop_span, n) - bare))
    provider, _ = sdk_provider()
    traces.use(provider)
    try:
        rows.append(
            (
                "on: attempt hook (SDK span, batched)",
                await per_call_us(lambda: traces.attempt("n", "core.echo", 1, _noop()), n) - bare,
            )
        )
        tracer = provider.get_tracer("bench")
        with tracer.start_as_current_span("parent"):
            rows.append(("on: http.request header injection", await per_call_us(injected, n) - bare))
    finally:
        traces.use(None)
        provider.shutdown()
    return rows


def chain_workflow(workflow_id: str) -> dict[str, Any]:
    nodes = []
    for i in range(CHAIN):
        node: dict[str, Any] = {"id": f"n{i}", "actionType": "core.echo", "parameters": {"message": f"step {i}"}}
        if i + 1 < CHAIN:
            node["edges"] = [{"targetNode": f"n{i + 1}", "when": "success"}]
        nodes.append(node)
    return {"id": workflow_id, "displayName": workflow_id, "startNode": "n0", "nodes": nodes}


async def end_to_end(conninfo: str, executions: int, rounds: int) -> dict[str, list[float]]:
    """Microseconds per step of each round: {"off", "on"} (CPU) and {"off wall", "on wall"}."""
    migrate(conninfo)
    pool = make_pool(conninfo, min_size=2, max_size=10, name="bench")
    await pool.open(wait=True)
    db = Database(pool)
    conditions = ConditionPool(size=1)
    templates = TemplatePool(size=1, timeout_seconds=5.0)
    results: dict[str, list[float]] = {"off": [], "on": [], "off wall": [], "on wall": []}
    provider, exporter = sdk_provider()
    try:
        with tenant_scope(DEFAULT_TENANT):
            raw = chain_workflow("trace-chain")
            prepared = await prepare_definition(raw, default_registry(), conditions)
            version, _ = await db.workflows.save_definition(prepared, "bench")
            await db.workflows.publish(
                workflow_id="trace-chain",
                version=version,
                plan=compile_for_publish(prepared.definition, version),
                principal="bench",
            )
            runtime = Runtime(
                db, default_registry(), RuntimeSettings(worker_id="bench"), conditions, templates=templates
            )
            context = {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
            for round_number in range(rounds * 2 + 1):
                mode = "on" if round_number % 2 else "off"
                traces.use(provider if mode == "on" else None)
                ids = []
                for _ in range(executions):
                    started = await db.executions.start(
                        workflow_id="trace-chain",
                        request_id=f"r{round_number}-{len(ids)}",
                        trigger={},
                        principal_id="bench",
                        principal_type="user",
                        correlation_id=None,
                        queue="bench",
                        trace_context=context if mode == "on" else None,
                    )
                    ids.append(started.execution_id)
                start, cpu = time.perf_counter(), time.process_time()
                for execution_id in ids:
                    outcome = await runtime.run_execution(execution_id)
                    assert outcome == "Succeeded", outcome
                steps = executions * CHAIN
                elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
                if round_number == 0:
                    continue  # warm-up: plan cache, prepared statements, pool
                results[mode].append(cpu / steps * 1e6)
                results[f"{mode} wall"].append(elapsed / steps * 1e6)
                print(
                    f"  round {round_number}: tracing {mode}, CPU {results[mode][-1]:.0f} us/step,"
                    f" wall {results[f'{mode} wall'][-1]:.0f} us/step",
                    file=sys.stderr,
                )
    finally:
        traces.use(None)
        provider.shutdown()
        await templates.close()
        await conditions.close()
        await pool.close()
    print(f"  spans exported (dropped) while on: {exporter.exported}", file=sys.stderr)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="What traces cost per step, off and on.")
    parser.add_argument("--quick", action="store_true", help="smaller sizes (about 15 s)")
    parser.add_argument("--calls", type=int, help="calls per hook measurement (default 200000; quick 50000)")
    parser.add_argument("--executions", type=int, help="executions per end-to-end round (default 40; quick 15)")
    parser.add_argument("--rounds", type=int, help="rounds of each mode (default 4; quick 2)")
    args = parser.parse_args(argv)
    configure_logging("console", "warning")  # a log line per step would be most of what is measured
    calls = args.calls or (50_000 if args.quick else 200_000)
    executions = args.executions or (15 if args.quick else 40)
    rounds = args.rounds or (2 if args.quick else 4)

    print(f"1. hooks alone ({calls} calls each), microseconds per call")
    for name, value in asyncio.run(hooks(calls)):
        print(f"   {name:<58} {value:8.3f}")
    print(f"2. end to end: {CHAIN}-node echo chain, {executions} executions per round, {rounds} rounds each")
    with bench_database() as (conninfo, description):
        print(f"   database: {description}")
        results = asyncio.run(end_to_end(conninfo, executions, rounds))
    for label, key in (("worker CPU", ""), ("wall time", " wall")):
        off, on = statistics.median(results["off" + key]), statistics.median(results["on" + key])
        rounds_off = ", ".join(f"{v:.0f}" for v in results["off" + key])
        rounds_on = ", ".join(f"{v:.0f}" for v in results["on" + key])
        print(f"   {label}, tracing off: {off:7.0f} us/step (median; rounds {rounds_off})")
        print(f"   {label}, tracing on:  {on:7.0f} us/step (median; rounds {rounds_on})")
        print(f"   {label}, on - off:    {on - off:7.0f} us/step ({(on - off) / off * 100:+.1f} %)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
