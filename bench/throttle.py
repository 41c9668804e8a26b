"""Concurrency-limit benchmark: how soon a run held back by maxConcurrentExecutions takes a slot that frees.

Run from the repository root:

    .venv/bin/python bench/throttle.py            # about 30 s
    .venv/bin/python bench/throttle.py --quick    # about 15 s

Database as in bench/throughput.py (an embedded PostgreSQL in a temporary directory with DATABASE_URL
unset, else a scratch database on that server; removed at the end).

One workflow, one `core.echo` node that waits D ms (--delay-ms, 100), with maxConcurrentExecutions K
(--limit, 4); one `dataworkflows worker` (concurrency 40, DW_THROTTLE_DELAY_SECONDS at its default of 2 s)
running while N runs (--runs, 40) are started at once. K take the slots; the others are held back, Pending
on their rows until their next look. Measured from the runs' rows (server clock): the span, first started ->
last ended, against the ideal ceil(N / K) x D; the slots' use (the runs' summed run time / (K x span)); and
the hand-off gap of each run after the first K: its start minus the end that freed its slot (the i-th start
after the first K against the i-th end), p50 / p95 / max.

Twice in the same run, on the same database and worker: with the hand-off (a root run's end queues the run
held back longest, dw.hand_over_slot_v1) and without it (that function replaced by one that does nothing,
in this scratch database only: the runs then wait for their periodic look, as before 2026-12-04).
"""

from __future__ import annotations

import argparse
import math
import secrets
import sys
from pathlib import Path
from typing import Any

import psycopg

from dataworkflows.data.limits import WorkflowLimits
from dataworkflows.db import Database
from dataworkflows.logs import configure_logging
from dataworkflows.migrations import migrate
from figures import spread
from throughput import (
    Monitor,
    engine_worker,
    execution_figures,
    machine_info,
    open_pool,
    progress,
    publish,
    ratio,
    report_failures,
    run_main,
    start_many,
    wait_final,
    wait_registered,
)

NO_HAND_OFF = """
CREATE OR REPLACE FUNCTION dw.hand_over_slot_v1(p_tenant text, p_workflow_id text) RETURNS void
    LANGUAGE plpgsql AS $$ BEGIN END; $$
"""


def limited_workflow(workflow_id: str, delay_ms: int) -> dict[str, Any]:
    return {
        "id": workflow_id,
        "displayName": f"Bench: held back by a concurrency limit ({workflow_id})",
        "startNode": "work",
        "nodes": [{"id": "work", "actionType": "core.echo", "parameters": {"message": "x", "delayMs": delay_ms}}],
    }


async def phase(
    db: Database, monitor: Monitor, workflow_id: str, args: argparse.Namespace, worker: Any
) -> dict[str, Any]:
    await start_many(db, workflow_id, args.runs, batch=args.runs)
    await wait_final(monitor, workflow_id, args.phase_timeout, worker)
    rows = await monitor.rows(
        "SELECT extract(epoch FROM started_at)::float8, extract(epoch FROM ended_at)::float8"
        " FROM dw.executions WHERE workflow_id = %s",
        (workflow_id,),
    )
    starts = sorted(r[0] for r in rows)
    ends = sorted(r[1] for r in rows)
    busy = sum(end - start for start, end in rows)
    span = ends[-1] - starts[0]
    gaps = [(starts[i] - ends[i - args.limit]) * 1000 for i in range(args.limit, len(starts))]
    ideal = math.ceil(args.runs / args.limit) * args.delay_ms / 1000
    figures = await execution_figures(monitor, workflow_id)
    report_failures(workflow_id, figures)
    return {
        "runs": args.runs,
        "all_succeeded": figures["all_succeeded"],
        "span_seconds": span,
        "ideal_seconds": ideal,
        "span_vs_ideal": ratio(span, ideal),
        "slot_use": ratio(busy, args.limit * span),
        "hand_off_gap_ms": spread(gaps),
    }


async def run(args: argparse.Namespace, conninfo: str, description: str, workdir: Path) -> dict[str, Any]:
    configure_logging("console", "warning")
    progress("applying migrations")
    migrate(conninfo)
    suffix = secrets.token_hex(3)
    with_id, without_id = f"bench-limit-handoff-{suffix}", f"bench-limit-look-{suffix}"
    results: dict[str, Any] = {
        "runs": args.runs,
        "limit": args.limit,
        "delay_ms": args.delay_ms,
        "throttle_delay_seconds": 2.0,
    }
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        monitor = Monitor(conn)
        results["machine"] = await machine_info(monitor, description)
        async with open_pool(conninfo, 10) as pool:
            db = Database(pool)
            for workflow_id in (with_id, without_id):
                await publish(db, limited_workflow(workflow_id, args.delay_ms))
                limits = WorkflowLimits(
                    set_concurrent=True, max_concurrent=args.limit, set_rate=False, rate_per_minute=None
                )
                await db.limits.set_workflow_limits(workflow_id, limits)
            worker = engine_worker(conninfo, 40, workdir / "engine-worker.log")
            try:
                await worker.start()
                await wait_registered(monitor, worker)
                progress(f"with the hand-off: {args.runs} runs, {args.limit} at a time, {args.delay_ms} ms each")
                results["with_hand_off"] = await phase(db, monitor, with_id, args, worker)
                await monitor.rows(NO_HAND_OFF)
                progress("without it (dw.hand_over_slot_v1 a no-op in this scratch database): the same runs")
                results["without_hand_off"] = await phase(db, monitor, without_id, args, worker)
            finally:
                await worker.stop()
    results["span_without_vs_with"] = ratio(
        results["without_hand_off"]["span_seconds"], results["with_hand_off"]["span_seconds"]
    )
    return results


def report(results: dict[str, Any]) -> None:
    print()
    print(
        f"{results['runs']} runs started at once, maxConcurrentExecutions {results['limit']},"
        f" one echo node of {results['delay_ms']} ms, DW_THROTTLE_DELAY_SECONDS 2"
    )
    print(f"{'':28}{'span s':>9}{'ideal s':>9}{'x ideal':>9}{'slot use':>10}{'gap p50 ms':>12}{'p95':>9}{'max':>9}")
    for key, label in (("with_hand_off", "with the hand-off"), ("without_hand_off", "without (periodic look)")):
        f = results[key]
        gap = f["hand_off_gap_ms"]
        print(
            f"{label:28}{f['span_seconds']:9.2f}{f['ideal_seconds']:9.2f}{f['span_vs_ideal']:9.2f}"
            f"{f['slot_use']:10.2f}{gap['p50']:12.1f}{gap['p95']:9.1f}{gap['max']:9.1f}"
            + ("" if f["all_succeeded"] else "  NOT all Succeeded")
        )
    print(f"span without / with the hand-off: {results['span_without_vs_with']:.2f}x")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="How soon a run held back by a concurrency limit takes a slot.")
    parser.add_argument("--quick", action="store_true", help="20 runs instead of 40")
    parser.add_argument("--runs", type=int, help="runs started at once (default 40; 20 with --quick)")
    parser.add_argument("--limit", type=int, default=4, help="maxConcurrentExecutions (default 4)")
    parser.add_argument("--delay-ms", type=int, default=100, help="each run's echo delay (default 100)")
    parser.add_argument("--phase-timeout", type=float, default=120.0, help="seconds allowed a phase (default 120)")
    parser.add_argument("--total-timeout", type=float, default=600.0)
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/throttle-*.json")
    args = parser.parse_args(argv)
    if args.runs is None:
        args.runs = 20 if args.quick else 40
    if args.runs <= args.limit or args.limit < 1:
        parser.error("--runs must be more than --limit, and --limit at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_main("throttle", parse_args(argv), run, report)


if __name__ == "__main__":
    sys.exit(main())
