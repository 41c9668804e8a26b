"""What a run costs by how runs arrive: CPU per run and start latency at paced start rates, one worker.

Run from the repository root:

    .venv/bin/python bench/pacing.py                       # about 1 minute: idle, then 25 50 100 200 400 starts/s
    .venv/bin/python bench/pacing.py --rates 10 300 --seconds 10
    .venv/bin/python bench/pacing.py --functions           # also PostgreSQL's function calls per run
    .venv/bin/python bench/pacing.py --queue-baseline      # also bare Procrastinate jobs at the same rates

Database as in bench/throughput.py (an embedded PostgreSQL in a temporary directory with DATABASE_URL unset,
else a scratch database on that server; removed at the end). The CPU is read from the processes, so the server
must run on this host (the embedded one does).

One `dataworkflows worker` (concurrency 40) runs the benchmark's 2-node echo workflow. First a window with
nothing to do (the worker's and the server's idle CPU), then, for each rate, starts paced at that rate for
--seconds (each start a call of its own, not waiting for the one before), until every run of the window has
ended. For each window: the worker's and PostgreSQL's cores busy, their CPU per run (the run's start included
in PostgreSQL's), and the start latency (the run's creation to its first node's start, server clock) p50 / p95.

With --queue-baseline, after the engine's windows, the same rates again with bare Procrastinate jobs: a no-op
worker (bench/noop_worker.py --listen, the same concurrency) runs jobs deferred one at a time, each its own
transaction, and a job's start latency is its `started` event's time minus its `deferred` event's (both the
transaction's start, as the engine's figure is): the queue's own floor on this host at those rates, which an
engine built on it cannot go under.

Why: bench/throughput.py's drain measures runs that come in batches (a fetch takes several jobs, a record
batch holds several records); its latency phase runs at half the drain's capacity, where runs come one at a
time. This shows what a run costs as the arrivals thin out, with the machine's idle gaps between runs
(docs/performance.md, "Measured on 2026-12-06, morning").
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from baselines import bare_queue_latency
from dataworkflows.db import Database
from dataworkflows.logs import configure_logging
from dataworkflows.migrations import migrate
from figures import percentile
from harness import postmaster_pid
from throughput import (
    Monitor,
    ProcessCpu,
    echo2_workflow,
    engine_worker,
    machine_info,
    open_pool,
    progress,
    publish,
    ratio,
    run_main,
    start_one,
    wait_final,
    wait_registered,
)

WORKFLOW_ID = "bench-pacing"
# pg_stat_user_functions as the window's delta: backends report their counts when idle, at most once a
# second, and up to 10 s late (PGSTAT_MAX_INTERVAL): the windows wait that long before and after.
STATS_SETTLE_SECONDS = 11.0


async def function_calls(monitor: Monitor) -> dict[str, int]:
    await monitor.rows("SELECT pg_stat_force_next_flush()")
    rows = await monitor.rows("SELECT schemaname || '.' || funcname, calls FROM pg_stat_user_functions")
    return {name: int(calls) for name, calls in rows}


async def paced(db: Database, first: int, rate: float, seconds: float) -> int:
    """Starts runs (trigger indexes from `first`) one every 1 / rate seconds for `seconds`; returns how many."""
    interval = 1 / rate
    began = time.perf_counter()
    tasks: list[asyncio.Task[float]] = []
    n = 0
    while (due := began + n * interval) - began < seconds:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(start_one(db, WORKFLOW_ID, first + n)))
        n += 1
    await asyncio.gather(*tasks)
    return n


async def window(
    db: Database,
    monitor: Monitor,
    worker: Any,
    postmaster: int | None,
    args: argparse.Namespace,
    rate: float,
    first: int,
) -> dict[str, Any]:
    """One window: `rate` starts a second for args.seconds (0: nothing started), until its runs ended."""
    before: dict[str, int] = {}
    if args.functions and rate:
        await asyncio.sleep(STATS_SETTLE_SECONDS)  # the window before's counts reported
        before = await function_calls(monitor)
    cpu = ProcessCpu([worker.process.pid], postmaster)
    cpu.mark()
    began = time.perf_counter()
    runs = 0
    if rate:
        progress(f"{rate:g} starts a second for {args.seconds:g} s")
        runs = await paced(db, first, rate, args.seconds)
        await wait_final(monitor, WORKFLOW_ID, args.phase_timeout, worker, interval=0.05, cpu=cpu)
    else:
        progress(f"idle for {args.seconds:g} s")
        await asyncio.sleep(args.seconds)
    seconds = time.perf_counter() - began
    usage = cpu.result(seconds)
    result: dict[str, Any] = {"rate_per_second": rate, "runs": runs, "seconds": seconds, **usage}
    if runs:
        rows = await monitor.rows(
            "SELECT extract(epoch FROM n.started_at - e.created_at)::float8 * 1000"
            " FROM dw.executions e JOIN dw.node_states n ON n.execution_id = e.id AND n.position = 0"
            " WHERE e.workflow_id = %s AND (e.trigger ->> 'index')::int >= %s",
            (WORKFLOW_ID, first),
        )
        latencies = [r[0] for r in rows if r[0] is not None]
        result.update(
            worker_cpu_ms_per_run=ratio(usage["worker_cpu_seconds"] * 1000, runs),
            postgres_cpu_ms_per_run=ratio(usage["postgres_cpu_seconds"] * 1000, runs),
            start_to_first_node_ms={"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)},
        )
    if args.functions and runs:
        await asyncio.sleep(STATS_SETTLE_SECONDS)
        after = await function_calls(monitor)
        result["function_calls_per_run"] = {
            name: round((calls - before.get(name, 0)) / runs, 2)
            for name, calls in sorted(after.items())
            if calls - before.get(name, 0)
        }
    return result


async def run(args: argparse.Namespace, conninfo: str, description: str, workdir: Path) -> dict[str, Any]:
    configure_logging("console", "warning")
    progress("applying migrations")
    migrate(conninfo)
    results: dict[str, Any] = {"seconds_per_window": args.seconds, "concurrency": args.concurrency}
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        monitor = Monitor(conn)
        results["machine"] = await machine_info(monitor, description)
        if args.functions:
            await monitor.rows("ALTER SYSTEM SET track_functions = 'all'")
            await monitor.rows("SELECT pg_reload_conf()")
            await asyncio.sleep(STATS_SETTLE_SECONDS)
        async with open_pool(conninfo, 8) as pool:
            db = Database(pool)
            await publish(db, echo2_workflow(WORKFLOW_ID))
            worker = engine_worker(conninfo, args.concurrency, workdir / "engine-worker.log")
            try:
                await worker.start()
                await wait_registered(monitor, worker)
                postmaster = await postmaster_pid(monitor)
                # The client's connections and the worker's first calls planned before anything is measured.
                for n in range(20):
                    await start_one(db, WORKFLOW_ID, -1 - n)
                await wait_final(monitor, WORKFLOW_ID, args.phase_timeout, worker)
                windows = []
                first = 0
                for rate in [0.0, *args.rates]:
                    point = await window(db, monitor, worker, postmaster, args, rate, first)
                    first += point["runs"]
                    windows.append(point)
                results["windows"] = windows
            finally:
                await worker.stop()
        if args.queue_baseline:
            results["queue_windows"] = await bare_queue_latency(
                conninfo,
                monitor,
                [(rate, max(1, round(rate * args.seconds))) for rate in args.rates],
                args.concurrency,
                workdir,
                args.phase_timeout,
            )
    return results


def report(results: dict[str, Any]) -> None:
    print()
    print(
        f"one worker (concurrency {results['concurrency']}), 2-node echo runs,"
        f" {results['seconds_per_window']:g} s a window"
    )
    print_windows(results["windows"])
    if results.get("queue_windows"):
        print()
        print("bare Procrastinate no-op jobs, one no-op worker listening (the same concurrency), at the same rates")
        print_windows(results["queue_windows"])


def print_windows(windows: list[dict[str, Any]]) -> None:
    print(
        f"{'starts/s':>9}{'runs':>7}{'worker cores':>14}{'pg cores':>10}{'worker ms/run':>15}{'pg ms/run':>11}"
        f"{'latency p50':>13}{'p95':>8}"
    )
    for w in windows:
        latency = w.get("start_to_first_node_ms") or {}
        cells = f"{w['rate_per_second']:9g}{w['runs']:7d}{w['worker_cores']:14.3f}{w['postgres_cores']:10.3f}" + (
            f"{w['worker_cpu_ms_per_run']:15.2f}{w['postgres_cpu_ms_per_run']:11.2f}"
            f"{latency.get('p50') or 0:13.1f}{latency.get('p95') or 0:8.1f}"
            if w["runs"]
            else "   (idle)"
        )
        print(cells)
        for name, calls in (w.get("function_calls_per_run") or {}).items():
            print(f"{'':12}{calls:8.2f}  {name}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="CPU per run and start latency at paced start rates, one worker.")
    parser.add_argument(
        "--rates", type=float, nargs="+", default=[25, 50, 100, 200, 400], help="starts a second, one window each"
    )
    parser.add_argument("--seconds", type=float, default=6.0, help="seconds of starts a window (default 6)")
    parser.add_argument("--concurrency", type=int, default=40, help="the worker's concurrency (default 40)")
    parser.add_argument(
        "--functions", action="store_true", help="PostgreSQL's function calls per run (track_functions; +22 s a window)"
    )
    parser.add_argument(
        "--queue-baseline", action="store_true", help="also bare Procrastinate jobs at the same rates (about 1 min)"
    )
    parser.add_argument("--phase-timeout", type=float, default=120.0, help="seconds allowed a window's runs to end")
    parser.add_argument("--total-timeout", type=float, default=900.0)
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/pacing-*.json")
    args = parser.parse_args(argv)
    if any(rate <= 0 or rate > 1000 for rate in args.rates):
        parser.error("--rates: each between 0 (exclusive) and 1000 starts a second")
    if not 0.5 <= args.seconds <= 600:
        parser.error("--seconds: between 0.5 and 600")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_main("pacing", parse_args(argv), run, report)


if __name__ == "__main__":
    sys.exit(main())
