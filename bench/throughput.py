"""Throughput benchmark: the engine against raw Procrastinate and raw commits, on one database.

Run from the repository root:

    .venv/bin/python bench/throughput.py            # default sizes: about 40 s on 2 cores
    .venv/bin/python bench/throughput.py --quick    # small sizes: about 15 s
    .venv/bin/python bench/throughput.py --help     # sizes, concurrency, phases to skip

With DATABASE_URL unset it starts an embedded PostgreSQL in a temporary directory (removed at the end); with
DATABASE_URL set it creates a scratch database dw_bench_<random> on that server and drops it at the end.

What is measured, in one run, on the same database:

* Baseline B, raw commits: M single-row INSERTs in autocommit on one connection, then on C connections at once.
* Pool checkout: the engine's pool (dataworkflows.db.CheckedPool) polls each connection's socket before handing
  it out, to drop connections whose server end is gone (no round trip); a `SELECT 1` through that pool and
  through a plain psycopg_pool pool.
* Baseline A, raw Procrastinate: N no-op jobs deferred in batches, drained by one worker process
  (bench/noop_worker.py) at concurrency C, set up like the engine's worker (same pool, delete_jobs="successful").
  jobs/s over first job started -> last job ended.
* Engine, backlog drain: N executions of a 2-node echo workflow started (dw.start_execution_v1) before the worker
  starts, then drained by ONE `dataworkflows worker --concurrency C` process. executions/s and steps/s (Succeeded
  attempt rows) over first execution started -> last execution ended, server clock (worker start-up excluded;
  the wall time from process spawn is reported too), and how many executions ran at once on average.
* For both drains: transactions per job / per step (pg_stat_database, read once the phase's clients have
  disconnected so that their counters are flushed) and CPU per job / per step of the worker process and of the
  PostgreSQL processes (/proc, so only meaningful when the server runs on this host).
* Engine, start latency: a fresh worker listening, L executions started at a steady rate (by default half the
  measured drain capacity, so that no backlog forms); latency = first node's node_states.started_at -
  executions.created_at (both server clock), also to the end of the execution.
* Wide (start -> 50 parallel echo nodes -> join) and chain (20 echo nodes) workflows: K executions each, started
  while that worker runs; steps/s over first started -> last ended.
* One JavaScript edge condition through dataworkflows.conditions.ConditionPool: mean and p95 microseconds.

Figures and ratios are printed as a table and written to bench/results/throughput-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import procrastinate
import psycopg
import psycopg_pool
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dataworkflows.actions import default_registry
from dataworkflows.conditions import ConditionPool
from dataworkflows.db import Database, make_pool
from dataworkflows.logs import configure_logging
from dataworkflows.migrations import migrate
from dataworkflows.publishing import compile_for_publish, prepare_definition
from dataworkflows.tenancy import DEFAULT_TENANT, tenant_scope
from noop_worker import NOOP_TASK, build_app

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
FINAL = ("Succeeded", "Failed", "Cancelled", "TimedOut")
QUEUE = "executions"
NOOP_QUEUE = "bench_noop"
# Every wake-up of a LISTENing backend by a NOTIFY counts as a transaction too (the pool's checkout check is a
# socket poll and sends nothing, unless the connection has something to read).
TRANSACTIONS_NOTE = "pg_stat_database, incl. NOTIFY wake-ups"
# Backends that have just disconnected flush their statistics as they exit.
STATS_SETTLE_SECONDS = 0.5


class BenchError(Exception):
    """A phase could not complete (timeout, worker crash); the run stops and cleans up."""


# -- sizes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    executions: int
    concurrency: int
    start_batch: int
    latency_executions: int
    latency_interval_ms: float | None
    commits: int
    pool_checks: int
    wide_executions: int
    wide_fanout: int
    chain_executions: int
    chain_length: int
    condition_evals: int
    phase_timeout: float


def sizes_from_args(args: argparse.Namespace) -> Sizes:
    quick = args.quick

    def pick(value: Any, default: Any, quick_default: Any) -> Any:
        if value is not None:
            return value
        return quick_default if quick else default

    return Sizes(
        executions=pick(args.executions, 2000, 300),
        concurrency=pick(args.concurrency, 20, 20),
        start_batch=pick(args.start_batch, 100, 100),
        latency_executions=pick(args.latency_executions, 200, 50),
        latency_interval_ms=args.latency_interval_ms,
        commits=pick(args.commits, 5000, 1000),
        pool_checks=pick(None, 2000, 500),
        wide_executions=pick(args.wide_executions, 40, 8),
        wide_fanout=50,
        chain_executions=pick(args.chain_executions, 40, 8),
        chain_length=20,
        condition_evals=pick(args.condition_evals, 2000, 300),
        phase_timeout=args.timeout,
    )


# -- small helpers -------------------------------------------------------------------------------


def percentile(values: list[float], pct: float) -> float | None:
    """Linear interpolation between closest ranks (like numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def safe_target(conninfo: str) -> str:
    """Where the database is, without credentials."""
    params = conninfo_to_dict(conninfo)
    return f"host={params.get('host', 'localhost')} port={params.get('port', 5432)} dbname={params.get('dbname')}"


# -- the database --------------------------------------------------------------------------------


@contextlib.contextmanager
def bench_database() -> Iterator[tuple[str, str]]:
    """(conninfo, description) of a fresh database, removed afterwards."""
    url = os.environ.get("DATABASE_URL")
    if not url:
        from dataworkflows.embedded import EmbeddedPostgres

        tmp = tempfile.mkdtemp(prefix="dw-bench-")
        server = None
        try:
            progress(f"starting an embedded PostgreSQL under {tmp}")
            server = EmbeddedPostgres(tmp, database="dw_bench")
            yield server.uri(), "embedded (unix socket, temporary directory)"
        finally:
            if server is not None:
                server.stop()
            shutil.rmtree(tmp, ignore_errors=True)
        return
    name = f"dw_bench_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        conninfo = make_conninfo(url, dbname=name)
        yield conninfo, f"DATABASE_URL server, scratch database ({safe_target(conninfo)})"
    finally:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


class Monitor:
    """One autocommit connection for polling and statistics; counts its own statements so that
    they can be taken out of the pg_stat_database transaction counts."""

    def __init__(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.conn = conn
        self.statements = 0

    async def rows(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        self.statements += 1
        cur = await self.conn.execute(query, params)
        return await cur.fetchall() if cur.description is not None else []

    async def value(self, query: str, params: Any = None) -> Any:
        rows = await self.rows(query, params)
        return rows[0][0] if rows else None

    async def checkpoint(self) -> None:
        """Start each timed phase with the same WAL state (needs superuser or pg_checkpoint; skipped otherwise)."""
        with contextlib.suppress(psycopg.Error):
            await self.rows("CHECKPOINT")

    async def transactions(self) -> tuple[int, int]:
        """(statements issued here so far, committed + rolled back transactions of this database).

        Backends flush their counters to pg_stat_database lazily (when idle, at most once a second, else
        after 10 s idle) and at exit. So callers read this only when every other client of the phase has
        disconnected, and this connection forces its own flush first."""
        await asyncio.sleep(STATS_SETTLE_SECONDS)
        with contextlib.suppress(psycopg.Error):  # PostgreSQL 15+
            await self.rows("SELECT pg_stat_force_next_flush()")
        counted = self.statements
        total = await self.value(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
        )
        return counted, int(total)

    @staticmethod
    def transactions_between(before: tuple[int, int], after: tuple[int, int]) -> int:
        # This connection's statements in the window: the "before" read up to the "after" flush.
        own = after[0] - before[0]
        return after[1] - before[1] - own


class CpuSampler:
    """CPU seconds used by one process and by every PostgreSQL server process on this host, from /proc.

    Call sample() often (the poll loops do, every 0.1 s): a backend that exits loses its time since the last
    sample. mark() restarts the count, e.g. once the worker has started up and the first execution runs."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.marked = False
        self._reset()

    def _scan(self) -> dict[int, float]:
        seen: dict[int, float] = {}
        with contextlib.suppress(OSError):
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                pid = int(entry.name)
                try:
                    text = Path(f"/proc/{pid}/stat").read_text()
                except OSError:
                    continue
                comm = text[text.find("(") + 1 : text.rfind(")")]
                if comm != "postgres" and pid != self.pid:
                    continue
                fields = text[text.rfind(")") + 2 :].split()
                seen[pid] = (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime
        return seen

    def _reset(self) -> None:
        self.first = self._scan()
        self.last = dict(self.first)

    def mark(self) -> None:
        self._reset()
        self.marked = True

    def sample(self) -> None:
        self.last.update(self._scan())

    def result(self, seconds: float | None) -> dict[str, Any]:
        self.sample()
        used = {pid: value - self.first.get(pid, 0.0) for pid, value in self.last.items()}
        worker = used.pop(self.pid, None) if self.pid is not None else None
        server = sum(used.values())
        return {
            "worker_cpu_seconds": worker,
            "postgres_cpu_seconds": server,
            "worker_cores": ratio(worker, seconds),
            "postgres_cores": ratio(server, seconds),
        }


def git_state() -> str | None:
    """The commit measured, and whether the working tree had changes (benchmarks run on work in progress)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=BENCH_DIR, capture_output=True, text=True, timeout=10
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=BENCH_DIR,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode != 0:
        return None
    changed = len(status.stdout.splitlines())
    return head.stdout.strip() + (f" + {changed} modified files" if changed else "")


def memory_gb() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


async def machine_info(monitor: Monitor, description: str) -> dict[str, Any]:
    settings = {}
    for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers", "max_connections"):
        settings[name] = await monitor.value("SELECT current_setting(%s)", (name,))
    return {
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "memory_gb": memory_gb(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "postgresql": await monitor.value("SELECT version()"),
        "postgresql_settings": settings,
        "procrastinate": procrastinate.__version__,
        "psycopg": psycopg.__version__,
        "database": description,
        "git": git_state(),
    }


# -- processes -----------------------------------------------------------------------------------


class Subprocess:
    """A child process with its output in a file; always stopped (SIGTERM, then SIGKILL) on exit."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.name = name
        self.argv = argv
        self.env = env
        self.log_path = log_path
        self.process: asyncio.subprocess.Process | None = None
        self.spawned_at = 0.0

    async def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv, env=self.env, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log
            )
        self.spawned_at = time.perf_counter()

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    async def wait(self, limit_seconds: float) -> int:
        assert self.process is not None
        try:
            return await asyncio.wait_for(self.process.wait(), limit_seconds)
        except TimeoutError:
            raise BenchError(f"{self.name} did not exit within {limit_seconds:g}s") from None

    async def stop(self, grace: float = 20.0) -> tuple[int | None, float]:
        """SIGTERM, wait up to `grace`, then SIGKILL. Returns (exit code, seconds to stop)."""
        if self.process is None or self.process.returncode is not None:
            return self.returncode, 0.0
        started = time.perf_counter()
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
            code = await self.process.wait()
        return code, time.perf_counter() - started

    def tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


def worker_command() -> list[str]:
    script = Path(sys.executable).with_name("dataworkflows")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "dataworkflows.cli"]


def child_env(conninfo: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"DATABASE_URL": conninfo, "DW_LOG_FORMAT": "json", "DW_LOG_LEVEL": "warning"})
    # The engine's figures, not the API rate limiter's (bench/limits.py measures that): off unless set.
    env.setdefault("DW_API_RATE_PER_MINUTE", "0")
    return env


def summarize_log(path: Path) -> dict[str, Any]:
    """Counts of log lines by level (JSON lines from structlog; anything else is 'other')."""
    levels: dict[str, int] = {}
    samples: list[str] = []
    with contextlib.suppress(OSError):
        for line in path.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                record = None
            if isinstance(record, dict) and "jobs" in record and "span_seconds" in record:
                continue  # the no-op worker's figures
            level = str(record.get("level", "other")) if isinstance(record, dict) else "other"
            levels[level] = levels.get(level, 0) + 1
            if len(samples) < 8 and level not in ("debug", "info"):
                samples.append(line[:300])
    return {"lines_by_level": levels, "samples": samples}


# -- workflows -----------------------------------------------------------------------------------


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
    cpu: CpuSampler | None = None,
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


# -- phases --------------------------------------------------------------------------------------


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
        cpu = CpuSampler(None)  # the worker reports its own CPU time
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


def engine_worker(conninfo: str, concurrency: int, log_path: Path) -> Subprocess:
    return Subprocess(
        "engine worker",
        [*worker_command(), "worker", "--concurrency", str(concurrency)],
        child_env(conninfo),
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


async def bench_engine(
    conninfo: str, monitor: Monitor, sizes: Sizes, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    drain_id, latency_id, wide_id, chain_id = "bench-echo2", "bench-echo2-latency", "bench-wide", "bench-chain"
    pool_size = max(sizes.start_batch // 5, 10)

    # Backlog: every execution is queued before the worker exists (through a pool closed afterwards, so
    # that its statistics are flushed before the transaction count starts).
    progress(f"engine: starting {sizes.executions} executions ({sizes.start_batch} at a time, no worker yet)")
    async with open_pool(conninfo, pool_size) as pool:
        db = Database(pool)
        await publish(db, echo2_workflow(drain_id))
        await publish(db, echo2_workflow(latency_id))
        await publish(db, wide_workflow(wide_id, sizes.wide_fanout))
        await publish(db, chain_workflow(chain_id, sizes.chain_length))
        start_seconds = await start_many(db, drain_id, sizes.executions, sizes.start_batch)
    results["start_backlog"] = {
        "executions": sizes.executions,
        "seconds": start_seconds,
        "starts_per_second": sizes.executions / start_seconds,
    }
    await monitor.checkpoint()
    before = await monitor.transactions()

    # Drain with one worker, stopped afterwards (its backends flush their statistics as they exit).
    worker = engine_worker(conninfo, sizes.concurrency, workdir / "engine-worker-drain.log")
    try:
        await worker.start()
        progress(f"engine: worker started (concurrency {sizes.concurrency}); draining the backlog")
        cpu = CpuSampler(worker.process.pid if worker.process else None)
        await wait_final(monitor, drain_id, sizes.phase_timeout, worker, cpu=cpu)
        wall = time.perf_counter() - worker.spawned_at
        drain = await execution_figures(monitor, drain_id)
        usage = cpu.result(drain["span_seconds"])
    finally:
        code, stop_seconds = await worker.stop()
    after = await monitor.transactions()
    report_failures("backlog drain", drain)
    transactions = Monitor.transactions_between(before, after)
    drain.update(
        wall_seconds_from_spawn=wall,
        transactions=transactions,
        transactions_per_execution=ratio(transactions, drain["executions"]),
        transactions_per_step=ratio(transactions, drain["steps"]),
        cpu=usage,
    )
    results["drain"] = drain
    workers = [
        {"phase": "drain", "exit_code": code, "stop_seconds": stop_seconds, "log": summarize_log(worker.log_path)}
    ]

    if not (args.skip_latency and args.skip_wide and args.skip_chain):
        # A fresh worker for the phases that start executions while it runs.
        worker = engine_worker(conninfo, sizes.concurrency, workdir / "engine-worker-rest.log")
        try:
            await worker.start()
            async with open_pool(conninfo, pool_size) as pool:
                db = Database(pool)
                await wait_registered(monitor, worker)
                if not args.skip_latency:
                    capacity = drain["executions_per_second"]
                    results["latency"] = await engine_latency(db, monitor, sizes, latency_id, worker, capacity)
                if not args.skip_wide:
                    progress(f"engine: wide, {sizes.wide_executions} executions of {sizes.wide_fanout + 2} nodes")
                    results["wide"] = await engine_batch(db, monitor, sizes, wide_id, sizes.wide_executions, worker)
                if not args.skip_chain:
                    progress(f"engine: chain, {sizes.chain_executions} executions of {sizes.chain_length} nodes")
                    results["chain"] = await engine_batch(db, monitor, sizes, chain_id, sizes.chain_executions, worker)
        finally:
            code, stop_seconds = await worker.stop()
        workers.append(
            {
                "phase": "latency/wide/chain",
                "exit_code": code,
                "stop_seconds": stop_seconds,
                "log": summarize_log(worker.log_path),
            }
        )
    results["workers"] = workers
    return results


async def engine_latency(
    db: Database, monitor: Monitor, sizes: Sizes, workflow_id: str, worker: Subprocess, capacity: float | None
) -> dict[str, Any]:
    """Executions started at a steady rate while the worker is listening: request -> first node running.

    Unless --latency-interval-ms is given, the rate is half the measured drain capacity (and at most one start
    every 5 ms), so that the figure is the pick-up path, not queueing behind a backlog."""
    count = sizes.latency_executions
    if sizes.latency_interval_ms is not None:
        interval = sizes.latency_interval_ms / 1000
    else:
        interval = max(0.005, 2 / capacity) if capacity else 0.02
    progress(f"engine: start latency, {count} executions one every {interval * 1000:.1f} ms")
    began = time.perf_counter()
    tasks: list[asyncio.Task[float]] = []
    for i in range(count):
        delay = began + i * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(start_one(db, workflow_id, i)))
    call_seconds = await asyncio.gather(*tasks)
    offered = time.perf_counter() - began
    await wait_final(monitor, workflow_id, sizes.phase_timeout, worker, interval=0.05)
    rows = await monitor.rows(
        "SELECT extract(epoch FROM n.started_at - e.created_at)::float8,"
        " extract(epoch FROM e.ended_at - e.created_at)::float8"
        " FROM dw.executions e JOIN dw.node_states n ON n.execution_id = e.id AND n.position = 0"
        " WHERE e.workflow_id = %s",
        (workflow_id,),
    )
    first_node = [r[0] * 1000 for r in rows if r[0] is not None]
    end_to_end = [r[1] * 1000 for r in rows if r[1] is not None]
    calls = [s * 1000 for s in call_seconds]
    figures = await execution_figures(monitor, workflow_id)
    report_failures("start latency", figures)
    rate = count / offered
    return {
        "executions": count,
        "interval_ms": interval * 1000,
        "offered_rate_per_second": rate,
        "offered_load_vs_drain_capacity": ratio(rate, capacity),
        "all_succeeded": figures["all_succeeded"],
        "statuses": figures["statuses"],
        "start_to_first_node_ms": {"p50": percentile(first_node, 50), "p95": percentile(first_node, 95)},
        "start_to_end_ms": {"p50": percentile(end_to_end, 50), "p95": percentile(end_to_end, 95)},
        "start_call_ms": {"p50": percentile(calls, 50), "p95": percentile(calls, 95)},
    }


async def engine_batch(
    db: Database, monitor: Monitor, sizes: Sizes, workflow_id: str, count: int, worker: Subprocess
) -> dict[str, Any]:
    """K executions started at once while the worker runs; steps/s over first started -> last ended."""
    await monitor.checkpoint()
    await start_many(db, workflow_id, count, sizes.start_batch)
    await wait_final(monitor, workflow_id, sizes.phase_timeout, worker)
    figures = await execution_figures(monitor, workflow_id)
    report_failures(workflow_id, figures)
    return figures


async def bench_conditions(sizes: Sizes) -> dict[str, Any]:
    """One JavaScript condition through the sandboxed helper pool, sequentially."""
    pool = ConditionPool(size=2, timeout_seconds=1.0)
    expr = "trigger.status === 'approved'"
    scope = {
        "trigger": {"status": "approved", "amount": 1200, "user": {"id": "u-1", "roles": ["admin"]}},
        "nodes": {"validate": {"ok": True, "score": 0.93}, "fetch": {"echo": "hello"}},
        "execution": {"id": "00000000-0000-0000-0000-000000000000", "workflowId": "bench", "version": 1},
    }
    try:
        for _ in range(20):  # spawn the helper and warm it up
            assert await pool.evaluate(expr, scope)
        timings = []
        for _ in range(sizes.condition_evals):
            started = time.perf_counter_ns()
            value = await pool.evaluate(expr, scope)
            timings.append((time.perf_counter_ns() - started) / 1000)
            if value is not True:
                raise BenchError(f"condition evaluated to {value!r}, expected True")
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
    }


# -- report --------------------------------------------------------------------------------------


def compute_ratios(results: dict[str, Any]) -> dict[str, float | None]:
    engine = results.get("engine", {})
    drain = engine.get("drain", {})
    jobs = results.get("procrastinate", {}).get("jobs_per_second")
    commits = results.get("commits", {})
    return {
        "engine_steps_per_s / procrastinate_jobs_per_s": ratio(drain.get("steps_per_second"), jobs),
        "engine_executions_per_s / procrastinate_jobs_per_s": ratio(drain.get("executions_per_second"), jobs),
        "procrastinate_jobs_per_s / commits_per_s (1 conn)": ratio(
            jobs, commits.get("single_connection", {}).get("commits_per_second")
        ),
        "procrastinate_jobs_per_s / commits_per_s (C conns)": ratio(
            jobs, commits.get("concurrent", {}).get("commits_per_second")
        ),
        "wide_steps_per_s / procrastinate_jobs_per_s": ratio(engine.get("wide", {}).get("steps_per_second"), jobs),
        "chain_steps_per_s / procrastinate_jobs_per_s": ratio(engine.get("chain", {}).get("steps_per_second"), jobs),
        "engine_transactions_per_step / procrastinate_transactions_per_job": ratio(
            drain.get("transactions_per_step"), results.get("procrastinate", {}).get("transactions_per_job")
        ),
    }


def fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "NO"
    if isinstance(value, float):
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def print_report(results: dict[str, Any]) -> None:
    machine = results["machine"]
    sizes = results["sizes"]
    rows: list[tuple[str, str, str] | None] = []

    def row(label: str, value: Any, note: str = "", digits: int = 1) -> None:
        rows.append((label, fmt(value, digits), note))

    def cpu_rows(name: str, cpu: dict[str, Any], units: int, unit: str) -> None:
        worker, server = cpu["worker_cpu_seconds"], cpu["postgres_cpu_seconds"]
        row(
            f"{name} CPU per {unit}: worker / postgres",
            f"{fmt(ratio(worker, units / 1000), 2)} / {fmt(ratio(server, units / 1000), 2)}",
            f"ms (cores busy: worker {fmt(cpu['worker_cores'], 2)}, postgres {fmt(cpu['postgres_cores'], 2)})",
        )

    commits = results.get("commits")
    if commits:
        one, many = commits["single_connection"], commits["concurrent"]
        row("raw commits/s, 1 connection", one["commits_per_second"], f"{one['mean_ms']:.3f} ms per commit")
        row(f"raw commits/s, {many['connections']} connections", many["commits_per_second"], "aggregate")
    check = results.get("pool_check")
    if check:
        row("pool checkout + SELECT 1, with check", check["with_check"]["mean_us"], "us (engine's make_pool)")
        row("pool checkout + SELECT 1, no check", check["without_check"]["mean_us"], "us")
        row("pool check overhead per DB call", check["check_overhead_us"], "us (a socket poll, no round trip)")
    proc = results.get("procrastinate")
    if proc:
        rows.append(None)
        row(
            "procrastinate no-op jobs/s",
            proc["jobs_per_second"],
            f"{proc['jobs_run']} jobs in {proc['span_seconds']:.2f}s (first start -> last end)",
        )
        row("procrastinate transactions per job", proc["transactions_per_job"], TRANSACTIONS_NOTE, digits=2)
        cpu_rows("procrastinate", proc["cpu"], proc["jobs_run"], "job")
    engine = results.get("engine")
    if engine:
        drain = engine["drain"]
        rows.append(None)
        row("engine starts/s (no worker, batches)", engine["start_backlog"]["starts_per_second"])
        row(
            "engine executions/s (2-node backlog)",
            drain["executions_per_second"],
            f"{drain['executions']} in {drain['span_seconds']:.2f}s (first started -> last ended)",
        )
        row("engine steps/s (2-node backlog)", drain["steps_per_second"], f"{drain['steps']} Succeeded attempts")
        row("engine drain wall time from spawn", drain["wall_seconds_from_spawn"], "s (incl. worker start-up)", 2)
        row(
            "engine execution run time (mean)",
            drain["mean_execution_ms"],
            f"ms lease taken -> finished; {fmt(drain['mean_in_flight'])} executions in flight on average",
        )
        row("engine transactions per execution", drain["transactions_per_execution"], TRANSACTIONS_NOTE, 2)
        row("engine transactions per step", drain["transactions_per_step"], "", 2)
        cpu_rows("engine", drain["cpu"], drain["steps"], "step")
        row("all executions Succeeded", drain["all_succeeded"], str(drain["statuses"]))
        latency = engine.get("latency")
        if latency:
            rows.append(None)
            note = (
                f"{latency['executions']} starts at {latency['offered_rate_per_second']:.0f}/s"
                f" ({fmt(latency['offered_load_vs_drain_capacity'], 2)} of drain capacity)"
            )
            row("start latency p50 (-> first node)", latency["start_to_first_node_ms"]["p50"], "ms; " + note)
            row("start latency p95 (-> first node)", latency["start_to_first_node_ms"]["p95"], "ms")
            row("start -> execution end p50", latency["start_to_end_ms"]["p50"], "ms")
            row("start -> execution end p95", latency["start_to_end_ms"]["p95"], "ms")
            calls = latency["start_call_ms"]
            rows.append(("start call round trip p50 / p95", f"{fmt(calls['p50'], 2)} / {fmt(calls['p95'], 2)}", "ms"))
        for key, label in (("wide", "wide (1 -> 50 -> 1)"), ("chain", "chain (20 nodes)")):
            figures = engine.get(key)
            if figures:
                rows.append(None)
                row(
                    f"{label} steps/s",
                    figures["steps_per_second"],
                    f"{figures['executions']} executions, {figures['steps']} steps in {figures['span_seconds']:.2f}s",
                )
                row(f"{label} executions/s", figures["executions_per_second"], "", 2)
                row(f"{label} all Succeeded", figures["all_succeeded"], str(figures["statuses"]))
    cond = results.get("conditions")
    if cond:
        rows.append(None)
        row("JS condition mean", cond["mean_us"], f"us over {cond['evaluations']} sequential evaluations")
        row("JS condition p95", cond["p95_us"], "us")
        row("JS condition p95 under 1 ms", cond["under_1ms"], "")
    rows.append(None)
    for label, value in results["ratios"].items():
        rows.append((label, fmt(value, 3), ""))

    width = max(len(r[0]) for r in rows if r) + 2
    vwidth = max(len(r[1]) for r in rows if r) + 2
    line = "-" * (width + vwidth + 50)
    print()
    print(line)
    print(
        f"DataWorkflows throughput  |  nproc {machine['nproc']}  |  PostgreSQL "
        f"{machine['postgresql_settings']['server_version']}  |  fsync {machine['postgresql_settings']['fsync']}, "
        f"synchronous_commit {machine['postgresql_settings']['synchronous_commit']}"
    )
    print(
        f"{machine['platform']}  |  Python {machine['python']}  |  procrastinate {machine['procrastinate']}"
        f"  |  git {machine['git'] or '-'}"
    )
    print(
        f"database: {machine['database']}  |  N={sizes['executions']} C={sizes['concurrency']} "
        f"M={sizes['commits']} K={sizes['wide_executions']}/{sizes['chain_executions']}"
    )
    print(line)
    for r in rows:
        if r is None:
            print()
            continue
        print(f"{r[0]:<{width}}{r[1]:>{vwidth}}  {r[2]}")
    print(line)
    for worker in results.get("engine", {}).get("workers", []):
        logs = worker["log"]
        print(
            f"engine worker ({worker['phase']}): exit code {worker['exit_code']} {worker['stop_seconds']:.2f}s after"
            f" SIGTERM; log lines at warning+: {logs['lines_by_level'] or 'none'}"
        )
        for sample in logs["samples"]:
            print(f"  {sample}")
    proc_logs = results.get("procrastinate", {}).get("log")
    if proc_logs and proc_logs["samples"]:
        print("no-op worker output:")
        for sample in proc_logs["samples"]:
            print(f"  {sample}")


# -- main ----------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def open_pool(conninfo: str, size: int) -> AsyncIterator[psycopg_pool.AsyncConnectionPool]:
    pool = make_pool(conninfo, min_size=2, max_size=size, name="bench")
    await pool.open(wait=True, timeout=30)
    try:
        yield pool
    finally:
        await pool.close()


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
        if not args.skip_baselines:
            progress(f"raw commits: {sizes.commits} single-row INSERTs on 1, then {sizes.concurrency} connections")
            results["commits"] = await bench_commits(conninfo, monitor, sizes)
            progress("pool checkout cost, with and without the connection check")
            results["pool_check"] = await bench_pool_check(conninfo, sizes)
        if not args.skip_baselines:
            progress(f"procrastinate: {sizes.executions} no-op jobs, one worker at concurrency {sizes.concurrency}")
            results["procrastinate"] = await bench_procrastinate(conninfo, monitor, sizes, workdir)
        results["engine"] = await bench_engine(conninfo, monitor, sizes, args, workdir)
    if not args.skip_conditions:
        progress(f"conditions: {sizes.condition_evals} sequential evaluations")
        results["conditions"] = await bench_conditions(sizes)
    results["ratios"] = compute_ratios(results)
    return results


async def interruptible(total_timeout: float, work: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """A whole benchmark run under one overall time limit (the phases have their own). SIGTERM and SIGINT
    cancel it, so that the processes are stopped and the database removed on the way out."""
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, task.cancel)
    try:
        async with asyncio.timeout(total_timeout):
            return await work()
    except TimeoutError:
        raise BenchError(f"the benchmark ran past --total-timeout ({total_timeout:g}s)") from None
    except asyncio.CancelledError:
        raise BenchError("interrupted") from None
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)


def run_main(
    name: str,
    args: argparse.Namespace,
    run: Callable[[argparse.Namespace, str, str, Path], Awaitable[dict[str, Any]]],
    report: Callable[[dict[str, Any]], None],
    *,
    errors: tuple[type[Exception], ...] = (BenchError,),
    exit_code: Callable[[dict[str, Any]], int] = lambda results: 0,
) -> int:
    """The shared tail of every benchmark's main(): run against a bench database within
    --total-timeout, report, and save bench/results/<name>-<UTC timestamp>.json unless --no-save."""
    began = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="dw-bench-logs-"))
    try:
        with bench_database() as (conninfo, description):
            try:
                # The engine's pools act as the application role (row-level security): the
                # benchmark's own database work is the default tenant's.
                with tenant_scope(DEFAULT_TENANT):
                    results = asyncio.run(
                        interruptible(args.total_timeout, lambda: run(args, conninfo, description, workdir))
                    )
            except errors as exc:
                detail = str(exc) if isinstance(exc, BenchError) else f"{type(exc).__name__}: {exc}"
                print(f"error: {detail}", file=sys.stderr)
                for log in sorted(workdir.glob("*.log")):
                    print(f"--- last lines of {log.name}:", file=sys.stderr)
                    print("\n".join(log.read_text(errors="replace").splitlines()[-15:]), file=sys.stderr)
                return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    results["total_seconds"] = time.perf_counter() - began
    report(results)
    print(f"total run time {results['total_seconds']:.1f}s")
    if not args.no_save:
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        path = RESULTS_DIR / f"{name}-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
        path.write_text(json.dumps(results, indent=2, default=str) + "\n")
        print(f"results written to {path.relative_to(BENCH_DIR.parent)}")
    return exit_code(results)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Engine throughput against raw Procrastinate and raw commits.")
    parser.add_argument("--quick", action="store_true", help="small sizes: the whole run takes well under a minute")
    parser.add_argument("--executions", "-n", type=int, help="backlog executions and no-op jobs (default 2000)")
    parser.add_argument("--concurrency", "-c", type=int, help="worker concurrency and connections (default 20)")
    parser.add_argument("--start-batch", type=int, help="executions started concurrently per batch (default 100)")
    parser.add_argument("--latency-executions", type=int, help="executions in the start-latency phase (default 200)")
    parser.add_argument(
        "--latency-interval-ms", type=float, help="ms between latency starts (default: half the drain capacity)"
    )
    parser.add_argument("--commits", type=int, help="single-row commits in baseline B (default 5000)")
    parser.add_argument("--wide-executions", type=int, help="executions of the fan-out workflow (default 40)")
    parser.add_argument("--chain-executions", type=int, help="executions of the 20-node chain (default 40)")
    parser.add_argument("--condition-evals", type=int, help="sequential JS condition evaluations (default 2000)")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds allowed per phase (default 240)")
    parser.add_argument("--total-timeout", type=float, default=900.0, help="seconds allowed in all (default 900)")
    parser.add_argument("--skip-baselines", action="store_true", help="engine only: no commits/procrastinate phases")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--skip-wide", action="store_true")
    parser.add_argument("--skip-chain", action="store_true")
    parser.add_argument("--skip-conditions", action="store_true")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/throughput-*.json")
    args = parser.parse_args(argv)
    for name in ("executions", "concurrency", "start_batch", "latency_executions", "commits", "condition_evals"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_main("throughput", parse_args(argv), run, print_report)


if __name__ == "__main__":
    sys.exit(main())
