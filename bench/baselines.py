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
from figures import percentile, ratio
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
