"""Retention benchmark: removing the history of a million old executions, while work goes on.

Run from the repository root:

    .venv/bin/python bench/retention.py                 # 1,000,000 old runs: about 12 minutes on 2 cores
    .venv/bin/python bench/retention.py --quick         # 50,000 old runs: about a minute
    .venv/bin/python bench/retention.py -n 200000       # any size

Database as in bench/throughput.py (whose helpers this script uses): an embedded PostgreSQL in a temporary
directory with DATABASE_URL unset, else a scratch database dw_bench_<random> on that server; removed at the end.
The login must be a superuser (the rows are generated with triggers off).

* Generation (not measured as the engine): N finished root runs of a 2-node workflow, ended 31 to ~400 days ago,
  with INSERT ... SELECT generate_series, not through the engine: per run 2 node states, 2 attempt rows and 7
  events; 2% Failed with a node_failed dead letter acknowledged an hour after the end (0.5% of those still open:
  their runs must stay), 1% Cancelled; every 20th run has a subworkflow child (its own 2 nodes, 2 attempts and
  7 events, and the parent's child wait): a tree of two. Plus N/100 runs that ended a day ago (must stay). Then
  VACUUM ANALYZE, as a live database would have been.
* The event log's retention path, on a sample of old runs (six slices, alternating): the guarded DELETE the prune
  does (the statement-level check of migration 0024) against the same DELETE with triggers off; and, for the
  choice against time partitioning, single-row INSERTs into a copy of dw.execution_events, plain and partitioned
  by month, alternating.
* Workload: one `dataworkflows worker` (retention off in it) and starts of a 2-node echo workflow at R/s
  through the engine's data layer: the start call's latency and each run's request -> end, first for
  --baseline-seconds without pruning, then during the prune.
* The prune: dw.prune_executions_v1 through the same code as `dataworkflows prune` (the application role taking
  the maintenance role, every tenant), DW_RETENTION_DAYS 30, --batch-size runs (whole trees) a transaction, until
  nothing is due: total time, trees/s, executions/s, rows/s, each batch's duration; then what is left (young runs, trees
  with an open dead letter, the workload's runs) and that nothing of a pruned run is.

Figures are printed and written to bench/results/retention-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from dataworkflows.data.retention import Pruned
from dataworkflows.db import Database
from dataworkflows.logs import configure_logging
from dataworkflows.migrations import migrate
from dataworkflows.retention import Prune, prune_due
from dataworkflows.tenancy import all_tenants
from throughput import (
    BenchError,
    Monitor,
    Subprocess,
    child_env,
    echo2_workflow,
    fmt,
    machine_info,
    open_pool,
    percentile,
    progress,
    publish,
    run_main,
    start_one,
    wait_registered,
    worker_command,
)

DAY = 86400.0
OLD, CHILD, YOUNG, LIVE = "bench-old", "bench-child", "bench-young", "bench-live"
TABLES = ("executions", "node_states", "action_executions", "execution_events", "waits", "dead_letters")


@dataclass(frozen=True)
class Sizes:
    executions: int
    batch: int
    workload_rate: float
    baseline_seconds: float
    sample: int
    inserts: int


def generation_sql(n: int) -> list[tuple[str, str]]:
    """(what, statement) in order; run as a superuser with session_replication_role = replica."""
    young = max(n // 100, 1)
    return [
        (
            "root runs",
            f"""INSERT INTO dw.executions (id, tenant_id, workflow_id, workflow_version, request_id, status, trigger,
                    principal_id, principal_type, correlation_id, lease_token, created_at, started_at, ended_at,
                    error, outputs, root_execution_id, path, queue)
                SELECT x.id, 'default', '{OLD}', 1, 'gen-' || i,
                       CASE WHEN i % 50 = 0 THEN 'Failed' WHEN i % 100 = 1 THEN 'Cancelled' ELSE 'Succeeded' END,
                       jsonb_build_object('index', i, 'status', 'approved'), 'bench', 'user', 'gen-' || i, 1,
                       x.t - interval '2 s', x.t - interval '1.9 s', x.t,
                       CASE WHEN i % 50 = 0 THEN '{{"code": "node_failed", "message": "node echo2 failed"}}'::jsonb END,
                       '{{"result": "hi from echo2"}}'::jsonb, x.id, ARRAY[x.id], 'executions'
                  FROM generate_series(1, {n}) i,
                       LATERAL (SELECT md5('root' || i)::uuid AS id,
                                       now() - interval '31 days' - i * interval '30 s' AS t) x""",
        ),
        (
            "child runs (every 20th root)",
            f"""INSERT INTO dw.executions (id, tenant_id, workflow_id, workflow_version, request_id, status, trigger,
                    principal_id, principal_type, lease_token, created_at, started_at, ended_at, outputs,
                    parent_execution_id, parent_node_id, depth, root_execution_id, path, queue)
                SELECT md5('child' || i)::uuid, 'default', '{CHILD}', 1, 'child:' || i, 'Succeeded',
                       '{{"from": "parent"}}'::jsonb, 'bench', 'user', 1, r.created_at, r.started_at,
                       r.ended_at - interval '0.5 s', '{{"result": "hi"}}'::jsonb, r.id, 'echo1', 1, r.id,
                       ARRAY[r.id, md5('child' || i)::uuid], 'executions'
                  FROM generate_series(20, {n}, 20) i JOIN dw.executions r ON r.id = md5('root' || i)::uuid""",
        ),
        (
            "young runs (ended a day ago)",
            f"""INSERT INTO dw.executions (id, tenant_id, workflow_id, workflow_version, request_id, status, trigger,
                    principal_id, principal_type, lease_token, created_at, started_at, ended_at, root_execution_id,
                    path, queue)
                SELECT x.id, 'default', '{YOUNG}', 1, 'young-' || i, 'Succeeded', '{{}}'::jsonb, 'bench', 'user', 1,
                       x.t - interval '2 s', x.t - interval '1.9 s', x.t, x.id, ARRAY[x.id], 'executions'
                  FROM generate_series(1, {young}) i,
                       LATERAL (SELECT md5('young' || i)::uuid AS id, now() - interval '1 day' AS t) x""",
        ),
        (
            "node states",
            f"""INSERT INTO dw.node_states (tenant_id, execution_id, node_id, position, action_type, status, attempts,
                    expected_incoming, decided_incoming, satisfied_incoming, edge_targets, outputs, started_at,
                    ended_at)
                SELECT 'default', e.id, n.node_id, n.position, 'core.echo', 'Succeeded', 1, 0, 0, 0, '{{}}',
                       jsonb_build_object('echo', 'hi from ' || n.node_id), e.started_at, e.ended_at
                  FROM dw.executions e CROSS JOIN (VALUES ('echo1', 0), ('echo2', 1)) n(node_id, position)
                 WHERE e.workflow_id IN ('{OLD}', '{CHILD}', '{YOUNG}')""",
        ),
        (
            "attempts",
            f"""INSERT INTO dw.action_executions (tenant_id, execution_id, node_id, action_type, attempt, status,
                    parameters, outputs, worker, start_time, end_time)
                SELECT 'default', e.id, n.node_id, 'core.echo', 1, 'Succeeded',
                       jsonb_build_object('message', 'hi from ' || n.node_id),
                       jsonb_build_object('echo', 'hi from ' || n.node_id), 'bench-gen/1/abcdef',
                       e.started_at, e.ended_at
                  FROM dw.executions e CROSS JOIN (VALUES ('echo1'), ('echo2')) n(node_id)
                 WHERE e.workflow_id IN ('{OLD}', '{CHILD}', '{YOUNG}')""",
        ),
        (
            "events",
            f"""INSERT INTO dw.execution_events (tenant_id, execution_id, node_id, type, at, principal, details)
                SELECT 'default', e.id, v.node_id, v.type, e.started_at + v.k * interval '10 ms',
                       CASE WHEN v.k = 1 THEN 'bench' END, v.details::jsonb
                  FROM dw.executions e
                 CROSS JOIN (VALUES (1, NULL, 'execution_requested', '{{"workflowVersion": 1}}'),
                                    (2, NULL, 'execution_started', '{{"worker": "bench-gen/1/abcdef"}}'),
                                    (3, 'echo1', 'node_started', '{{"attempt": 1}}'),
                                    (4, 'echo1', 'node_succeeded', '{{"attempt": 1}}'),
                                    (5, 'echo2', 'node_started', '{{"attempt": 1}}'),
                                    (6, 'echo2', 'node_succeeded', '{{"attempt": 1}}'),
                                    (7, NULL, 'execution_succeeded', '{{"status": "Succeeded"}}'))
                       v(k, node_id, type, details)
                 WHERE e.workflow_id IN ('{OLD}', '{CHILD}', '{YOUNG}')""",
        ),
        (
            "child waits",
            f"""INSERT INTO dw.waits (tenant_id, execution_id, node_id, attempt, kind, name, details, created_at,
                    state, consumed_at, consumed_by, result, recorded_at, child_execution_id)
                SELECT 'default', c.parent_execution_id, 'echo1', 1, 'child', '{CHILD}', '{{}}'::jsonb, c.created_at,
                       'completed', c.ended_at, 'child', '{{"status": "Succeeded"}}'::jsonb, c.ended_at, c.id
                  FROM dw.executions c WHERE c.workflow_id = '{CHILD}'""",
        ),
        (
            "dead letters (acknowledged; every 250th open)",
            f"""INSERT INTO dw.dead_letters (tenant_id, kind, execution_id, node_id, payload, error, attempts,
                    created_at, closed_at, closed_by, close_reason)
                SELECT 'default', 'node_failed', e.id, 'echo2', '{{}}'::jsonb, e.error, 3, e.ended_at,
                       CASE WHEN (e.trigger ->> 'index')::int % 12500 <> 0 THEN e.ended_at + interval '1 hour' END,
                       CASE WHEN (e.trigger ->> 'index')::int % 12500 <> 0 THEN 'ops' END,
                       CASE WHEN (e.trigger ->> 'index')::int % 12500 <> 0 THEN 'acknowledged' END
                  FROM dw.executions e WHERE e.workflow_id = '{OLD}' AND e.status = 'Failed'""",
        ),
    ]


async def generate(conninfo: str, n: int) -> dict[str, Any]:
    """The rows, loaded with the tables' secondary indexes dropped and built again afterwards (as a restore
    would: several times faster than maintaining random-order uuid indexes row by row), on two connections
    once the runs exist (the machine has two cores)."""
    timings: dict[str, float] = {}
    steps = generation_sql(n)
    async with (
        await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as first,
        await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as second,
    ):
        indexes = await (
            await first.execute(
                "SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid) FROM pg_index i"
                " JOIN pg_class t ON t.oid = i.indrelid JOIN pg_namespace s ON s.oid = t.relnamespace"
                " WHERE s.nspname = 'dw' AND t.relname = ANY(%s)"
                " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
                (list(TABLES),),
            )
        ).fetchall()
        for name, _ in indexes:
            await first.execute(f"DROP INDEX {name}")
        # The tenant CHECK (a regular expression) doubles the cost of a bulk insert; the generated rows are all
        # the default tenant's. Put back NOT VALID afterwards: enforced for every new row, the old ones unchecked.
        for table in TABLES:
            await first.execute(f"ALTER TABLE dw.{table} DROP CONSTRAINT {table}_tenant_check")
        for conn in (first, second):
            await conn.execute("SET session_replication_role = replica")
            await conn.execute("SELECT set_config('dw.tenant_id', 'default', false)")
            await conn.execute("SET maintenance_work_mem = '256MB'")

        async def run_steps(conn: psycopg.AsyncConnection[Any], chosen: list[tuple[str, str]]) -> None:
            for what, statement in chosen:
                progress(f"generating {what}")
                started = time.perf_counter()
                await conn.execute(statement)
                timings[what] = time.perf_counter() - started

        started = time.perf_counter()
        await run_steps(first, steps[:3])
        # Node states and attempts on one connection, the events, waits and dead letters on the other.
        await asyncio.gather(run_steps(first, steps[3:5]), run_steps(second, steps[5:]))
        timings["rows (wall)"] = time.perf_counter() - started
        for table in TABLES:
            await first.execute(
                f"ALTER TABLE dw.{table} ADD CONSTRAINT {table}_tenant_check"
                " CHECK (tenant_id ~ '^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$') NOT VALID"
            )
        progress(f"building {len(indexes)} indexes again")
        started = time.perf_counter()

        built: dict[str, float] = {}

        async def build(conn: psycopg.AsyncConnection[Any], definitions: list[str]) -> None:
            for definition in definitions:
                began = time.perf_counter()
                await conn.execute(definition)
                built[definition.split(" ON ")[0].split()[-1]] = time.perf_counter() - began

        definitions = [definition for _, definition in indexes]
        await asyncio.gather(build(first, definitions[0::2]), build(second, definitions[1::2]))
        timings["indexes"] = time.perf_counter() - started
        # Migration 0024's index on a table of this size (what upgrading costs).
        timings["executions_retention_idx"] = built.get("executions_retention_idx", 0.0)
        progress("VACUUM ANALYZE")
        started = time.perf_counter()
        built.clear()
        await asyncio.gather(
            build(first, [f"VACUUM (ANALYZE) dw.{table}" for table in TABLES[0::2]]),
            build(second, [f"VACUUM (ANALYZE) dw.{table}" for table in TABLES[1::2]]),
        )
        timings["vacuum analyze"] = time.perf_counter() - started
        counts = await table_counts(first)
        size = (await (await first.execute("SELECT pg_database_size(current_database())")).fetchone() or [0])[0]
    return {"seconds": timings, "rows": counts, "database_bytes": int(size)}


async def table_counts(conn: psycopg.AsyncConnection[Any]) -> dict[str, int]:
    counts = {}
    for table in TABLES:
        row = await (await conn.execute(f"SELECT count(*) FROM dw.{table}")).fetchone()
        counts[table] = int(row[0]) if row else 0
    return counts


async def event_path(conninfo: str, sizes: Sizes) -> dict[str, Any]:
    """The events of `sample` old runs deleted for real, in six disjoint slices alternating between the guarded
    DELETE the prune does (dw.pruning set: the statement-level check runs) and the same DELETE with triggers off;
    and plain against partitioned single-row INSERTs."""
    results: dict[str, Any] = {}
    async with await psycopg.AsyncConnection.connect(conninfo) as conn:
        ids = [
            row[0]
            for row in await (
                await conn.execute(
                    "SELECT id FROM dw.executions WHERE workflow_id = %s ORDER BY ended_at DESC LIMIT %s",
                    (OLD, sizes.sample),
                )
            ).fetchall()
        ]
        await conn.commit()
        spent = {"guarded": 0.0, "triggers off": 0.0}
        deleted = {"guarded": 0, "triggers off": 0}
        slices = 6
        for index in range(slices):
            mode = "guarded" if index % 2 == 0 else "triggers off"
            setup = (
                "SELECT set_config('dw.pruning', extract(epoch FROM now() - interval '30 days')::text, true)"
                if mode == "guarded"
                else "SET LOCAL session_replication_role = replica"
            )
            await conn.execute(setup)
            started = time.perf_counter()
            cur = await conn.execute(
                "DELETE FROM dw.execution_events WHERE execution_id = ANY(%s)", (ids[index::slices],)
            )
            spent[mode] += time.perf_counter() - started
            deleted[mode] += cur.rowcount
            await conn.commit()
        results["delete"] = {
            "runs": len(ids),
            "events": sum(deleted.values()),
            **{mode: {"seconds": spent[mode], "events_per_second": deleted[mode] / spent[mode]} for mode in spent},
        }
        results["delete"]["guard_overhead"] = (deleted["triggers off"] / spent["triggers off"]) / (
            deleted["guarded"] / spent["guarded"]
        ) - 1
    results["insert"] = await partition_inserts(conninfo, sizes.inserts)
    return results


async def partition_inserts(conninfo: str, count: int) -> dict[str, Any]:
    """Single-row INSERTs into two copies of dw.execution_events: plain, and partitioned by month (13
    partitions, the key in the primary key), alternating every 50."""
    columns = (
        "id bigserial, execution_id uuid NOT NULL, node_id text, type text NOT NULL,"
        " at timestamptz NOT NULL DEFAULT clock_timestamp(), principal text, details jsonb NOT NULL DEFAULT '{}'"
    )
    statements = [
        "CREATE SCHEMA bench_events",
        f"CREATE TABLE bench_events.plain ({columns}, PRIMARY KEY (id))",
        "CREATE INDEX ON bench_events.plain (execution_id, id)",
        f"CREATE TABLE bench_events.partitioned ({columns}, PRIMARY KEY (id, at)) PARTITION BY RANGE (at)",
        "CREATE INDEX ON bench_events.partitioned (execution_id, id)",
    ]
    for month in range(-11, 2):
        statements.append(
            f"CREATE TABLE bench_events.p{month + 11} PARTITION OF bench_events.partitioned FOR VALUES FROM"
            f" (date_trunc('month', now()) + interval '{month} month')"
            f" TO (date_trunc('month', now()) + interval '{month + 1} month')"
        )
    timings: dict[str, list[float]] = {"plain": [], "partitioned": []}
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        for statement in statements:
            await conn.execute(statement)
        try:
            execution = "00000000-0000-0000-0000-000000000001"
            # Transactions of 50 statements, as an engine step writes several rows a commit: what is timed
            # is the statement (routing to a partition included), not the WAL flush of the commit.
            for _ in range(count // 50):
                for table in timings:
                    query = (
                        f"INSERT INTO bench_events.{table} (execution_id, node_id, type, details)"
                        " VALUES (%s, 'echo1', 'node_succeeded', '{\"attempt\": 1}')"
                    )
                    async with conn.transaction():
                        for _ in range(50):
                            started = time.perf_counter_ns()
                            await conn.execute(query, (execution,))
                            timings[table].append((time.perf_counter_ns() - started) / 1000)
        finally:
            await conn.execute("DROP SCHEMA bench_events CASCADE")
    figures = {
        table: {"inserts": len(values), "p50_us": percentile(values, 50), "mean_us": statistics.fmean(values)}
        for table, values in timings.items()
    }
    figures["partitioned_vs_plain_p50"] = figures["partitioned"]["p50_us"] / figures["plain"]["p50_us"]
    return figures


class Workload:
    """Starts of the live workflow at a steady rate; the call's latency per phase."""

    def __init__(self, db: Database, rate: float) -> None:
        self.db = db
        self.interval = 1 / rate
        self.calls: dict[str, list[float]] = {}
        self.phase = "baseline"
        self.count = 0
        self._stop = asyncio.Event()

    async def run(self) -> None:
        next_at = time.perf_counter()
        tasks: set[asyncio.Task[None]] = set()
        while not self._stop.is_set():
            delay = next_at - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            next_at += self.interval
            task = asyncio.create_task(self._one(self.phase, self.count))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            self.count += 1
        await asyncio.gather(*tasks)

    async def _one(self, phase: str, index: int) -> None:
        seconds = await start_one(self.db, LIVE, index)
        self.calls.setdefault(phase, []).append(seconds * 1000)

    def stop(self) -> None:
        self._stop.set()


def latency(values: list[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50_ms": percentile(values, 50),
        "p95_ms": percentile(values, 95),
        "max_ms": max(values) if values else None,
    }


async def run_ends(monitor: Monitor, since: datetime, until: datetime) -> dict[str, Any]:
    """Request -> end of the live runs created in [since, until): server clock."""
    rows = await monitor.rows(
        "SELECT extract(epoch FROM ended_at - created_at)::float8 * 1000, status FROM dw.executions"
        " WHERE workflow_id = %s AND created_at >= %s AND created_at < %s",
        (LIVE, since, until),
    )
    ended = [r[0] for r in rows if r[0] is not None]
    figures = latency(ended)
    figures["not_ended"] = len(rows) - len(ended)
    figures["failed"] = sum(1 for r in rows if r[1] not in (None, "Succeeded"))
    return figures


async def wait_live_ended(monitor: Monitor, limit: float = 60.0) -> None:
    deadline = time.perf_counter() + limit
    while await monitor.value(
        "SELECT count(*) FROM dw.executions WHERE workflow_id = %s AND ended_at IS NULL", (LIVE,)
    ):
        if time.perf_counter() > deadline:
            raise BenchError("the workload's runs did not end")
        await asyncio.sleep(0.2)


async def prune_under_load(
    conninfo: str, monitor: Monitor, sizes: Sizes, workdir: Path, expected: dict[str, int]
) -> dict[str, Any]:
    env = child_env(conninfo) | {"DW_RETENTION_INTERVAL_SECONDS": "0"}
    worker = Subprocess("worker", [*worker_command(), "worker", "--concurrency", "4"], env, workdir / "worker.log")
    results: dict[str, Any] = {}
    await worker.start()
    try:
        async with open_pool(conninfo, 8) as pool:
            db = Database(pool)
            await wait_registered(monitor, worker)
            workload = Workload(db, sizes.workload_rate)
            running = asyncio.create_task(workload.run())
            progress(f"workload: {sizes.workload_rate:g} starts/s, {sizes.baseline_seconds:g} s without pruning")
            base_from = await monitor.value("SELECT now()")
            await asyncio.sleep(sizes.baseline_seconds)
            workload.phase = "prune"
            prune_from = await monitor.value("SELECT now()")
            progress(f"pruning (batches of {sizes.batch} runs) while the workload runs")
            batches: list[float] = []
            last = time.perf_counter()

            def on_batch(pruned: Pruned) -> None:
                nonlocal last
                now = time.perf_counter()
                batches.append(now - last)
                last = now
                if len(batches) % 200 == 0:
                    progress(f"  {len(batches)} batches")

            load_before = os.getloadavg()
            started = time.perf_counter()
            with all_tenants():
                total = await prune_due(db, Prune(default_seconds=30 * DAY, batch=sizes.batch), on_batch=on_batch)
            seconds = time.perf_counter() - started
            load_after = os.getloadavg()
            prune_until = await monitor.value("SELECT now()")
            workload.stop()
            await running
        await wait_live_ended(monitor)
    finally:
        code, _ = await worker.stop()
    if worker.returncode not in (0, None) and code not in (0, None):
        raise BenchError(f"the worker exited with {code}:\n{worker.tail()}")
    results["prune"] = {
        "seconds": seconds,
        "removed": asdict_pruned(total),
        "rows": total.rows,
        "trees_per_second": total.trees / seconds,
        "executions_per_second": total.executions / seconds,
        "rows_per_second": total.rows / seconds,
        "batches": len(batches),
        "batch_seconds": {
            "p50": percentile(batches, 50),
            "p95": percentile(batches, 95),
            "max": max(batches) if batches else None,
        },
        "expected": expected,
        # The machine's 1/5/15-minute load averages as the prune started and ended (other work on the host
        # shows here: the prune itself and the workload take about one core).
        "load_average": {"start": load_before, "end": load_after},
    }
    results["workload"] = {
        "start_call": {phase: latency(values) for phase, values in workload.calls.items()},
        "request_to_end": {
            "baseline": await run_ends(monitor, base_from, prune_from),
            "prune": await run_ends(monitor, prune_from, prune_until),
        },
    }
    return results


def asdict_pruned(pruned: Pruned) -> dict[str, int]:
    return {name: getattr(pruned, name) for name in pruned.__struct_fields__}


async def leftovers(conninfo: str) -> dict[str, Any]:
    """What is left: runs by workflow, and rows whose run is gone (must be 0)."""
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        by_workflow = dict(
            await (
                await conn.execute("SELECT workflow_id, count(*) FROM dw.executions GROUP BY 1 ORDER BY 1")
            ).fetchall()
        )
        orphans = {}
        for table in TABLES[1:]:
            row = await (
                await conn.execute(
                    f"SELECT count(*) FROM dw.{table} t WHERE NOT EXISTS"
                    " (SELECT 1 FROM dw.executions e WHERE e.id = t.execution_id)"
                )
            ).fetchone()
            orphans[table] = int(row[0]) if row else 0
        open_letters = await (
            await conn.execute("SELECT count(*) FROM dw.dead_letters WHERE closed_at IS NULL AND redriven_at IS NULL")
        ).fetchone()
        counts = await table_counts(conn)
        size = (await (await conn.execute("SELECT pg_database_size(current_database())")).fetchone() or [0])[0]
    return {
        "executions_by_workflow": by_workflow,
        "rows_whose_run_is_gone": orphans,
        "open_dead_letters": int(open_letters[0]) if open_letters else 0,
        "rows": counts,
        "database_bytes": int(size),
    }


async def run(args: argparse.Namespace, conninfo: str, description: str, workdir: Path) -> dict[str, Any]:
    n = 50_000 if args.quick and args.executions is None else (args.executions or 1_000_000)
    sizes = Sizes(
        executions=n,
        batch=args.batch_size,
        workload_rate=args.workload_rate,
        baseline_seconds=5.0 if args.quick else args.baseline_seconds,
        sample=min(20_000, n // 2),
        inserts=2_000 if args.quick else 20_000,
    )
    configure_logging("console", "warning")
    progress("applying migrations")
    migrate(conninfo)
    results: dict[str, Any] = {"timestamp": datetime.now(UTC).isoformat(timespec="seconds"), "sizes": asdict(sizes)}
    async with open_pool(conninfo, 2) as pool:
        db = Database(pool)
        for workflow_id in (OLD, CHILD, YOUNG, LIVE):
            await publish(db, echo2_workflow(workflow_id))
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        monitor = Monitor(conn)
        results["machine"] = await machine_info(monitor, description)
        progress(f"generating {n:,} old runs")
        results["generation"] = await generate(conninfo, n)
        progress("the event log's delete path, and plain against partitioned inserts")
        results["event_log"] = await event_path(conninfo, sizes)
        # Roots 12,500, 25,000, ... are Failed with an open letter, and each has a child: those trees stay.
        kept = n // 12_500
        expected = {"trees": n - kept, "executions": n + n // 20 - 2 * kept}
        results.update(await prune_under_load(conninfo, monitor, sizes, workdir, expected))
        results["after"] = await leftovers(conninfo)
    check(results, n)
    return results


def check(results: dict[str, Any], n: int) -> None:
    after, prune = results["after"], results["prune"]
    if any(after["rows_whose_run_is_gone"].values()):
        raise BenchError(f"rows of pruned runs are left: {after['rows_whose_run_is_gone']}")
    left = after["executions_by_workflow"]
    if left.get(YOUNG) != max(n // 100, 1):
        raise BenchError(f"young runs were pruned: {left}")
    removed, expected = prune["removed"], prune["expected"]
    if (removed["trees"], removed["executions"]) != (expected["trees"], expected["executions"]):
        raise BenchError(f"pruned {removed}, expected {expected}")


def print_report(results: dict[str, Any]) -> None:
    generation, prune, workload = results["generation"], results["prune"], results["workload"]
    events = results["event_log"]
    print()
    print(f"generated: {', '.join(f'{k} {v:,}' for k, v in generation['rows'].items())}")
    print(
        f"  in {sum(generation['seconds'][k] for k in ('rows (wall)', 'indexes', 'vacuum analyze')):.0f} s; "
        f"database {generation['database_bytes'] / 2**30:.2f} GiB"
    )
    removed = prune["removed"]
    print(
        f"pruned {removed['trees']:,} trees ({removed['executions']:,} executions, {prune['rows']:,} rows) in "
        f"{prune['seconds']:.1f} s: {prune['executions_per_second']:,.0f} executions/s, "
        f"{prune['rows_per_second']:,.0f} rows/s"
    )
    batch = prune["batch_seconds"]
    print(
        f"  {prune['batches']} batches of {results['sizes']['batch']} runs at most: p50 {fmt(batch['p50'], 3)} s, "
        f"p95 {fmt(batch['p95'], 3)} s, max {fmt(batch['max'], 3)} s"
    )
    load = prune["load_average"]
    print(f"  load average (1 min) at its start / end: {load['start'][0]:.1f} / {load['end'][0]:.1f}")
    for phase in ("baseline", "prune"):
        call = workload["start_call"].get(phase, {})
        ends = workload["request_to_end"][phase]
        print(
            f"workload {phase:8}: start call p50 {fmt(call.get('p50_ms'))} / p95 {fmt(call.get('p95_ms'))} / max "
            f"{fmt(call.get('max_ms'))} ms ({call.get('n', 0)} calls); request -> end p50 {fmt(ends['p50_ms'])} / "
            f"p95 {fmt(ends['p95_ms'])} / max {fmt(ends['max_ms'])} ms, not ended {ends['not_ended']}, "
            f"failed {ends['failed']}"
        )
    delete = events["delete"]
    print(
        f"event log: guarded DELETE {delete['guarded']['events_per_second']:,.0f} events/s, triggers off "
        f"{delete['triggers off']['events_per_second']:,.0f} events/s ({delete['events']:,} events of "
        f"{delete['runs']:,} runs; guard {delete['guard_overhead'] * 100:+.0f}%)"
    )
    insert = events["insert"]
    print(
        f"event INSERT p50: plain {fmt(insert['plain']['p50_us'])} us, partitioned by month "
        f"{fmt(insert['partitioned']['p50_us'])} us ({insert['partitioned_vs_plain_p50']:.2f}x)"
    )
    after = results["after"]
    print(
        f"left: {after['executions_by_workflow']}; rows of pruned runs left: "
        f"{sum(after['rows_whose_run_is_gone'].values())}; database {after['database_bytes'] / 2**30:.2f} GiB "
        "(freed space is reused; VACUUM FULL would return it)"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Pruning a million old executions' history under load.")
    parser.add_argument("--quick", action="store_true", help="50,000 old runs: about a minute")
    parser.add_argument("--executions", "-n", type=int, help="old root runs to generate (default 1,000,000)")
    parser.add_argument(
        "--batch-size", type=int, default=1000, help="runs a prune transaction (default 1000; a larger tree goes alone)"
    )
    parser.add_argument("--workload-rate", type=float, default=5.0, help="workload starts per second (default 5)")
    parser.add_argument("--baseline-seconds", type=float, default=20.0, help="workload before the prune (default 20)")
    parser.add_argument("--total-timeout", type=float, default=1800.0, help="seconds allowed in all (default 1800)")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/retention-*.json")
    args = parser.parse_args(argv)
    if args.executions is not None and args.executions < 100:
        parser.error("--executions must be at least 100")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_main("retention", parse_args(argv), run, print_report)


if __name__ == "__main__":
    sys.exit(main())
