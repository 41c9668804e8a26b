"""The peer phase of bench/throughput.py: DBOS Transact draining two-step workflows on the same PostgreSQL server.

When `dbos` is importable (the optional `bench` extra: `pip install -e '.[bench]'`), a database of its own
(dw_bench_dbos_<random>) is created on the benchmark's server, N two-step workflows are enqueued on a DBOS
queue by one process that runs none (bench/dbos_worker.py enqueue), then ONE drain process (bench/dbos_worker.py
drain) with the queue's worker_concurrency = C, the engine worker's concurrency, runs them. steps/s = 2 x
SUCCESS workflows / (first workflow started -> last one finished), from DBOS's own timestamps
(workflow_status.started_at_epoch_ms, completed_at), the server's clock as with ours. The queue is polled every
--dbos-polling-ms (10 ms; DBOS's default, 1 s, would cap it at C workflows a second), so the peer is set up for
throughput. The phase is bounded by --dbos-timeout; a drain that does not finish in time reports what it did.

Without dbos installed the phase is skipped and the report says so.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from figures import progress, ratio
from harness import BENCH_DIR, BenchError, Monitor, ProcessCpu, Subprocess, child_env, postmaster_pid, summarize_log
from sizes import Sizes


def available() -> bool:
    return importlib.util.find_spec("dbos") is not None


def dbos_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dbos")
    except PackageNotFoundError:
        return None


def sqlalchemy_url(conninfo: str, dbname: str) -> str:
    """DBOS takes a SQLAlchemy URL: the same server and login as the benchmark's, another database."""
    params = conninfo_to_dict(conninfo)
    user, password = params.get("user", "postgres"), params.get("password", "")
    host, port = params.get("host", "localhost"), params.get("port")
    netloc = f"{user}:{password}@" if password else f"{user}@"
    if host.startswith("/"):  # a unix socket directory
        return f"postgresql://{netloc}/{dbname}?host={host}" + (f"&port={port}" if port else "")
    return f"postgresql://{netloc}{host}{':' + str(port) if port else ''}/{dbname}"


async def drain_figures(conn: psycopg.AsyncConnection[Any]) -> dict[str, Any]:
    cur = await conn.execute(
        "SELECT count(*) FILTER (WHERE status = 'SUCCESS'), count(*),"
        " (max(coalesce(completed_at, updated_at)) FILTER (WHERE status = 'SUCCESS')"
        "  - min(started_at_epoch_ms)) / 1000.0"
        " FROM dbos.workflow_status"
    )
    succeeded, total, span = await cur.fetchone() or (0, 0, None)
    cur = await conn.execute("SELECT count(*) FROM dbos.operation_outputs")
    row = await cur.fetchone()
    return {
        "workflows": int(total),
        "succeeded": int(succeeded),
        "checkpointed_steps": int(row[0]) if row else None,
        "span_seconds": float(span) if span is not None else None,
    }


async def bench_dbos(conninfo: str, monitor: Monitor, sizes: Sizes, workdir: Path) -> dict[str, Any]:
    if not available():
        return {"skipped": "dbos is not installed (pip install -e '.[bench]')"}
    name = f"dw_bench_dbos_{secrets.token_hex(4)}"
    await monitor.rows(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)).as_string(monitor.conn))
    url = sqlalchemy_url(conninfo, name)
    script = [sys.executable, str(BENCH_DIR / "dbos_worker.py")]
    env = child_env(conninfo)
    try:
        count, concurrency = sizes.dbos_executions, sizes.concurrency
        progress(f"peer: DBOS {dbos_version()}, enqueuing {count} two-step workflows (queue concurrency {concurrency})")
        enqueuer = Subprocess(
            "dbos enqueue",
            [
                *script,
                "enqueue",
                "--url",
                url,
                "--count",
                str(count),
                "--concurrency",
                str(concurrency),
                "--polling-ms",
                str(sizes.dbos_polling_ms),
            ],
            env,
            workdir / "dbos-enqueue.log",
        )
        await enqueuer.start()
        try:
            code = await enqueuer.wait(sizes.dbos_timeout)
        finally:
            await enqueuer.stop()
        lines = [line for line in enqueuer.log_path.read_text(errors="replace").splitlines() if line.startswith("{")]
        if code != 0 or not lines:
            raise BenchError(f"DBOS enqueue failed (exit code {code}):\n{enqueuer.tail()}")
        enqueued = json.loads(lines[-1])
        progress("peer: one DBOS process drains them")
        figures, log = await drain(url, make_conninfo(conninfo, dbname=name), monitor, sizes, script, env, workdir)
    finally:
        await monitor.rows(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)).as_string(monitor.conn)
        )
    steps = figures["succeeded"] * 2
    return {
        "dbos_version": dbos_version(),
        "workflows": count,
        "steps_per_workflow": 2,
        "worker_processes": 1,
        "queue_worker_concurrency": sizes.concurrency,
        "queue_polling_ms": sizes.dbos_polling_ms,
        "enqueue_seconds": enqueued["seconds"],
        **figures,
        "steps": steps,
        "steps_per_second": ratio(steps, figures["span_seconds"]),
        "workflows_per_second": ratio(figures["succeeded"], figures["span_seconds"]),
        "all_succeeded": figures["succeeded"] == count,
        "log": log,
    }


async def drain(
    url: str,
    watch: str,
    monitor: Monitor,
    sizes: Sizes,
    script: list[str],
    env: dict[str, str],
    workdir: Path,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Runs the drain process until every workflow is final or --dbos-timeout passes; stops it either way."""
    worker = Subprocess("dbos drain", [*script, "drain", "--url", url], env, workdir / "dbos-drain.log")
    async with await psycopg.AsyncConnection.connect(watch, autocommit=True) as conn:
        await worker.start()
        try:
            assert worker.process is not None
            cpu = ProcessCpu([worker.process.pid], await postmaster_pid(monitor))
            deadline = time.perf_counter() + sizes.dbos_timeout
            timed_out = False
            while True:
                cur = await conn.execute(
                    "SELECT count(*) FROM dbos.workflow_status WHERE status IN ('ENQUEUED', 'PENDING', 'DELAYED')"
                )
                row = await cur.fetchone()
                cpu.sample()
                if row is not None and row[0] == 0:
                    break
                if worker.returncode is not None:
                    raise BenchError(f"the DBOS drain exited (code {worker.returncode}):\n{worker.tail()}")
                if time.perf_counter() > deadline:
                    timed_out = True
                    progress(f"peer: DBOS drain stopped after --dbos-timeout {sizes.dbos_timeout:g}s")
                    break
                await asyncio.sleep(0.1)
            figures = await drain_figures(conn)
            figures["timed_out"] = timed_out
            figures["cpu"] = cpu.result(figures["span_seconds"])
        finally:
            await worker.stop()
    return figures, summarize_log(worker.log_path)
