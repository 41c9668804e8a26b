"""Triggers benchmark, schedule part: the scheduler's cost with many schedule rows (the webhook part
is bench/webhooks.py).

Run from the repository root:

    .venv/bin/python bench/triggers.py            # 10,000 schedules, 2 rounds a phase: about 4 minutes
    .venv/bin/python bench/triggers.py --quick    # 2,000 schedules, 1 round a phase: about 1.5 minutes
    .venv/bin/python bench/triggers.py --help     # sizes, workers, phases to skip

Database as in bench/throughput.py (whose helpers this script uses): an embedded PostgreSQL in a temporary
directory with DATABASE_URL unset, else a scratch database dw_bench_<random> on that server; removed at the end.

S schedule rows (dw.triggers, kind schedule) of a 1-node core.echo workflow, catchUp latest, all with the
cron "* * * * * <s>" in UTC (every minute at second s): S ticks due at the same instant, the worst case for
a scheduler. Before the phases, S runs are started and parked and the tables analyzed (a database that has
run before: on a fresh one the planner takes the tables for empty until autovacuum's first ANALYZE, and each
start gets slower). Each round points every schedule at a second LEAD_SECONDS ahead (config changed, next
tick to be computed again, as the API does), times the initial pass (until every schedule's first tick is
computed by the scheduler(s) running, who notice within DW_SCHEDULER_INTERVAL_SECONDS), then measures the
burst when that second comes: ticks handled per second (S / (last fired_at - tick)), lateness p50/p95/max
(dw.schedule_ticks.fired_at - tick_at, fired_at being clock_timestamp() when the tick's row is written, in the
transaction that starts its run), and the CPU used during the burst by the scheduler's process and by PostgreSQL.

* Scheduler alone: one Scheduler (workers/scheduler.py) in this process, on its own pool of 4 connections,
  firing into a queue that no worker drains (the runs are started, Pending, not run), so that only the
  scheduler's work is measured (the CPU figure of this process includes its polling).
* Workers: W `dataworkflows worker` processes (--concurrency C), each running its scheduler beside its
  fetch loops (the parked runs are ended and their jobs deleted first): the same figures, plus when the
  last run of the burst ended (the worker runs the S runs while and after firing them).
* Per-second: P of the schedules switched to "* * * * * *" (the others disabled), fired by the in-process
  scheduler for D seconds: ticks fired per second sustained against P required, lateness, and ticks folded
  by catchUp latest if it fell behind (missed_ticks).

Figures are printed as a table and written to bench/results/triggers-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from dataworkflows.config import Settings
from dataworkflows.db import Database
from dataworkflows.logs import configure_logging
from dataworkflows.migrations import migrate
from dataworkflows.tenancy import DEFAULT_TENANT
from dataworkflows.workers.scheduler import Scheduler
from throughput import (
    BenchError,
    CpuSampler,
    Monitor,
    Subprocess,
    child_env,
    echo_node,
    fmt,
    machine_info,
    open_pool,
    progress,
    publish,
    run_main,
    summarize_log,
    wait_registered,
    worker_command,
)

WORKFLOW_ID = "bench-schedule-echo"
# The in-process scheduler's runs go here: no worker drains it.
PARKED_QUEUE = "bench_schedules_parked"
# Seconds between setting a schedule's second and its first tick.
LEAD_SECONDS = 12


@dataclass(frozen=True)
class Sizes:
    schedules: int
    rounds: int
    workers: int
    concurrency: int
    per_second: int
    per_second_seconds: int
    phase_timeout: float


def sizes_from_args(args: argparse.Namespace) -> Sizes:
    def pick(value: Any, default: Any, quick_default: Any) -> Any:
        if value is not None:
            return value
        return quick_default if args.quick else default

    return Sizes(
        schedules=pick(args.schedules, 10_000, 2_000),
        rounds=pick(args.rounds, 2, 1),
        workers=pick(args.workers, 1, 1),
        concurrency=pick(args.concurrency, 20, 20),
        per_second=0 if args.skip_per_second else pick(args.per_second, 500, 200),
        per_second_seconds=pick(args.per_second_seconds, 10, 5),
        phase_timeout=args.timeout,
    )


# -- setup ---------------------------------------------------------------------------------------


async def create_schedules(monitor: Monitor, count: int, second: int) -> None:
    await monitor.rows(
        "INSERT INTO dw.triggers (workflow_id, kind, name, config, created_by)"
        " SELECT %s, 'schedule', 'bench-' || i, %s, 'bench' FROM generate_series(1, %s) i",
        (WORKFLOW_ID, Jsonb(cron_config(f"* * * * * {second}")), count),
    )


async def warm_up(monitor: Monitor, count: int) -> None:
    """A database that has run before: as many runs as schedules already there, and statistics.
    On a fresh database, before autovacuum's first ANALYZE, the planner takes the tables for empty
    and starting a run gets slower with every run (0.6 -> 1.3 ms over 3,000 runs, measured here)."""
    for offset in range(0, count, 1000):
        await monitor.rows(
            "SELECT count(*) FROM generate_series(%s::int, %s::int) i,"
            " LATERAL dw.start_execution_v1(%s, 'warm-up-' || i, '{}', 'bench', 'user', NULL, %s) s",
            (offset, min(offset + 1000, count) - 1, WORKFLOW_ID, PARKED_QUEUE),
        )
    await monitor.rows("ANALYZE")


def cron_config(cron: str) -> dict[str, Any]:
    return {"cron": cron, "timezone": "UTC", "catchUp": "latest"}


async def retime(monitor: Monitor) -> None:
    """Points every schedule at a second LEAD_SECONDS ahead (their next ticks to be computed again)."""
    now = await monitor.value("SELECT now()")
    second = (now + timedelta(seconds=LEAD_SECONDS)).second
    await monitor.rows(
        "UPDATE dw.triggers SET config = %s, next_tick_at = NULL, enabled = true WHERE kind = 'schedule'",
        (Jsonb(cron_config(f"* * * * * {second}")),),
    )


async def wait_initialized(monitor: Monitor, count: int, limit_seconds: float) -> tuple[float, datetime]:
    """Until every enabled schedule has its next tick computed; returns the seconds it took and the
    earliest next tick (the one LEAD_SECONDS ahead, or a minute later if computing took longer)."""
    started = time.perf_counter()
    while await monitor.value(
        "SELECT count(*) FROM dw.triggers WHERE kind = 'schedule' AND enabled AND next_tick_at IS NULL"
    ):
        if time.perf_counter() - started > limit_seconds:
            raise BenchError(f"the first ticks of {count} schedules were not computed within {limit_seconds:g}s")
        await asyncio.sleep(0.05)
    seconds = time.perf_counter() - started
    first = await monitor.value("SELECT min(next_tick_at) FROM dw.triggers WHERE kind = 'schedule' AND enabled")
    return seconds, first


async def sleep_until(monitor: Monitor, when: datetime) -> None:
    """Sleeps until `when` by the database's clock."""
    now = await monitor.value("SELECT clock_timestamp()")
    await asyncio.sleep(max((when - now).total_seconds(), 0.0))


# -- one burst -----------------------------------------------------------------------------------


async def measure_burst(
    monitor: Monitor, tick: datetime, expected: int, limit_seconds: float, cpu: CpuSampler
) -> dict[str, Any]:
    """Waits for the tick's `expected` rows; the burst's figures from dw.schedule_ticks."""
    progress(f"  tick {tick:%H:%M:%S}: {expected} schedules due")
    await sleep_until(monitor, tick - timedelta(seconds=0.5))
    cpu.mark()
    started = time.perf_counter()
    while (
        fired := await monitor.value("SELECT count(*) FROM dw.schedule_ticks WHERE tick_at = %s", (tick,))
    ) < expected:
        cpu.sample()
        if time.perf_counter() - started > limit_seconds:
            raise BenchError(f"only {fired} of {expected} ticks fired within {limit_seconds:g}s")
        await asyncio.sleep(0.1)
    row = (
        await monitor.rows(
            "SELECT count(*), count(DISTINCT execution_id), sum(missed_ticks),"
            " extract(epoch FROM min(fired_at) - %(t)s), extract(epoch FROM max(fired_at) - %(t)s),"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM fired_at - tick_at)),"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM fired_at - tick_at))"
            " FROM dw.schedule_ticks WHERE tick_at = %(t)s",
            {"t": tick},
        )
    )[0]
    ticks, runs, missed, first, last, p50, p95 = row
    burst = float(last)
    return {
        "tick": tick.isoformat(),
        "ticks": ticks,
        "distinct_runs": runs,
        "missed_ticks": missed,
        "first_fired_after_seconds": float(first),
        "burst_seconds": burst,
        "ticks_per_second": ticks / burst if burst > 0 else None,
        "lateness_p50_seconds": p50,
        "lateness_p95_seconds": p95,
        "lateness_max_seconds": burst,
        **cpu.result(burst),
    }


async def wait_runs_done(monitor: Monitor, tick: datetime, limit_seconds: float) -> dict[str, Any]:
    """Until every run the tick started has ended; when the last one did, and their statuses."""
    started = time.perf_counter()
    query = (
        "SELECT count(*) FILTER (WHERE e.status NOT IN ('Succeeded', 'Failed', 'Cancelled', 'TimedOut')),"
        " count(*) FILTER (WHERE e.status = 'Succeeded'), extract(epoch FROM max(e.ended_at) - %s)"
        " FROM dw.schedule_ticks k JOIN dw.executions e ON e.id = k.execution_id WHERE k.tick_at = %s"
    )
    while True:
        open_runs, succeeded, last = (await monitor.rows(query, (tick, tick)))[0]
        if not open_runs:
            return {"runs_succeeded": succeeded, "runs_done_after_seconds": float(last) if last is not None else None}
        if time.perf_counter() - started > limit_seconds:
            raise BenchError(f"{open_runs} runs of tick {tick:%H:%M:%S} still open after {limit_seconds:g}s")
        await asyncio.sleep(0.2)


async def rounds(monitor: Monitor, sizes: Sizes, cpu: CpuSampler, *, runs: bool) -> dict[str, Any]:
    """Each round: every schedule pointed at a second a few seconds ahead, their first ticks computed by
    the scheduler(s) running (the initial pass), then the burst when that second comes (and, with `runs`,
    until the runs it started have ended)."""
    initial: list[dict[str, Any]] = []
    bursts: list[dict[str, Any]] = []
    for _ in range(sizes.rounds):
        await retime(monitor)
        cpu.mark()
        seconds, first = await wait_initialized(monitor, sizes.schedules, sizes.phase_timeout)
        initial.append({"seconds": seconds, "schedules_per_second": sizes.schedules / seconds, **cpu.result(seconds)})
        progress(f"  {sizes.schedules} first ticks computed in {seconds:.2f}s")
        burst = await measure_burst(monitor, first, sizes.schedules, sizes.phase_timeout, cpu)
        if runs:
            burst.update(await wait_runs_done(monitor, first, sizes.phase_timeout))
        bursts.append(burst)
    return {"initial_passes": initial, "bursts": bursts}


# -- phases --------------------------------------------------------------------------------------


async def phase_alone(conninfo: str, monitor: Monitor, sizes: Sizes) -> dict[str, Any]:
    stop = asyncio.Event()
    async with open_pool(conninfo, 4) as pool:
        scheduler = Scheduler(Database(pool), Settings(queue=PARKED_QUEUE, scheduler_interval_seconds=1.0))
        task = asyncio.create_task(scheduler.run(stop))
        try:
            return await rounds(monitor, sizes, CpuSampler(os.getpid()), runs=False)
        finally:
            stop.set()
            await task


async def phase_workers(conninfo: str, monitor: Monitor, sizes: Sizes, workdir: Path) -> dict[str, Any]:
    # The parked runs out of the way: nobody would run them, and recovery would re-queue them once
    # their jobs are gone. Ended by hand (a bench database), their jobs deleted.
    await monitor.rows(
        "UPDATE dw.executions SET status = 'Cancelled', ended_at = now() WHERE queue = %s AND status = 'Pending'",
        (PARKED_QUEUE,),
    )
    await monitor.rows("DELETE FROM procrastinate_jobs WHERE queue_name = %s", (PARKED_QUEUE,))
    await monitor.rows("VACUUM ANALYZE procrastinate_jobs")
    workers = [
        Subprocess(
            f"worker {i}",
            [*worker_command(), "worker", "--concurrency", str(sizes.concurrency)],
            child_env(conninfo),
            workdir / f"worker{i}.log",
        )
        for i in range(sizes.workers)
    ]
    for worker in workers:
        await worker.start()
    try:
        await wait_registered(monitor, workers[0])
        process = workers[0].process
        cpu = CpuSampler(process.pid if sizes.workers == 1 and process is not None else None)
        results = await rounds(monitor, sizes, cpu, runs=True)
    finally:
        for worker in workers:
            await worker.stop()
    return {**results, "logs": [summarize_log(w.log_path) for w in workers]}


async def phase_per_second(conninfo: str, monitor: Monitor, sizes: Sizes) -> dict[str, Any]:
    await monitor.rows(
        "UPDATE dw.triggers SET enabled = (name IN (SELECT 'bench-' || i FROM generate_series(1, %s) i)),"
        " config = %s, next_tick_at = NULL WHERE kind = 'schedule'",
        (sizes.per_second, Jsonb(cron_config("* * * * * *"))),
    )
    cpu = CpuSampler(os.getpid())
    stop = asyncio.Event()
    async with open_pool(conninfo, 4) as pool:
        scheduler = Scheduler(Database(pool), Settings(queue=PARKED_QUEUE, scheduler_interval_seconds=1.0))
        task = asyncio.create_task(scheduler.run(stop))
        try:
            await wait_initialized(monitor, sizes.per_second, sizes.phase_timeout)
            begin = (await monitor.value("SELECT now()")).replace(microsecond=0) + timedelta(seconds=2)
            end = begin + timedelta(seconds=sizes.per_second_seconds)
            await sleep_until(monitor, begin)
            cpu.mark()
            while await monitor.value("SELECT now()") < end + timedelta(seconds=1.5):
                cpu.sample()
                await asyncio.sleep(0.1)
        finally:
            stop.set()
            await task
    ticks, folded, p50, p95, worst = (
        await monitor.rows(
            "SELECT count(*), coalesce(sum(missed_ticks), 0),"
            " percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM fired_at - tick_at)),"
            " percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM fired_at - tick_at)),"
            " max(extract(epoch FROM fired_at - tick_at))"
            " FROM dw.schedule_ticks WHERE tick_at >= %s AND tick_at < %s",
            (begin, end),
        )
    )[0]
    required = sizes.per_second * sizes.per_second_seconds
    return {
        "schedules": sizes.per_second,
        "seconds": sizes.per_second_seconds,
        "ticks_required": required,
        "ticks_fired": ticks,
        "ticks_folded": folded,
        "ticks_per_second": ticks / sizes.per_second_seconds,
        "lateness_p50_seconds": p50,
        "lateness_p95_seconds": p95,
        "lateness_max_seconds": worst,
        **cpu.result(sizes.per_second_seconds + 1.5),
    }


# -- report --------------------------------------------------------------------------------------


def print_report(results: dict[str, Any]) -> None:
    sizes = results["sizes"]
    rows: list[tuple[str, str]] = []

    def row(label: str, value: Any, digits: int = 1) -> None:
        rows.append((label, fmt(value, digits)))

    def burst_rows(prefix: str, burst: dict[str, Any]) -> None:
        row(f"{prefix} ticks handled per second", burst["ticks_per_second"], 0)
        row(f"{prefix} burst (tick -> last fired), s", burst["burst_seconds"], 2)
        row(f"{prefix} lateness p50 / s", burst["lateness_p50_seconds"], 3)
        row(f"{prefix} lateness p95 / s", burst["lateness_p95_seconds"], 3)
        row(f"{prefix} first fired after, s", burst["first_fired_after_seconds"], 3)
        if burst.get("worker_cores") is not None:
            row(f"{prefix} scheduler process, cores", burst["worker_cores"], 2)
        row(f"{prefix} PostgreSQL, cores", burst["postgres_cores"], 2)
        if "runs_done_after_seconds" in burst:
            row(f"{prefix} runs Succeeded", burst["runs_succeeded"], 0)
            row(f"{prefix} last run ended after (from the tick), s", burst["runs_done_after_seconds"], 2)

    alone = results.get("alone")
    if alone:
        for i, (init, burst) in enumerate(zip(alone["initial_passes"], alone["bursts"], strict=True), 1):
            row(f"alone #{i}: all first ticks computed within, s", init["seconds"], 2)
            burst_rows(f"alone #{i}:", burst)
    workers = results.get("workers")
    if workers:
        for i, (init, burst) in enumerate(zip(workers["initial_passes"], workers["bursts"], strict=True), 1):
            row(f"{sizes['workers']} worker(s) #{i}: all first ticks computed within, s", init["seconds"], 2)
            burst_rows(f"{sizes['workers']} worker(s) #{i}:", burst)
    per_second = results.get("per_second")
    if per_second:
        p = per_second
        row(f"per-second x{p['schedules']}: ticks fired / required", f"{p['ticks_fired']:,} / {p['ticks_required']:,}")
        row("per-second: ticks per second", p["ticks_per_second"], 0)
        row("per-second: ticks folded (fell behind)", p["ticks_folded"], 0)
        row("per-second: lateness p50 / s", p["lateness_p50_seconds"], 3)
        row("per-second: lateness p95 / s", p["lateness_p95_seconds"], 3)
        row("per-second: scheduler process, cores", p["worker_cores"], 2)
        row("per-second: PostgreSQL, cores", p["postgres_cores"], 2)
    width = max(len(label) for label, _ in rows)
    print(f"\nschedules: {sizes['schedules']:,} rows, cron '* * * * * <s>' (all due at once each minute)")
    for label, value in rows:
        print(f"  {label:<{width}}  {value:>12}")


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
        # The schedules it inserts and the runs it starts are the default tenant's (the rows' tenant
        # defaults to the session's; dw.start_execution_v2 refuses none), as the worker's and the pool's.
        await conn.execute("SELECT set_config('dw.tenant_id', %s, false)", (DEFAULT_TENANT,))
        results["machine"] = await machine_info(monitor, description)
        async with open_pool(conninfo, 2) as pool:
            await publish(
                Database(pool),
                {
                    "id": WORKFLOW_ID,
                    "displayName": "Bench: scheduled echo",
                    "startNode": "echo1",
                    "nodes": [echo_node("echo1")],
                },
            )
        progress(f"creating {sizes.schedules} schedules")
        await create_schedules(monitor, sizes.schedules, 0)
        progress(f"warming up: {sizes.schedules} runs started (parked), then ANALYZE")
        await warm_up(monitor, sizes.schedules)
        if not args.skip_alone:
            progress("scheduler alone (in this process, runs parked in a queue nobody drains)")
            results["alone"] = await phase_alone(conninfo, monitor, sizes)
        if not args.skip_workers:
            progress(f"{sizes.workers} worker process(es), each with its scheduler, running the runs")
            results["workers"] = await phase_workers(conninfo, monitor, sizes, workdir)
        if sizes.per_second:
            progress(f"per-second: {sizes.per_second} schedules for {sizes.per_second_seconds}s (scheduler alone)")
            results["per_second"] = await phase_per_second(conninfo, monitor, sizes)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Scheduler cost with many schedule rows.")
    parser.add_argument("--quick", action="store_true", help="2,000 schedules, one burst per phase, 200 per-second")
    parser.add_argument("--schedules", type=int, help="schedule rows (default 10,000)")
    parser.add_argument("--rounds", type=int, help="bursts measured per phase (default 2)")
    parser.add_argument("--workers", type=int, help="worker processes in the workers phase (default 1)")
    parser.add_argument("--concurrency", type=int, help="each worker's concurrency (default 20)")
    parser.add_argument("--per-second", type=int, help="per-second schedules in the last phase (default 500)")
    parser.add_argument("--per-second-seconds", type=int, help="how long the per-second phase runs (default 10)")
    parser.add_argument("--skip-alone", action="store_true")
    parser.add_argument("--skip-workers", action="store_true")
    parser.add_argument("--skip-per-second", action="store_true")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds allowed per wait (default 240)")
    parser.add_argument("--total-timeout", type=float, default=900.0, help="seconds allowed in all (default 900)")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/triggers-*.json")
    args = parser.parse_args(argv)
    for name in ("schedules", "rounds", "workers", "concurrency", "per_second_seconds"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_main("triggers", parse_args(argv), run, print_report, errors=(BenchError, psycopg.Error))


if __name__ == "__main__":
    sys.exit(main())
