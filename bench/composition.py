"""Composition benchmark: forEach items and subworkflow runs against plain runs, on one worker.

Run from the repository root:

    .venv/bin/python bench/composition.py            # default sizes: about 20 s on 2 cores
    .venv/bin/python bench/composition.py --quick    # small sizes: about 12 s
    .venv/bin/python bench/composition.py --help     # sizes, concurrency, timeouts

Database as in bench/throughput.py (whose helpers this script uses): an embedded PostgreSQL in a temporary
directory with DATABASE_URL unset, else a scratch database dw_bench_<random> on that server; removed at the end.

What is measured, in one run, on the same database, by ONE `dataworkflows worker --concurrency C` process
started once (default C = 20); every phase's executions are started (dw.start_execution_v1, --start-batch
at a time) while that worker runs, then drained:

* Chain baseline: N executions of a chain of L core.echo nodes (default N = 100, L = 10): steps/s =
  Succeeded attempt rows / (first execution started -> last ended), server clock, as bench/throughput.py's
  chain phase.
* forEach: ONE execution of a workflow whose single node is a forEach over `{{ trigger.items }}` (I items,
  default 1,000; concurrency --foreach-concurrency, default 20) running core.echo for each item. items/s =
  item attempt rows (dw.action_executions, item_index not null) that Succeeded / (last item attempt's
  end_time - first item attempt's start_time); also the execution's whole span (started -> ended). Checked:
  exactly I distinct item indexes Succeeded, each exactly once (no item attempt repeated or failed).
* Subworkflows: a child workflow (2 core.echo nodes) and a parent with one subworkflow node starting it
  (input {"i": "{{ trigger.index }}"}, waiting for its completion). First S plain 2-node echo executions
  (the baseline), then S parents (default S = 200): executions/s counting parents and children (span: the
  first execution of either started -> the last of either ended) and parents/s, against the baseline's
  executions/s. Checked: every parent Succeeded with exactly one child (dw.executions.parent_execution_id),
  which Succeeded.
* For each phase: CPU of the worker process and of the PostgreSQL processes on this host (/proc), per step,
  item or execution.

Figures and ratios (forEach items/s / chain steps/s; parent+child executions/s and parents/s / baseline
executions/s) are printed as a table and written to bench/results/composition-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from dataworkflows.db import Database
from dataworkflows.logs import configure_logging
from dataworkflows.migrations import migrate
from throughput import (
    QUEUE,
    BenchError,
    CpuSampler,
    Monitor,
    Subprocess,
    chain_workflow,
    echo2_workflow,
    echo_node,
    engine_worker,
    execution_figures,
    fmt,
    machine_info,
    open_pool,
    progress,
    publish,
    ratio,
    report_failures,
    run_main,
    start_many,
    summarize_log,
    wait_final,
    wait_registered,
)

CHAIN_ID, FOREACH_ID, ECHO2_ID = "bench-chain", "bench-foreach", "bench-echo2"
CHILD_ID, PARENT_ID = "bench-child", "bench-parent"


# -- sizes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    chain_executions: int
    chain_length: int
    items: int
    foreach_concurrency: int
    parents: int
    concurrency: int
    start_batch: int
    phase_timeout: float


def sizes_from_args(args: argparse.Namespace) -> Sizes:
    quick = args.quick

    def pick(value: Any, default: Any, quick_default: Any) -> Any:
        if value is not None:
            return value
        return quick_default if quick else default

    return Sizes(
        chain_executions=pick(args.chain_executions, 100, 20),
        chain_length=pick(args.chain_length, 10, 10),
        items=pick(args.items, 1000, 200),
        foreach_concurrency=pick(args.foreach_concurrency, 20, 20),
        parents=pick(args.parents, 200, 50),
        concurrency=pick(args.concurrency, 20, 20),
        start_batch=pick(args.start_batch, 100, 100),
        phase_timeout=args.timeout,
    )


# -- workflows and starts ------------------------------------------------------------------------


def foreach_workflow(workflow_id: str, concurrency: int) -> dict[str, Any]:
    return {
        "id": workflow_id,
        "displayName": "Bench: forEach core.echo over trigger.items",
        "startNode": "all",
        "nodes": [
            {
                "id": "all",
                "nodeType": "forEach",
                "parameters": {
                    "items": "{{ trigger.items }}",
                    "concurrency": concurrency,
                    "action": {"actionType": "core.echo", "parameters": {"message": "{{ item }}"}},
                },
            }
        ],
    }


def child_workflow(workflow_id: str) -> dict[str, Any]:
    return {
        "id": workflow_id,
        "displayName": "Bench: child, two echo nodes",
        "startNode": "echo1",
        "nodes": [echo_node("echo1"), echo_node("echo2")],
    }


def parent_workflow(workflow_id: str, child_id: str) -> dict[str, Any]:
    return {
        "id": workflow_id,
        "displayName": "Bench: parent, one subworkflow node",
        "startNode": "call",
        "nodes": [
            {
                "id": "call",
                "nodeType": "subworkflow",
                "parameters": {"workflowId": child_id, "input": {"i": "{{ trigger.index }}"}},
            }
        ],
    }


async def start_with_trigger(db: Database, workflow_id: str, trigger: dict[str, Any]) -> str:
    """Starts one execution with this trigger; returns its id."""
    started = await db.executions.start(
        workflow_id=workflow_id,
        request_id=f"{workflow_id}-{secrets.token_hex(6)}",
        trigger=trigger,
        principal_id="bench",
        principal_type="user",
        correlation_id=None,
        queue=QUEUE,
    )
    return str(started.execution_id)


# -- phases --------------------------------------------------------------------------------------


def cpu_per(cpu: CpuSampler, seconds: float | None, units: int) -> dict[str, Any]:
    """The sampler's CPU over the phase, and per unit (step, item, execution) in ms."""
    usage = cpu.result(seconds)
    worker, server = usage["worker_cpu_seconds"], usage["postgres_cpu_seconds"]
    usage["worker_cpu_ms_per_unit"] = ratio(worker * 1000 if worker is not None else None, units)
    usage["postgres_cpu_ms_per_unit"] = ratio(server * 1000, units)
    return usage


async def bench_batch(
    db: Database, monitor: Monitor, sizes: Sizes, workflow_id: str, count: int, worker: Subprocess
) -> dict[str, Any]:
    """`count` executions started while the worker runs, then drained (execution_figures)."""
    await monitor.checkpoint()
    cpu = CpuSampler(worker.process.pid if worker.process else None)
    await start_many(db, workflow_id, count, sizes.start_batch)
    await wait_final(monitor, workflow_id, sizes.phase_timeout, worker, cpu=cpu)
    figures = await execution_figures(monitor, workflow_id)
    report_failures(workflow_id, figures)
    figures["cpu"] = cpu_per(cpu, figures["span_seconds"], figures["steps"])
    return figures


async def bench_foreach(db: Database, monitor: Monitor, sizes: Sizes, worker: Subprocess) -> dict[str, Any]:
    """One execution whose forEach node runs core.echo over I items."""
    await monitor.checkpoint()
    cpu = CpuSampler(worker.process.pid if worker.process else None)
    items = [f"item-{i}" for i in range(sizes.items)]
    execution_id = await start_with_trigger(db, FOREACH_ID, {"items": items})
    await wait_final(monitor, FOREACH_ID, sizes.phase_timeout, worker, interval=0.05, cpu=cpu)
    status, run_span, node_span, node_outputs = (
        await monitor.rows(
            "SELECT e.status, extract(epoch FROM e.ended_at - e.started_at)::float8,"
            " extract(epoch FROM n.ended_at - n.started_at)::float8,"
            " jsonb_build_object('count', n.outputs -> 'count', 'succeeded', n.outputs -> 'succeeded',"
            " 'failed', n.outputs -> 'failed')"
            " FROM dw.executions e LEFT JOIN dw.node_states n ON n.execution_id = e.id AND n.node_id = 'all'"
            " WHERE e.id = %s",
            (execution_id,),
        )
    )[0]
    attempts, succeeded, distinct_succeeded, distinct_items, item_span = (
        await monitor.rows(
            "SELECT count(*), count(*) FILTER (WHERE status = 'Succeeded'),"
            " count(DISTINCT item_index) FILTER (WHERE status = 'Succeeded'), count(DISTINCT item_index),"
            " extract(epoch FROM max(end_time) - min(start_time))::float8"
            " FROM dw.action_executions WHERE execution_id = %s AND item_index IS NOT NULL",
            (execution_id,),
        )
    )[0]
    by_status = dict(
        await monitor.rows(
            "SELECT status, count(*) FROM dw.action_executions WHERE execution_id = %s AND item_index IS NOT NULL"
            " GROUP BY 1",
            (execution_id,),
        )
    )
    item_rows = dict(
        await monitor.rows(
            "SELECT status, count(*) FROM dw.foreach_items WHERE execution_id = %s GROUP BY 1", (execution_id,)
        )
    )
    exactly_once = succeeded == distinct_succeeded == attempts == sizes.items and distinct_items == sizes.items
    if status != "Succeeded" or not exactly_once:
        error = await monitor.value("SELECT error::text FROM dw.executions WHERE id = %s", (execution_id,))
        progress(f"WARNING: forEach run {status}; item attempts {by_status}; error {error}")
    items_per_second = ratio(succeeded, item_span)
    return {
        "execution_id": execution_id,
        "status": status,
        "items": sizes.items,
        "item_attempts": int(attempts),
        "item_attempts_by_status": {k: int(v) for k, v in by_status.items()},
        "items_succeeded": int(succeeded),
        "distinct_items_succeeded": int(distinct_succeeded),
        "foreach_item_rows": {k: int(v) for k, v in item_rows.items()},
        "node_outputs": node_outputs,
        "all_succeeded_exactly_once": bool(status == "Succeeded" and exactly_once),
        "item_span_seconds": item_span,
        "node_span_seconds": node_span,
        "execution_span_seconds": run_span,
        "items_per_second": items_per_second,
        "items_per_second_over_execution": ratio(succeeded, run_span),
        "cpu": cpu_per(cpu, run_span, int(succeeded) or sizes.items),
    }


async def bench_subworkflows(db: Database, monitor: Monitor, sizes: Sizes, worker: Subprocess) -> dict[str, Any]:
    """S parents, each starting one 2-node child and waiting for it."""
    await monitor.checkpoint()
    cpu = CpuSampler(worker.process.pid if worker.process else None)
    await start_many(db, PARENT_ID, sizes.parents, sizes.start_batch)
    await wait_final(monitor, PARENT_ID, sizes.phase_timeout, worker, cpu=cpu)
    await wait_final(monitor, CHILD_ID, sizes.phase_timeout, worker, cpu=cpu)
    parents = await execution_figures(monitor, PARENT_ID)
    children = await execution_figures(monitor, CHILD_ID)
    report_failures("parents", parents)
    report_failures("children", children)
    executions, span = (
        await monitor.rows(
            "SELECT count(*), extract(epoch FROM max(ended_at) - min(started_at))::float8"
            " FROM dw.executions WHERE workflow_id = ANY(%s)",
            ([PARENT_ID, CHILD_ID],),
        )
    )[0]
    good_parents, orphans = (
        await monitor.rows(
            "SELECT (SELECT count(*) FROM dw.executions p WHERE p.workflow_id = %(parent)s AND p.status = 'Succeeded'"
            "   AND (SELECT count(*) FROM dw.executions c WHERE c.parent_execution_id = p.id) = 1"
            "   AND (SELECT count(*) FROM dw.executions c WHERE c.parent_execution_id = p.id"
            "        AND c.workflow_id = %(child)s AND c.status = 'Succeeded') = 1),"
            " (SELECT count(*) FROM dw.executions c WHERE c.workflow_id = %(child)s"
            "   AND (c.parent_execution_id IS NULL OR NOT EXISTS (SELECT 1 FROM dw.executions p"
            "        WHERE p.id = c.parent_execution_id AND p.workflow_id = %(parent)s)))",
            {"parent": PARENT_ID, "child": CHILD_ID},
        )
    )[0]
    return {
        "parents": parents,
        "children": children,
        "executions": int(executions),
        "span_seconds": span,
        "executions_per_second": ratio(executions, span),
        "parents_per_second": ratio(parents["executions"], span),
        "parents_with_one_succeeded_child": int(good_parents),
        "children_without_a_parent": int(orphans),
        "all_checked": int(good_parents) == sizes.parents
        and children["executions"] == sizes.parents
        and int(orphans) == 0,
        "cpu": cpu_per(cpu, span, int(executions)),
    }


# -- report --------------------------------------------------------------------------------------


def compute_ratios(results: dict[str, Any]) -> dict[str, float | None]:
    chain = results.get("chain", {})
    foreach = results.get("foreach", {})
    echo2 = results.get("echo2", {})
    sub = results.get("subworkflows", {})
    return {
        "forEach items/s / chain steps/s": ratio(foreach.get("items_per_second"), chain.get("steps_per_second")),
        "parent+child executions/s / 2-node echo executions/s": ratio(
            sub.get("executions_per_second"), echo2.get("executions_per_second")
        ),
        "parent runs/s / 2-node echo runs/s": ratio(sub.get("parents_per_second"), echo2.get("executions_per_second")),
    }


def print_report(results: dict[str, Any]) -> None:
    machine = results["machine"]
    sizes = results["sizes"]
    rows: list[tuple[str, str, str] | None] = []

    def row(label: str, value: Any, note: str = "", digits: int = 1) -> None:
        rows.append((label, fmt(value, digits), note))

    def cpu_row(label: str, cpu: dict[str, Any], unit: str) -> None:
        rows.append(
            (
                f"{label} CPU per {unit}: worker / postgres",
                f"{fmt(cpu['worker_cpu_ms_per_unit'], 2)} / {fmt(cpu['postgres_cpu_ms_per_unit'], 2)}",
                f"ms (cores busy: worker {fmt(cpu['worker_cores'], 2)}, postgres {fmt(cpu['postgres_cores'], 2)})",
            )
        )

    chain = results["chain"]
    row(
        f"chain ({sizes['chain_length']} echo nodes) steps/s",
        chain["steps_per_second"],
        f"{chain['executions']} executions, {chain['steps']} steps in {fmt(chain['span_seconds'], 2)}s",
    )
    row("chain executions/s", chain["executions_per_second"], "", 2)
    cpu_row("chain", chain["cpu"], "step")
    row("chain all Succeeded", chain["all_succeeded"], str(chain["statuses"]))

    foreach = results["foreach"]
    rows.append(None)
    row(
        "forEach items/s",
        foreach["items_per_second"],
        f"{foreach['items_succeeded']} items in {fmt(foreach['item_span_seconds'], 2)}s"
        f" (first item attempt start -> last end), item concurrency {sizes['foreach_concurrency']}",
    )
    row(
        "forEach execution span",
        foreach["execution_span_seconds"],
        f"s (started -> ended; node {fmt(foreach['node_span_seconds'], 2)}s);"
        f" {fmt(foreach['items_per_second_over_execution'])} items/s over it",
        2,
    )
    cpu_row("forEach", foreach["cpu"], "item")
    row(
        "forEach every item Succeeded exactly once",
        foreach["all_succeeded_exactly_once"],
        f"run {foreach['status']}; {foreach['distinct_items_succeeded']} distinct of {foreach['items']};"
        f" item attempts {foreach['item_attempts_by_status']}",
    )

    echo2, sub = results["echo2"], results["subworkflows"]
    rows.append(None)
    row(
        "2-node echo executions/s (baseline)",
        echo2["executions_per_second"],
        f"{echo2['executions']} in {fmt(echo2['span_seconds'], 2)}s",
    )
    cpu_row("2-node echo", echo2["cpu"], "step")
    row("2-node echo all Succeeded", echo2["all_succeeded"], str(echo2["statuses"]))
    row(
        "parent+child executions/s",
        sub["executions_per_second"],
        f"{sub['executions']} executions in {fmt(sub['span_seconds'], 2)}s (first started -> last ended, both)",
    )
    row("parent runs/s", sub["parents_per_second"], f"{sub['parents']['executions']} parents")
    cpu_row("parent+child", sub["cpu"], "execution")
    row(
        "every parent Succeeded, one child Succeeded",
        sub["all_checked"],
        f"{sub['parents_with_one_succeeded_child']} of {sizes['parents']}; parents {sub['parents']['statuses']},"
        f" children {sub['children']['statuses']}",
    )
    rows.append(None)
    for label, value in results["ratios"].items():
        rows.append((label, fmt(value, 3), ""))

    width = max(len(r[0]) for r in rows if r) + 2
    vwidth = max(len(r[1]) for r in rows if r) + 2
    line = "-" * (width + vwidth + 50)
    settings = machine["postgresql_settings"]
    print()
    print(line)
    print(
        f"DataWorkflows composition  |  nproc {machine['nproc']}  |  PostgreSQL {settings['server_version']}  |  fsync"
        f" {settings['fsync']}, synchronous_commit {settings['synchronous_commit']}"
    )
    print(
        f"{machine['platform']}  |  Python {machine['python']}  |  procrastinate {machine['procrastinate']}"
        f"  |  git {machine['git'] or '-'}"
    )
    print(
        f"database: {machine['database']}  |  chain N={sizes['chain_executions']}x{sizes['chain_length']}"
        f"  forEach I={sizes['items']}  parents S={sizes['parents']}  worker C={sizes['concurrency']}"
    )
    print(line)
    for r in rows:
        if r is None:
            print()
            continue
        print(f"{r[0]:<{width}}{r[1]:>{vwidth}}  {r[2]}")
    print(line)
    worker = results.get("worker")
    if worker:
        logs = worker["log"]
        print(
            f"engine worker: exit code {worker['exit_code']} {worker['stop_seconds']:.2f}s after SIGTERM;"
            f" log lines at warning+: {logs['lines_by_level'] or 'none'}"
        )
        for sample in logs["samples"]:
            print(f"  {sample}")


# -- main ----------------------------------------------------------------------------------------


async def run(args: argparse.Namespace, conninfo: str, description: str, workdir: Path) -> dict[str, Any]:
    sizes = sizes_from_args(args)
    configure_logging("console", "warning")
    progress("applying migrations")
    migrate(conninfo)
    results: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "sizes": asdict(sizes),
    }
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        monitor = Monitor(conn)
        results["machine"] = await machine_info(monitor, description)
        async with open_pool(conninfo, max(sizes.start_batch // 5, 10)) as pool:
            db = Database(pool)
            # The child first: a parent naming a workflow that does not exist is refused.
            for workflow in (
                chain_workflow(CHAIN_ID, sizes.chain_length),
                foreach_workflow(FOREACH_ID, sizes.foreach_concurrency),
                echo2_workflow(ECHO2_ID),
                child_workflow(CHILD_ID),
                parent_workflow(PARENT_ID, CHILD_ID),
            ):
                await publish(db, workflow)
            worker = engine_worker(conninfo, sizes.concurrency, workdir / "engine-worker.log")
            try:
                await worker.start()
                await wait_registered(monitor, worker)
                progress(f"worker started (concurrency {sizes.concurrency})")
                progress(f"chain: {sizes.chain_executions} executions of {sizes.chain_length} echo nodes")
                results["chain"] = await bench_batch(db, monitor, sizes, CHAIN_ID, sizes.chain_executions, worker)
                progress(f"forEach: one execution over {sizes.items} items")
                results["foreach"] = await bench_foreach(db, monitor, sizes, worker)
                progress(f"2-node echo baseline: {sizes.parents} executions")
                results["echo2"] = await bench_batch(db, monitor, sizes, ECHO2_ID, sizes.parents, worker)
                progress(f"subworkflows: {sizes.parents} parents, one 2-node child each")
                results["subworkflows"] = await bench_subworkflows(db, monitor, sizes, worker)
            finally:
                code, stop_seconds = await worker.stop()
                results["worker"] = {
                    "exit_code": code,
                    "stop_seconds": stop_seconds,
                    "log": summarize_log(worker.log_path),
                }
    results["ratios"] = compute_ratios(results)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="forEach items and subworkflow runs against plain runs.")
    parser.add_argument("--quick", action="store_true", help="small sizes: 20 chains, 200 items, 50 parents")
    parser.add_argument("--chain-executions", type=int, help="executions of the chain baseline (default 100)")
    parser.add_argument("--chain-length", type=int, help="echo nodes in the chain (default 10)")
    parser.add_argument("--items", "-i", type=int, help="items of the forEach execution (default 1000, max 1000)")
    parser.add_argument("--foreach-concurrency", type=int, help="forEach items in flight (default 20, max 100)")
    parser.add_argument("--parents", "-s", type=int, help="parent executions and baseline echo runs (default 200)")
    parser.add_argument("--concurrency", "-c", type=int, help="worker concurrency (default 20)")
    parser.add_argument("--start-batch", type=int, help="executions started concurrently per batch (default 100)")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds allowed per phase (default 240)")
    parser.add_argument("--total-timeout", type=float, default=900.0, help="seconds allowed in all (default 900)")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/composition-*.json")
    args = parser.parse_args(argv)
    for name in (
        "chain_executions",
        "chain_length",
        "items",
        "foreach_concurrency",
        "parents",
        "concurrency",
        "start_batch",
    ):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    # The node's maxItems is left at its default (1,000); more items would fail it with too_many_items.
    if args.items is not None and args.items > 1000:
        parser.error("--items must be at most 1000 (the forEach node's default maxItems)")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_main("composition", parse_args(argv), run, print_report, errors=(BenchError, psycopg.Error))


if __name__ == "__main__":
    sys.exit(main())
