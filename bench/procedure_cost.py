"""What a run costs PostgreSQL: the CPU of the backend that runs a 2-node run's writes, one run after
another on one connection, and optionally the same against another revision's procedures, interleaved.

Run from the repository root:

    .venv/bin/python bench/procedure_cost.py                     # this tree's procedures
    .venv/bin/python bench/procedure_cost.py --against HEAD~3    # and HEAD~3's, interleaved, with the ratio
    .venv/bin/python bench/procedure_cost.py --quick
    .venv/bin/python bench/procedure_cost.py --batch 9          # as a busy worker: fetches and batches of 9

Database as in bench/throughput.py: an embedded PostgreSQL in a temporary directory with DATABASE_URL unset,
else scratch databases on that server. The CPU is read from the backend's process, so the server must run on
this host (the embedded one does).

Each side is a database migrated from this tree, with N runs of the benchmark's 2-node echo workflow started.
A run is the worker's three writes, as the worker sends them (the queries of sql/queries, prepared): the
fetch that takes the job and the lease and starts the first node (dw.fetch_run_jobs_v2, one job), and the two records
(dw.record_attempt_v6), the second ending the run and its job. With --against REV the second side's
procedures are REV's (`git show REV:sql/procedures/*.sql`, run over this tree's schema): it compares
procedure bodies, so REV must have the same migrations and the same procedure signatures as this tree.

With --batch K the runs go as a busy worker's do: K jobs a fetch, and the K runs' first records in one
group-commit batch (the worker's query, dw.record_attempts_v2), their last ones in another; --against REV
then needs REV to have that function.

No worker process, no concurrency, asynchronous commit: the figure is the server's own CPU per run, without
the fsync waits, the scheduling and the contention of a drain. The sides run in alternating chunks of runs
(--chunk), so that a machine whose speed drifts (a VM on a shared host: the same code measured 2x apart in
separate runs here) slows both alike; read the ratio.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg
from psycopg import sql
from psycopg.conninfo import make_conninfo
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from dataworkflows.data.group_commit import encode_record
from dataworkflows.db import Database
from dataworkflows.logs import configure_logging
from dataworkflows.migrations import migrate
from dataworkflows.sqlfiles import QUERIES
from throughput import (
    QUEUE,
    BenchError,
    echo2_workflow,
    fmt,
    open_pool,
    progress,
    publish,
    ratio,
    run_main,
    start_many,
)

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = "bench-procedure-cost"
RUN_TASK = "dw.run_execution"


@dataclass
class Side:
    """One database and the connection that runs its runs; the CPU and time they took."""

    label: str
    conn: psycopg.Connection[dict[str, Any]]
    worker_id: int
    backend: psutil.Process
    runs: int = 0
    backend_seconds: float = 0.0
    wall_seconds: float = 0.0
    client_seconds: float = 0.0
    # The backend's CPU by the worker's call that spent it: "fetch", "first record", "last record".
    phase_seconds: dict[str, float] = field(default_factory=dict)

    def cpu(self) -> float:
        times = self.backend.cpu_times()
        return float(times.user + times.system)

    def charge(self, phase: str, since: float) -> float:
        """Adds the backend's CPU since `since` to `phase`; returns the reading taken now."""
        now = self.cpu()
        self.phase_seconds[phase] = self.phase_seconds.get(phase, 0.0) + now - since
        return now


def git_short(revision: str) -> str | None:
    """The short hash of a revision (None: git does not know it)."""
    found = subprocess.run(["git", "rev-parse", "--short", revision], cwd=ROOT, capture_output=True, text=True)
    if found.returncode != 0:
        return None
    return found.stdout.strip() or None


def procedures_at(revision: str) -> str:
    """The text of every file of sql/procedures at a git revision, in name order (as migrate runs them)."""
    listing = subprocess.run(
        ["git", "ls-tree", "--name-only", f"{revision}:sql/procedures"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    if listing.returncode != 0:
        raise BenchError(f"git cannot list sql/procedures at {revision!r}: {listing.stderr.strip()}")
    texts = []
    for name in sorted(n for n in listing.stdout.split() if n.endswith(".sql")):
        shown = subprocess.run(
            ["git", "show", f"{revision}:sql/procedures/{name}"], cwd=ROOT, capture_output=True, text=True
        )
        if shown.returncode != 0:
            raise BenchError(f"git cannot show sql/procedures/{name} at {revision!r}: {shown.stderr.strip()}")
        texts.append(shown.stdout)
    return "\n".join(texts)


async def prepare(conninfo: str, runs: int, procedures: str | None) -> None:
    """Migrates the database, puts REV's procedures in when given, publishes the workflow and starts the runs."""
    migrate(conninfo)
    if procedures is not None:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(procedures.encode())
    async with open_pool(conninfo, 20) as pool:
        db = Database(pool)
        await publish(db, echo2_workflow(WORKFLOW))
        await start_many(db, WORKFLOW, runs, 100)
    # As a worker does when it starts (dw.analyze_stale_run_tables_v1): the calls' generic plans are
    # made at their first run on the connection, from the statistics of the moment, and without this
    # they were made before autovacuum had analyzed the new rows, differently from side to side
    # (measured: the same procedures at 1.38 and 1.63 ms a run on two such databases).
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("SELECT dw.analyze_stale_run_tables_v1()")


def open_side(label: str, conninfo: str) -> Side:
    conn = psycopg.connect(conninfo, autocommit=True, row_factory=dict_row)
    conn.execute("CHECKPOINT")
    # The server's CPU, not the WAL flush each commit waits for.
    conn.execute("SET synchronous_commit = off")
    worker_id = conn.execute("SELECT worker_id FROM procrastinate_register_worker_v1()").fetchone()["worker_id"]
    # As the worker's pool connections are: the application role (row-level security), the run's tenant.
    conn.execute("SET ROLE dataworkflows_app")
    conn.execute("SELECT set_config('dw.tenant_id', 'default', false)")
    try:
        backend = psutil.Process(conn.info.backend_pid)
        backend.cpu_times()
    except psutil.Error as exc:
        conn.close()
        raise BenchError(f"the server's backend is not readable here ({exc}): run the server on this host") from exc
    return Side(label, conn, worker_id, backend)


def record_params(execution_id: str, token: int, node_id: str, job_id: int, worker_id: int) -> dict[str, Any]:
    at = datetime.now(UTC)
    message = {"message": f"hi from {node_id}"}
    return {
        "id": execution_id,
        "token": token,
        "node_id": node_id,
        "attempt": 1,
        "action_type": "core.echo",
        "attempt_status": "Succeeded",
        "parameters": Jsonb(message),
        "outputs": Jsonb(message),
        "error": None,
        "start_time": at,
        "end_time": at,
        "worker": "bench-procedure-cost",
        "outcome": "succeeded",
        "next_attempt_at": None,
        # echo1's one edge (to echo2, list order) fires; echo2 has none.
        "fired": [True] if node_id == "echo1" else [],
        "resource_links": None,
        "interrupted": False,
        "start_limit": 1,
        "complete": True,
        "job_id": job_id,
        "job_worker_id": worker_id,
    }


def fetch(side: Side, limit: int) -> list[dict[str, Any]]:
    """The worker's fetch (dw.fetch_run_jobs_v2): up to `limit` jobs, each run's lease and first node."""
    return side.conn.execute(
        QUERIES["fetch_run_jobs"],
        {
            "limit": limit,
            "queues": [QUEUE],
            "worker_id": side.worker_id,
            "run_task": RUN_TASK,
            "owner": "bench-procedure-cost",
            "lease_seconds": 60.0,
            "start": True,
        },
        prepare=True,
    ).fetchall()


def one_run(side: Side) -> None:
    """The fetch and the two records of one run; raises BenchError when the procedures answer otherwise."""
    at = side.cpu()
    rows = fetch(side, 1)
    at = side.charge("fetch", at)
    fetched = rows[0] if rows else None
    if fetched is None or fetched["outcome"] != "acquired" or fetched["started"] != ["echo1"]:
        raise BenchError(f"{side.label}: the fetch did not take a run and start echo1: {fetched}")
    execution_id, token, job_id = fetched["args"]["execution_id"], fetched["lease_token"], fetched["id"]
    first = side.conn.execute(
        QUERIES["record_attempt"], record_params(execution_id, token, "echo1", job_id, side.worker_id), prepare=True
    ).fetchall()
    at = side.charge("first record", at)
    if [(r["node_id"], r["status"]) for r in first] != [("echo2", "Running")]:
        raise BenchError(f"{side.label}: echo1's record did not start echo2: {first}")
    last = side.conn.execute(
        QUERIES["record_attempt"], record_params(execution_id, token, "echo2", job_id, side.worker_id), prepare=True
    ).fetchall()
    side.charge("last record", at)
    if not last or last[-1]["node_id"] is not None or not last[-1]["job_finished"]:
        raise BenchError(f"{side.label}: echo2's record did not end the run and its job: {last}")


def batch_document(records: list[dict[str, Any]]) -> str:
    """Records as the worker's group commit sends them (dataworkflows.data.group_commit.encode_record)."""
    encoded = []
    for params in records:
        plain = {k: (v.obj if isinstance(v, Jsonb) else v) for k, v in params.items()}
        plain = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in plain.items()}
        encoded.append(encode_record(plain))
    return (b"[" + b",".join(encoded) + b"]").decode()


def one_batch(side: Side, size: int) -> int:
    """`size` runs as a busy worker makes them: one fetch of `size` jobs, and the runs' first records
    in one group-commit batch (dw.record_attempts_v2, as the worker's query calls it), then their
    last ones in another. Returns the runs done; raises BenchError when the procedures answer otherwise."""
    at = side.cpu()
    runs = sorted((row["args"]["execution_id"], row["lease_token"], row["id"]) for row in fetch(side, size))
    at = side.charge("fetch", at)
    if not runs:
        raise BenchError(f"{side.label}: the fetch found no job, with runs left to make")
    for node, expect, phase in (("echo1", "Running", "first record"), ("echo2", "Succeeded", "last record")):
        document = batch_document(
            [record_params(execution_id, token, node, job_id, side.worker_id) for execution_id, token, job_id in runs]
        )
        at = side.cpu()
        rows = side.conn.execute(QUERIES["record_attempts"], {"records": document}, prepare=True).fetchall()
        side.charge(phase, at)
        if [row for row in rows if row["error_state"]] or sum(row["status"] == expect for row in rows) != len(runs):
            raise BenchError(f"{side.label}: the batch of {node}'s records did not answer {expect}: {rows[:3]}")
    return len(runs)


def run_chunk(side: Side, count: int, batch: int = 1) -> None:
    cpu_before = side.cpu()
    wall_before, client_before = time.perf_counter(), time.process_time()
    done = 0
    while done < count:
        if batch > 1:
            done += one_batch(side, min(batch, count - done))
        else:
            one_run(side)
            done += 1
    side.backend_seconds += side.cpu() - cpu_before
    side.wall_seconds += time.perf_counter() - wall_before
    side.client_seconds += time.process_time() - client_before
    side.runs += count


def side_figures(side: Side) -> dict[str, Any]:
    per_run = 1000.0 / side.runs
    return {
        "runs": side.runs,
        "backend_cpu_ms_per_run": side.backend_seconds * per_run,
        "backend_cpu_ms_per_step": side.backend_seconds * per_run / 2,
        "wall_ms_per_run": side.wall_seconds * per_run,
        "client_cpu_ms_per_run": side.client_seconds * per_run,
        # Read around each call (the clock ticks are coarse: a sum over many calls, not one call's figure).
        "backend_cpu_ms_per_run_by_call": {phase: seconds * per_run for phase, seconds in side.phase_seconds.items()},
    }


async def run(args: argparse.Namespace, conninfo: str, description: str, workdir: Path) -> dict[str, Any]:
    configure_logging("console", "warning")
    revision = None
    procedures = None
    if args.against:
        revision = git_short(args.against) or args.against
        procedures = procedures_at(args.against)
    targets = [("this tree", conninfo, None)]
    other_db = None
    if procedures is not None:
        other_db = f"{psycopg.conninfo.conninfo_to_dict(conninfo).get('dbname', 'dw')}_against"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(other_db)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(other_db)))
        targets.append((f"procedures at {revision}", make_conninfo(conninfo, dbname=other_db), procedures))
    sides: list[Side] = []
    try:
        for label, target, text in targets:
            progress(f"{label}: migrating and starting {args.runs} runs")
            await prepare(target, args.runs, text)
            sides.append(open_side(label, target))
        progress(f"running {args.runs} runs on each side, {args.chunk} at a time, alternating")
        done = 0
        while done < args.runs:
            count = min(args.chunk, args.runs - done)
            # Alternate which side goes first, so that neither always follows the other.
            order = sides if (done // args.chunk) % 2 == 0 else list(reversed(sides))
            for side in order:
                run_chunk(side, count, args.batch)
            done += count
    finally:
        for side in sides:
            side.conn.close()
        if other_db is not None:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(other_db)))
    results: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "database": description,
        "git": git_short("HEAD"),
        "against": revision,
        "runs": args.runs,
        "chunk": args.chunk,
        "batch": args.batch,
        "sides": {side.label: side_figures(side) for side in sides},
    }
    if len(sides) == 2:
        this, other = (results["sides"][side.label] for side in sides)
        results["ratio_this_over_against"] = ratio(this["backend_cpu_ms_per_run"], other["backend_cpu_ms_per_run"])
    return results


def report(results: dict[str, Any]) -> None:
    batched = f", {results['batch']} runs a fetch and a batch" if results.get("batch", 1) > 1 else ""
    what = f"fetch + 2 records of a 2-node run{batched}, one connection"
    print(f"\nPostgreSQL CPU per run ({what}), git {results['git']}")
    print(f"  {'side':32} {'backend CPU ms/run':>19} {'ms/step':>8} {'wall ms/run':>12} {'client CPU ms/run':>18}")
    for label, figures in results["sides"].items():
        print(
            f"  {label:32} {fmt(figures['backend_cpu_ms_per_run'], 3):>19} "
            f"{fmt(figures['backend_cpu_ms_per_step'], 3):>8} {fmt(figures['wall_ms_per_run'], 3):>12} "
            f"{fmt(figures['client_cpu_ms_per_run'], 3):>18}"
        )
    for label, figures in results["sides"].items():
        split = ", ".join(f"{phase} {fmt(ms, 3)}" for phase, ms in figures["backend_cpu_ms_per_run_by_call"].items())
        print(f"  {label}: backend CPU ms/run by call: {split}")
    if "ratio_this_over_against" in results:
        print(f"  {'backend CPU, this tree / against':32} {fmt(results['ratio_this_over_against'], 3):>19}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="PostgreSQL CPU per run of the run procedures, optionally A/B.")
    parser.add_argument("--quick", action="store_true", help="small sizes (300 runs)")
    parser.add_argument("--runs", "-n", type=int, help="runs on each side (default 3000, quick 300)")
    parser.add_argument("--chunk", type=int, default=50, help="runs per side before the other side's (default 50)")
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        help="runs fetched together and recorded in group-commit batches (dw.record_attempts_v2) of this size "
        "(default 1: each run's fetch and records alone, dw.record_attempt_v6)",
    )
    parser.add_argument("--against", help="a git revision whose sql/procedures to compare with this tree's")
    parser.add_argument("--total-timeout", type=float, default=900.0)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    args.runs = args.runs or (300 if args.quick else 3000)
    if min(args.runs, args.chunk, args.batch) < 1:
        parser.error("sizes must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_main("procedure-cost", parse_args(argv), run, report)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
