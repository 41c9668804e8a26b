"""forEach of subworkflow items: the time one forEach takes to run its children, by item count.

Run from the repository root:

    .venv/bin/python bench/foreach_children.py                    # 1,000 and 3,000 items
    .venv/bin/python bench/foreach_children.py --items 1000,6000  # other sizes (at most 10,000)

Database as in bench/throughput.py: an embedded PostgreSQL in a temporary directory with DATABASE_URL
unset, else a scratch database dw_bench_<random> on that server; removed at the end.

One `dataworkflows worker --concurrency C` process (default 20). For each size I, ONE execution of a
workflow whose single node is a forEach over `{{ trigger.items }}` (maxItems 10,000, concurrency
--foreach-concurrency, default 100) starting a 1-node core.echo child per item and waiting for it.
Measured: the execution's span (started -> ended, server clock) and children per second over it, and
the worker's and PostgreSQL's CPU. Checked: the run Succeeded with I items Succeeded and I children.

Each child's end wakes the parent and the forEach takes its items up again: before the items were
carried between wakes (2026-12-07) each wake read all I items, and the span grew as I squared (a
review: 1,000 items 5.1 s, 3,000 24 s, 9,999 356 s). Not asserted anywhere: a measurement.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from composition import cpu_per, start_with_trigger
from dataworkflows.db import Database
from dataworkflows.logs import configure_logging
from dataworkflows.migrations import migrate
from throughput import (
    BenchError,
    CpuSampler,
    Monitor,
    echo_node,
    engine_worker,
    fmt,
    machine_info,
    open_pool,
    progress,
    publish,
    ratio,
    run_main,
    wait_final,
    wait_registered,
)

CHILD_ID, PARENT_ID = "bench-fe-child", "bench-fe-parent"


def child_workflow() -> dict[str, Any]:
    return {"id": CHILD_ID, "displayName": "Bench: one echo", "startNode": "echo1", "nodes": [echo_node("echo1")]}


def parent_workflow(concurrency: int) -> dict[str, Any]:
    return {
        "id": PARENT_ID,
        "displayName": "Bench: forEach of subworkflow items",
        "startNode": "all",
        "nodes": [
            {
                "id": "all",
                "nodeType": "forEach",
                "parameters": {
                    "items": "{{ trigger.items }}",
                    "concurrency": concurrency,
                    "maxItems": 10_000,
                    "subworkflow": {"workflowId": CHILD_ID, "input": {"i": "{{ item }}"}},
                },
            }
        ],
    }


async def one_size(
    db: Database, monitor: Monitor, items: int, worker: Any, limit_seconds: float, *, profile: bool
) -> dict[str, Any]:
    await monitor.checkpoint()
    cpu = CpuSampler(worker.process.pid if worker.process else None)
    if profile:
        await monitor.rows("SELECT pg_stat_reset()")
    execution_id = await start_with_trigger(db, PARENT_ID, {"items": list(range(items))})
    await wait_final(monitor, PARENT_ID, limit_seconds, worker, interval=0.2, cpu=cpu)
    status, span = (
        await monitor.rows(
            "SELECT status, extract(epoch FROM ended_at - started_at)::float8 FROM dw.executions WHERE id = %s",
            (execution_id,),
        )
    )[0]
    succeeded, children = (
        await monitor.rows(
            "SELECT (SELECT count(*) FROM dw.foreach_items WHERE execution_id = %(id)s AND status = 'Succeeded'),"
            " (SELECT count(*) FROM dw.executions WHERE parent_execution_id = %(id)s AND status = 'Succeeded')",
            {"id": execution_id},
        )
    )[0]
    # The parent's holds: its first, and each wake that took it again (a child's end wakes it).
    holds = await monitor.value(
        "SELECT count(*) FROM dw.execution_events WHERE execution_id = %s"
        " AND type IN ('execution_started', 'execution_reacquired')",
        (execution_id,),
    )
    functions = []
    if profile:
        functions = [
            {"function": name, "calls": int(calls), "self_ms": float(self_ms), "total_ms": float(total_ms)}
            for name, calls, self_ms, total_ms in await monitor.rows(
                "SELECT funcname, calls, self_time, total_time FROM pg_stat_user_functions"
                " WHERE schemaname = 'dw' ORDER BY self_time DESC LIMIT 8"
            )
        ]
    ok = status == "Succeeded" and succeeded == children == items
    if not ok:
        progress(f"WARNING: run {status}; {succeeded} items and {children} children Succeeded of {items}")
    return {
        "items": items,
        "status": status,
        "checked": ok,
        "span_seconds": span,
        "children_per_second": ratio(children, span),
        "cpu": cpu_per(cpu, span, int(children) or items),
        "parent_holds": int(holds),
        "functions": functions,
    }


async def run(args: argparse.Namespace, conninfo: str, description: str, workdir: Path) -> dict[str, Any]:
    configure_logging("console", "warning")
    progress("applying migrations")
    migrate(conninfo)
    results: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "sizes": {
            "items": args.items,
            "foreach_concurrency": args.foreach_concurrency,
            "concurrency": args.concurrency,
        },
        "runs": [],
    }
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        monitor = Monitor(conn)
        results["machine"] = await machine_info(monitor, description)
        async with open_pool(conninfo, 10) as pool:
            db = Database(pool)
            await publish(db, child_workflow())
            await publish(db, parent_workflow(args.foreach_concurrency))
            if args.profile:
                # The procedures' own time (pg_stat_user_functions), for the worker's sessions.
                await monitor.rows(f"ALTER DATABASE {conn.info.dbname} SET track_functions = 'pl'")
            worker = engine_worker(conninfo, args.concurrency, workdir / "engine-worker.log")
            try:
                await worker.start()
                await wait_registered(monitor, worker)
                for items in args.items:
                    progress(f"forEach of {items} subworkflow items")
                    results["runs"].append(
                        await one_size(db, monitor, items, worker, args.timeout, profile=args.profile)
                    )
            finally:
                code, stop_seconds = await worker.stop()
                results["worker"] = {"exit_code": code, "stop_seconds": stop_seconds}
    return results


def print_report(results: dict[str, Any]) -> None:
    machine = results["machine"]
    print(
        f"\nforEach of subworkflow items | nproc {machine['nproc']} | git {machine['git'] or '-'} | {results['sizes']}"
    )
    print(
        f"{'items':>7} {'span s':>9} {'children/s':>11} {'worker ms/child':>16} {'pg ms/child':>12}"
        f" {'parent holds':>13}  checked"
    )
    for r in results["runs"]:
        cpu = r["cpu"]
        print(
            f"{r['items']:>7} {fmt(r['span_seconds'], 2):>9} {fmt(r['children_per_second']):>11}"
            f" {fmt(cpu.get('worker_cpu_ms_per_unit'), 2):>16} {fmt(cpu.get('postgres_cpu_ms_per_unit'), 2):>12}"
            f" {r['parent_holds']:>13}"
            f"  {r['checked']}"
        )
    for r in results["runs"]:
        if r["functions"]:
            print(f"{r['items']} items, procedures by their own time (ms, calls):")
            for f in r["functions"]:
                print(f"    {f['function']:<40} {f['self_ms']:>10.0f} {f['calls']:>8}  (total {f['total_ms']:.0f})")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A forEach of subworkflow items, by item count.")
    parser.add_argument("--items", default="1000,3000", help="item counts, comma-separated (default 1000,3000)")
    parser.add_argument("--foreach-concurrency", type=int, default=100, help="items in flight (default 100)")
    parser.add_argument("--concurrency", "-c", type=int, default=20, help="worker concurrency (default 20)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds allowed per size (default 600)")
    parser.add_argument("--total-timeout", type=float, default=1800.0, help="seconds allowed in all (default 1800)")
    parser.add_argument("--profile", action="store_true", help="print the procedures taking the most time")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/foreach_children-*.json")
    args = parser.parse_args(argv)
    try:
        args.items = [int(n) for n in args.items.split(",")]
    except ValueError:
        parser.error("--items: integers, comma-separated")
    if not all(1 <= n <= 10_000 for n in args.items):
        parser.error("--items: each between 1 and 10,000 (the forEach's hard limit)")
    if not 1 <= args.foreach_concurrency <= 100:
        parser.error("--foreach-concurrency must be between 1 and 100")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_main("foreach_children", parse_args(argv), run, print_report, errors=(BenchError, psycopg.Error))


if __name__ == "__main__":
    sys.exit(main())
