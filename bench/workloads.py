"""The engine's side of a benchmark: the benchmark workflows, starting executions, waiting for them, and
the figures read back from the engine's tables (server clock)."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from psycopg.types.json import Jsonb

from dataworkflows.actions import default_registry
from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database
from dataworkflows.publishing import compile_for_publish, prepare_definition
from figures import progress, ratio
from harness import FINAL, QUEUE, BenchError, CpuSampler, Monitor, ProcessCpu, Subprocess, child_env, worker_command


def echo_node(node_id: str, edges: list[str] | None = None) -> dict[str, Any]:
    node: dict[str, Any] = {"id": node_id, "actionType": "core.echo", "parameters": {"message": f"hi from {node_id}"}}
    if edges is not None:
        node["edges"] = [{"targetNode": target, "when": "success"} for target in edges]
    return node


def echo2_workflow(workflow_id: str) -> dict[str, Any]:
    """The seeds' simple-echo shape: two nodes, no edges (list order)."""
    return {
        "id": workflow_id,
        "displayName": "Bench: simple echo",
        "startNode": "echo1",
        "nodes": [echo_node("echo1"), echo_node("echo2")],
    }


def wide_workflow(workflow_id: str, fanout: int) -> dict[str, Any]:
    branches = [f"branch{i:02d}" for i in range(1, fanout + 1)]
    return {
        "id": workflow_id,
        "displayName": f"Bench: fan-out {fanout}",
        "startNode": "start",
        "orchestration": {"maxParallelActions": fanout},
        "nodes": [
            echo_node("start", branches),
            *(echo_node(branch, ["join"]) for branch in branches),
            echo_node("join", []),
        ],
    }


def chain_workflow(workflow_id: str, length: int) -> dict[str, Any]:
    ids = [f"step{i:02d}" for i in range(1, length + 1)]
    return {
        "id": workflow_id,
        "displayName": f"Bench: chain of {length}",
        "startNode": ids[0],
        "nodes": [echo_node(node_id, [ids[i + 1]] if i + 1 < length else []) for i, node_id in enumerate(ids)],
    }


def branch_workflow(workflow_id: str) -> dict[str, Any]:
    """Two steps as a workflow with data in it takes them: a lookup template (rendered in the worker), two
    edge conditions (JavaScript, in the condition helpers), one of which fires, and a template with a
    filter (rendered in a template helper); the other branch is Skipped. Its records are not the common
    record (an edge that does not fire), so they take group commit's record-by-record way."""
    return {
        "id": workflow_id,
        "displayName": "Bench: branch on a condition",
        "startNode": "check",
        "nodes": [
            {
                "id": "check",
                "actionType": "core.echo",
                "parameters": {"message": "{{ trigger.status }}"},
                "edges": [
                    {"targetNode": "approve", "when": "success", "condition": "nodes.check.echo === 'approved'"},
                    {"targetNode": "reject", "when": "success", "condition": "nodes.check.echo !== 'approved'"},
                ],
            },
            {
                "id": "approve",
                "actionType": "core.echo",
                "parameters": {"message": "{{ nodes.check.echo | upper }} #{{ trigger.index }}"},
            },
            {"id": "reject", "actionType": "core.echo", "parameters": {"message": "rejected"}},
        ],
    }


async def publish(db: Database, raw: dict[str, Any]) -> None:
    # Prepared as the API prepares it; the pool starts a helper only for a workflow with conditions.
    conditions = ConditionPool(size=1)
    try:
        prepared = await prepare_definition(raw, default_registry(), conditions)
    finally:
        await conditions.close()
    definition = prepared.definition
    version, _ = await db.workflows.save_definition(prepared, "bench")
    await db.workflows.publish(
        workflow_id=definition.id, version=version, plan=compile_for_publish(definition, version), principal="bench"
    )


async def start_one(db: Database, workflow_id: str, index: int) -> float:
    """Starts one execution; returns the call's round-trip seconds."""
    started = time.perf_counter()
    await db.executions.start(
        workflow_id=workflow_id,
        request_id=f"{workflow_id}-{index}-{secrets.token_hex(4)}",
        trigger={"index": index, "status": "approved"},
        principal_id="bench",
        principal_type="user",
        correlation_id=None,
        queue=QUEUE,
    )
    return time.perf_counter() - started


class _RolledBack(Exception):
    """Ends a warm-up transaction (warm_client): nothing it did stays."""


async def warm_client(db: Database, connections: int, workflow_id: str, starts: int = 6) -> dict[str, Any]:
    """Opens `connections` of the pool (all of it) and has each plan the start call, `starts` times, in a
    transaction rolled back: no run, no job, no notification is left. A connection's first call of a
    procedure compiles it and loads the catalog entries of the tables it touches, and PostgreSQL plans each
    of its statements afresh for their first five runs on the connection: on this machine a new
    connection's first start took ~10 ms and its next five 2-3 ms, against ~1 ms once settled. An API that
    has been serving has warm connections; a benchmark's client opened for a phase has not, and without
    this its pool grew from two connections during the start-latency phase (start calls p95 ~100-160 ms)."""
    began = time.perf_counter()

    async def one(connection: int) -> None:
        with contextlib.suppress(_RolledBack):
            async with db.transaction() as tx:
                for n in range(starts):
                    await tx.fetch_one(
                        "start_execution",
                        trace_context=None,
                        workflow_id=workflow_id,
                        request_id=f"{workflow_id}-warm-up-{connection}-{n}-{secrets.token_hex(4)}",
                        trigger=Jsonb({"index": -1, "status": "approved"}),
                        principal_id="bench",
                        principal_type="user",
                        correlation_id=None,
                        queue=QUEUE,
                        priority=None,
                    )
                raise _RolledBack

    # As many transactions at once as connections: each holds one of its own until it rolls back.
    await asyncio.gather(*(one(c) for c in range(connections)))
    return {"connections": connections, "starts_per_connection": starts, "seconds": time.perf_counter() - began}


async def start_many(db: Database, workflow_id: str, count: int, batch: int) -> float:
    """Starts `count` executions, `batch` at a time concurrently; returns the seconds taken."""
    started = time.perf_counter()
    for offset in range(0, count, batch):
        await asyncio.gather(*(start_one(db, workflow_id, i) for i in range(offset, min(offset + batch, count))))
    return time.perf_counter() - started


async def wait_final(
    monitor: Monitor,
    workflow_id: str,
    limit_seconds: float,
    worker: Subprocess,
    interval: float = 0.1,
    cpu: CpuSampler | ProcessCpu | None = None,
) -> float:
    """Polls until every execution of the workflow is final; returns the seconds waited. With a CPU sampler,
    samples at every poll and marks the start once the first execution has left Pending."""
    started = time.perf_counter()
    deadline = started + limit_seconds
    while True:
        if cpu is not None:
            if not cpu.marked:
                moved = await monitor.value(
                    "SELECT EXISTS (SELECT 1 FROM dw.executions WHERE workflow_id = %s AND status <> 'Pending')",
                    (workflow_id,),
                )
                if moved:
                    cpu.mark()
            cpu.sample()
        remaining = await monitor.value(
            "SELECT count(*) FROM dw.executions WHERE workflow_id = %s AND status <> ALL(%s)",
            (workflow_id, list(FINAL)),
        )
        if remaining == 0:
            return time.perf_counter() - started
        if worker.returncode is not None:
            raise BenchError(f"the worker exited (code {worker.returncode}) with {remaining} executions unfinished")
        if time.perf_counter() > deadline:
            raise BenchError(f"{remaining} executions of {workflow_id} still unfinished after {limit_seconds:g}s")
        await asyncio.sleep(interval)


async def execution_figures(monitor: Monitor, workflow_id: str) -> dict[str, Any]:
    """Outcome counts and the drain span (first started -> last ended, server clock) of one workflow's runs."""
    statuses = dict(
        await monitor.rows(
            "SELECT status, count(*) FROM dw.executions WHERE workflow_id = %s GROUP BY status", (workflow_id,)
        )
    )
    span_row = await monitor.rows(
        "SELECT count(*), extract(epoch FROM max(ended_at) - min(started_at))::float8,"
        " extract(epoch FROM sum(ended_at - started_at))::float8 FROM dw.executions WHERE workflow_id = %s",
        (workflow_id,),
    )
    executions, span, busy = span_row[0]
    attempts = dict(
        await monitor.rows(
            "SELECT a.status, count(*) FROM dw.action_executions a JOIN dw.executions e ON e.id = a.execution_id"
            " WHERE e.workflow_id = %s GROUP BY a.status",
            (workflow_id,),
        )
    )
    events = dict(
        await monitor.rows(
            "SELECT v.type, count(*) FROM dw.execution_events v JOIN dw.executions e ON e.id = v.execution_id"
            " WHERE e.workflow_id = %s AND v.type IN ('execution_reacquired', 'execution_recovered',"
            " 'execution_released', 'condition_error') GROUP BY v.type",
            (workflow_id,),
        )
    )
    failures = await monitor.rows(
        "SELECT id::text, status, error::text FROM dw.executions WHERE workflow_id = %s AND status <> 'Succeeded'"
        " ORDER BY created_at LIMIT 5",
        (workflow_id,),
    )
    steps = int(attempts.get("Succeeded", 0))
    return {
        "executions": int(executions),
        "statuses": {k: int(v) for k, v in statuses.items()},
        "attempts": {k: int(v) for k, v in attempts.items()},
        "unusual_events": {k: int(v) for k, v in events.items()},
        "failures_sample": [{"id": f[0], "status": f[1], "error": f[2]} for f in failures],
        "steps": steps,
        "span_seconds": span,
        "executions_per_second": ratio(executions, span),
        "steps_per_second": ratio(steps, span),
        "all_succeeded": statuses.get("Succeeded", 0) == executions,
        # Lease taken -> execution finished, and how many ran at once on average (vs the worker's concurrency).
        "mean_execution_ms": ratio(busy * 1000, executions) if busy is not None else None,
        "mean_in_flight": ratio(busy, span),
    }


def report_failures(name: str, figures: dict[str, Any]) -> None:
    if figures["all_succeeded"]:
        return
    progress(f"WARNING: {name}: not every execution Succeeded: {figures['statuses']}")
    for failure in figures["failures_sample"]:
        progress(f"  {failure['id']} {failure['status']} {failure['error']}")


def engine_worker(
    conninfo: str, concurrency: int, log_path: Path, settings: Mapping[str, str] | None = None
) -> Subprocess:
    """A `dataworkflows worker` process; `settings`: DW_ variables that differ from the defaults."""
    return Subprocess(
        "engine worker",
        [*worker_command(), "worker", "--concurrency", str(concurrency)],
        {**child_env(conninfo), **(settings or {})},
        log_path,
    )


async def wait_registered(monitor: Monitor, worker: Subprocess, limit_seconds: float = 60.0) -> None:
    """Until the worker's Procrastinate worker row exists (it is listening for jobs then)."""
    deadline = time.perf_counter() + limit_seconds
    while not await monitor.value("SELECT count(*) FROM procrastinate_workers"):
        if worker.returncode is not None:
            raise BenchError(f"the worker exited (code {worker.returncode}) while starting:\n{worker.tail()}")
        if time.perf_counter() > deadline:
            raise BenchError(f"the worker did not register within {limit_seconds:g}s")
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.5)  # its LISTEN connection comes up right after
