"""Baselines measured in the same run as the engine, on the same database: raw single-row commits, the pool's
checkout check, raw Procrastinate no-op jobs (the rate every engine figure is divided by), and one JavaScript
condition."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import psycopg_pool

from dataworkflows import simple_conditions
from dataworkflows.conditions import ConditionPool
from dataworkflows.db import make_pool
from figures import percentile, progress, ratio
from harness import (
    BENCH_DIR,
    BenchError,
    Monitor,
    ProcessCpu,
    Subprocess,
    child_env,
    open_pool,
    postmaster_pid,
    summarize_log,
)
from noop_worker import NOOP_TASK, build_app
from sizes import Sizes

NOOP_QUEUE = "bench_noop"
LATENCY_QUEUE = "bench_noop_latency"


async def bench_commits(conninfo: str, monitor: Monitor, sizes: Sizes) -> dict[str, Any]:
    """Baseline B: single-row INSERTs, one commit each (autocommit), on 1 and on C connections."""
    await monitor.rows("CREATE TABLE IF NOT EXISTS bench_commits (id bigserial PRIMARY KEY, conn int, payload text)")
    await monitor.checkpoint()
    insert = "INSERT INTO bench_commits (conn, payload) VALUES (%s, %s)"

    async def writer(conn: psycopg.AsyncConnection[Any], conn_no: int, count: int) -> None:
        for i in range(count):
            await conn.execute(insert, (conn_no, f"row {i}"))

    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        started = time.perf_counter()
        await writer(conn, 0, sizes.commits)
        single = time.perf_counter() - started

    await monitor.checkpoint()
    conns = [await psycopg.AsyncConnection.connect(conninfo, autocommit=True) for _ in range(sizes.concurrency)]
    try:
        per_conn = max(1, sizes.commits // sizes.concurrency)
        started = time.perf_counter()
        await asyncio.gather(*(writer(conn, n + 1, per_conn) for n, conn in enumerate(conns)))
        concurrent = time.perf_counter() - started
    finally:
        for conn in conns:
            await conn.close()
    total_concurrent = per_conn * sizes.concurrency
    return {
        "single_connection": {
            "commits": sizes.commits,
            "seconds": single,
            "commits_per_second": sizes.commits / single,
            "mean_ms": single / sizes.commits * 1000,
        },
        "concurrent": {
            "connections": sizes.concurrency,
            "commits": total_concurrent,
            "seconds": concurrent,
            "commits_per_second": total_concurrent / concurrent,
        },
    }


async def bench_pool_check(conninfo: str, sizes: Sizes) -> dict[str, Any]:
    """`SELECT 1` through the engine's pool (a socket poll on every checkout) and through a plain pool: what
    the dead-connection check costs per database call."""
    results: dict[str, Any] = {}
    for label, check in (("with_check", True), ("without_check", False)):
        pool: psycopg_pool.AsyncConnectionPool
        if check:
            pool = make_pool(conninfo, min_size=1, max_size=1, name="bench-check")
        else:

            async def autocommit(conn: psycopg.AsyncConnection[Any]) -> None:
                await conn.set_autocommit(True)

            pool = psycopg_pool.AsyncConnectionPool(
                conninfo, min_size=1, max_size=1, open=False, name="bench-nocheck", configure=autocommit
            )
        await pool.open(wait=True, timeout=30)
        try:
            for _ in range(20):  # warm-up
                async with pool.connection() as conn:
                    await conn.execute("SELECT 1")
            started = time.perf_counter()
            for _ in range(sizes.pool_checks):
                async with pool.connection() as conn:
                    await conn.execute("SELECT 1")
            elapsed = time.perf_counter() - started
        finally:
            await pool.close()
        results[label] = {"queries": sizes.pool_checks, "mean_us": elapsed / sizes.pool_checks * 1e6}
    results["check_overhead_us"] = results["with_check"]["mean_us"] - results["without_check"]["mean_us"]
    return results


async def bench_procrastinate(conninfo: str, monitor: Monitor, sizes: Sizes, workdir: Path) -> dict[str, Any]:
    """Baseline A: N no-op jobs, deferred in batches, drained by one worker process."""
    app = build_app(NOOP_QUEUE)
    started = time.perf_counter()
    async with open_pool(conninfo, 2) as pool, app.open_async(pool=pool):
        task = app.tasks[NOOP_TASK]
        for offset in range(0, sizes.executions, 500):
            count = min(500, sizes.executions - offset)
            await task.batch_defer_async(*({} for _ in range(count)))
    defer_seconds = time.perf_counter() - started
    await monitor.checkpoint()
    before = await monitor.transactions()

    worker = Subprocess(
        "noop worker",
        [
            sys.executable,
            str(BENCH_DIR / "noop_worker.py"),
            "--queue",
            NOOP_QUEUE,
            "--concurrency",
            str(sizes.concurrency),
            "--timeout",
            str(sizes.phase_timeout),
        ],
        child_env(conninfo),
        workdir / "noop-worker.log",
    )
    try:
        await worker.start()
        cpu = ProcessCpu([], await postmaster_pid(monitor))  # the worker reports its own CPU time
        deadline = time.perf_counter() + sizes.phase_timeout + 30
        while worker.returncode is None and time.perf_counter() < deadline:
            cpu.sample()
            await asyncio.sleep(0.1)
        code = await worker.wait(5.0)
        wall = time.perf_counter() - worker.spawned_at
    finally:
        await worker.stop()
    after = await monitor.transactions()
    output = [line for line in worker.log_path.read_text(errors="replace").splitlines() if line.startswith("{")]
    if code != 0 or not output:
        raise BenchError(f"the no-op worker failed (exit code {code}):\n{worker.tail()}")
    figures = json.loads(output[-1])
    left = await monitor.value("SELECT count(*) FROM procrastinate_jobs WHERE queue_name = %s", (NOOP_QUEUE,))
    transactions = Monitor.transactions_between(before, after)
    span = figures["span_seconds"]
    usage = cpu.result(figures["run_seconds"])
    usage.update(
        worker_cpu_seconds=figures["cpu_seconds"], worker_cores=ratio(figures["cpu_seconds"], figures["run_seconds"])
    )
    return {
        "jobs": sizes.executions,
        "jobs_run": figures["jobs"],
        "jobs_left_in_table": int(left),
        "defer_seconds": defer_seconds,
        "span_seconds": span,
        "run_seconds": figures["run_seconds"],
        "wall_seconds_from_spawn": wall,
        "jobs_per_second": ratio(figures["jobs"], span),
        "jobs_per_second_run": ratio(figures["jobs"], figures["run_seconds"]),
        "transactions": transactions,
        "transactions_per_job": ratio(transactions, figures["jobs"]),
        "cpu": usage,
        "log": summarize_log(worker.log_path),
    }


async def bench_conditions(sizes: Sizes) -> dict[str, Any]:
    """One JavaScript condition through the sandboxed helper pool, sequentially; and the same condition decided
    in the worker (dataworkflows.simple_conditions: it is one of the simple ones), as `in_worker`."""
    pool = ConditionPool(size=2, timeout_seconds=1.0)
    expr = "trigger.status === 'approved'"
    scope = {
        "trigger": {"status": "approved", "amount": 1200, "user": {"id": "u-1", "roles": ["admin"]}},
        "nodes": {"validate": {"ok": True, "score": 0.93}, "fetch": {"echo": "hello"}},
        "execution": {"id": "00000000-0000-0000-0000-000000000000", "workflowId": "bench", "version": 1},
    }
    if simple_conditions.decide(expr, scope) is None:
        # Else the worker's figure below would be a helper's round trip under the worker's name (a review).
        raise BenchError(f"the condition {expr!r} is not one the worker decides (dataworkflows.simple_conditions)")
    try:
        for _ in range(20):  # spawn the helper and warm it up
            assert await pool.evaluate(expr, scope, in_worker=False)
        timings = await _timed_conditions(pool, expr, scope, sizes.condition_evals, in_worker=False)
        in_worker = await _timed_conditions(pool, expr, scope, sizes.condition_evals, in_worker=True)
    finally:
        await pool.close()
    mean = sum(timings) / len(timings)
    p95 = percentile(timings, 95)
    return {
        "expression": expr,
        "evaluations": len(timings),
        "mean_us": mean,
        "p50_us": percentile(timings, 50),
        "p95_us": p95,
        "max_us": max(timings),
        "under_1ms": bool(p95 is not None and p95 < 1000),
        "in_worker": {
            "mean_us": sum(in_worker) / len(in_worker),
            "p50_us": percentile(in_worker, 50),
            "p95_us": percentile(in_worker, 95),
        },
    }


async def _timed_conditions(
    pool: ConditionPool, expr: str, scope: dict[str, Any], count: int, *, in_worker: bool
) -> list[float]:
    timings = []
    for _ in range(count):
        started = time.perf_counter_ns()
        value = await pool.evaluate(expr, scope, in_worker=in_worker)
        timings.append((time.perf_counter_ns() - started) / 1000)
        if value is not True:
            raise BenchError(f"condition evaluated to {value!r}, expected True")
    return timings


async def paced_defers(pool: psycopg_pool.AsyncConnectionPool, queue: str, rate: float, count: int) -> None:
    """Defers `count` no-op jobs one every 1 / rate seconds, each in a transaction of its own (without waiting
    for a defer's answer before the next, as the engine's paced starts)."""
    app = build_app(queue)
    async with app.open_async(pool=pool):
        task = app.tasks[NOOP_TASK]
        began = time.perf_counter()
        tasks: list[asyncio.Task[int]] = []
        for n in range(count):
            delay = began + n / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(task.defer_async()))
        await asyncio.gather(*tasks)


async def bare_queue_window(
    pool: psycopg_pool.AsyncConnectionPool,
    monitor: Monitor,
    worker: Subprocess,
    postmaster: int | None,
    rate: float,
    count: int,
    phase_timeout: float,
) -> dict[str, Any]:
    """`count` bare jobs deferred at `rate` a second, until they have all run: their start latency (a job's
    `started` event's time minus its `deferred` event's: both a transaction's start, as the engine's figure
    is) and the CPU of the no-op worker and PostgreSQL per job (its defer included in PostgreSQL's)."""
    first = int(await monitor.value("SELECT coalesce(max(id), 0) FROM procrastinate_jobs"))
    cpu = ProcessCpu([worker.process.pid] if worker.process is not None else [], postmaster)
    cpu.mark()
    began = time.perf_counter()
    progress(f"baseline: bare Procrastinate jobs' start latency, {count} jobs at {rate:.0f} a second")
    await paced_defers(pool, LATENCY_QUEUE, rate, count)
    deadline = time.perf_counter() + phase_timeout
    query = "SELECT count(*) FROM procrastinate_jobs WHERE queue_name = %s AND id > %s AND status <> 'succeeded'"
    while await monitor.value(query, (LATENCY_QUEUE, first)):
        if worker.returncode is not None or time.perf_counter() > deadline:
            raise BenchError(f"the no-op worker did not run the jobs:\n{worker.tail()}")
        cpu.sample()
        await asyncio.sleep(0.05)
    seconds = time.perf_counter() - began
    usage = cpu.result(seconds)
    rows = await monitor.rows(
        "SELECT extract(epoch FROM s.at - d.at)::float8 * 1000 FROM procrastinate_jobs j"
        " JOIN procrastinate_events d ON d.job_id = j.id AND d.type = 'deferred'"
        " JOIN procrastinate_events s ON s.job_id = j.id AND s.type = 'started'"
        " WHERE j.queue_name = %s AND j.id > %s",
        (LATENCY_QUEUE, first),
    )
    latencies = [r[0] for r in rows]
    return {
        "rate_per_second": rate,
        "runs": count,
        "seconds": seconds,
        **usage,
        "worker_cpu_ms_per_run": ratio(usage["worker_cpu_seconds"] * 1000, count),
        "postgres_cpu_ms_per_run": ratio(usage["postgres_cpu_seconds"] * 1000, count),
        "start_to_first_node_ms": {"p50": percentile(latencies, 50), "p95": percentile(latencies, 95)},
    }


async def bare_queue_latency(
    conninfo: str,
    monitor: Monitor,
    points: list[tuple[float, int]],
    concurrency: int,
    workdir: Path,
    phase_timeout: float,
) -> list[dict[str, Any]]:
    """Baseline B: bare Procrastinate jobs deferred one at a time at each (rate, count) of `points`, run by a
    no-op worker listening (noop_worker.py --listen, jobs kept) at `concurrency`: the queue's own start latency
    on this host at those rates, which an engine built on it cannot go under. One window (bare_queue_window)
    a point."""
    worker = Subprocess(
        "noop worker (listening)",
        [
            sys.executable,
            str(BENCH_DIR / "noop_worker.py"),
            "--queue",
            LATENCY_QUEUE,
            "--concurrency",
            str(concurrency),
            "--listen",
            "--timeout",
            str(phase_timeout * (len(points) + 1)),
        ],
        child_env(conninfo),
        workdir / "noop-worker-listening.log",
    )
    windows = []
    registered = "SELECT coalesce(max(id), 0) FROM procrastinate_workers"
    before = await monitor.value(registered)
    async with open_pool(conninfo, 8) as pool:
        try:
            await worker.start()
            deadline = time.perf_counter() + 60
            while await monitor.value(registered) == before:
                if worker.returncode is not None or time.perf_counter() > deadline:
                    raise BenchError(f"the no-op worker did not start:\n{worker.tail()}")
                await asyncio.sleep(0.1)
            await asyncio.sleep(0.5)  # its LISTEN connection comes up right after
            postmaster = await postmaster_pid(monitor)
            await paced_defers(pool, LATENCY_QUEUE, 100, 20)  # the client's connections, the worker's first fetches
            await asyncio.sleep(1.0)
            for rate, count in points:
                windows.append(await bare_queue_window(pool, monitor, worker, postmaster, rate, count, phase_timeout))
        finally:
            await worker.stop()
    return windows
