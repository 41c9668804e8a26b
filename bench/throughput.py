"""Throughput benchmark: the engine against raw Procrastinate, raw commits and a peer, on one database server.

Run from the repository root:

    .venv/bin/python bench/throughput.py            # default sizes (see the README's Performance section)
    .venv/bin/python bench/throughput.py --quick    # small sizes: a smoke run of every phase
    .venv/bin/python bench/throughput.py --help     # sizes, concurrency, phases to skip
    .venv/bin/python bench/throughput.py --readme README.md --from bench/results/throughput-<ts>.json
                                                    # the README's Performance table from a results file
    .venv/bin/python bench/compare.py A.json B.json # two results files side by side

With DATABASE_URL unset it starts an embedded PostgreSQL in a temporary directory (removed at the end); with
DATABASE_URL set it creates a scratch database dw_bench_<random> on that server and drops it at the end.

What is measured, in one run, on the same server (the modules that measure it):

* Baselines (bench/baselines.py). B, raw commits: M single-row INSERTs in autocommit on one connection, then on
  C connections at once. Pool checkout: the engine's pool (dataworkflows.db.CheckedPool) polls each connection's
  socket before handing it out; a `SELECT 1` through that pool and through a plain psycopg_pool pool.
  A, raw Procrastinate: N no-op jobs deferred in batches, drained by one worker process (bench/noop_worker.py)
  at concurrency C, set up like the engine's worker (same pool, delete_jobs="successful"). jobs/s over first job
  started -> last job ended: the rate every engine figure is divided by.
* Engine (bench/engine_phases.py). Backlog drain: N executions of a 2-node echo workflow started before the
  worker starts, then drained by ONE `dataworkflows worker --concurrency C` process; executions/s and steps/s
  (Succeeded attempt rows) over first execution started -> last execution ended, server clock. Transactions per
  step (pg_stat_database deltas over the drain, minus the benchmark's own statements: engine_phases.py says
  exactly what is in it) and CPU per step of the worker and of the PostgreSQL server's processes (psutil).
  Start latency: a fresh worker listening, L executions started at a steady rate, by default half the measured
  drain capacity; latency = first node's node_states.started_at - executions.created_at; the same again with
  the worker running, then at 0.1 and 0.25 of the drain capacity, then the capacity with starts (N more runs
  started as fast as they go while the worker runs) and the latency at half of that (figures; the targets are
  at half the drain capacity). Fan-out (start -> 50 parallel echo nodes -> join) and chain (20 echo nodes): K
  executions each, started while that worker runs; then B runs of a branching workflow (a lookup template, two
  edge conditions of which one fires, a template with a filter: workloads.branch_workflow), the cost of data in
  a run, as a figure (no target).
  Scale-out: the same backlog drained by 1, 2 and 4 worker processes (concurrency C each), with the CPU split
  between the workers and PostgreSQL. Memory: a worker's RSS with 1,000 executions in flight (concurrency 1,000,
  each holding its lease in a sleeping echo node) and with 100,000 executions parked on a one-day delay.
* Peer (bench/dbos_peer.py, with the optional `bench` extra): DBOS Transact two-step workflows enqueued on a DBOS
  queue, drained by one process at queue concurrency C, in a database of its own on the same server.
* One JavaScript edge condition through dataworkflows.conditions.ConditionPool: mean and p95 microseconds.

Figures, ratios and the issue-17 targets (met / not met) are printed (bench/report.py) and written to
bench/results/throughput-<timestamp>.json, whose schema is stable (report.py: SCHEMA_VERSION).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Awaitable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from baselines import NOOP_QUEUE, bench_commits, bench_conditions, bench_pool_check, bench_procrastinate
from dataworkflows.logs import configure_logging
from dataworkflows.migrations import migrate
from dbos_peer import bench_dbos
from engine_phases import bench_engine, memory
from figures import fmt, percentile, progress, ratio
from harness import (
    BENCH_DIR,
    FINAL,
    QUEUE,
    RESULTS_DIR,
    BenchError,
    CpuSampler,
    Monitor,
    ProcessCpu,
    Subprocess,
    child_env,
    interruptible,
    machine_info,
    open_pool,
    run_main,
    summarize_log,
    worker_command,
)
from report import SCHEMA_VERSION, compute_ratios, evaluate_targets, print_report, readme_table, replace_table
from sizes import Sizes, sizes_from_args
from workloads import (
    chain_workflow,
    echo2_workflow,
    echo_node,
    engine_worker,
    execution_figures,
    publish,
    report_failures,
    start_many,
    start_one,
    wait_final,
    wait_registered,
    wide_workflow,
)

# The other benchmark scripts (waits.py, composition.py, ...) import these from here.
__all__ = [
    "BENCH_DIR",
    "FINAL",
    "NOOP_QUEUE",
    "QUEUE",
    "RESULTS_DIR",
    "BenchError",
    "CpuSampler",
    "Monitor",
    "ProcessCpu",
    "Sizes",
    "Subprocess",
    "chain_workflow",
    "child_env",
    "echo2_workflow",
    "echo_node",
    "engine_worker",
    "execution_figures",
    "fmt",
    "interruptible",
    "machine_info",
    "main",
    "open_pool",
    "percentile",
    "progress",
    "publish",
    "ratio",
    "report_failures",
    "run_main",
    "start_many",
    "start_one",
    "summarize_log",
    "wait_final",
    "wait_registered",
    "wide_workflow",
    "worker_command",
]


async def run(args: argparse.Namespace, conninfo: str, description: str, workdir: Path) -> dict[str, Any]:
    sizes = sizes_from_args(args)
    configure_logging("console", "warning")
    progress("applying migrations")
    migrate(conninfo)
    results: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
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
            progress(f"procrastinate: {sizes.executions} no-op jobs, one worker at concurrency {sizes.concurrency}")
            results["procrastinate"] = await bench_procrastinate(conninfo, monitor, sizes, workdir)
        results["engine"] = await bench_engine(conninfo, monitor, sizes, args, workdir)
        if args.skip_peer:
            results["peer"] = {"dbos": {"skipped": "--skip-peer"}}
        else:
            results["peer"] = {"dbos": await optional("the DBOS peer", bench_dbos(conninfo, monitor, sizes, workdir))}
        if not args.skip_conditions:
            progress(f"conditions: {sizes.condition_evals} sequential evaluations")
            results["conditions"] = await bench_conditions(sizes)
        if not args.skip_memory:  # last: with 100,000 runs to park it is the longest phase
            try:
                results["engine"]["memory"], records = await memory(conninfo, monitor, sizes, workdir)
                results["engine"]["workers"].extend(records)
            except BenchError as exc:
                progress(f"WARNING: the memory phase failed: {exc}")
                results["engine"]["memory"] = {"error": str(exc)}
    results["ratios"] = compute_ratios(results)
    results["targets"] = evaluate_targets(results)
    return results


async def optional(name: str, phase: Awaitable[dict[str, Any]]) -> dict[str, Any]:
    """A phase whose failure is reported in its place, so that the figures measured before it are kept."""
    try:
        return await phase
    except BenchError as exc:
        progress(f"WARNING: {name} failed: {exc}")
        return {"error": str(exc)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Engine throughput against raw Procrastinate, raw commits and a peer.")
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every phase")
    parser.add_argument("--executions", "-n", type=int, help="backlog executions and no-op jobs (default 2000)")
    parser.add_argument(
        "--concurrency", "-c", type=int, help="worker concurrency and connections (default 40, DW_WORKER_CONCURRENCY's)"
    )
    parser.add_argument("--start-batch", type=int, help="executions started concurrently per batch (default 100)")
    parser.add_argument("--latency-executions", type=int, help="executions in the start-latency phase (default 400)")
    parser.add_argument(
        "--latency-interval-ms", type=float, help="ms between latency starts (default: half the drain capacity)"
    )
    parser.add_argument("--commits", type=int, help="single-row commits in baseline B (default 5000)")
    parser.add_argument("--wide-executions", type=int, help="executions of the fan-out workflow (default 200)")
    parser.add_argument("--chain-executions", type=int, help="executions of the 20-node chain (default 500)")
    parser.add_argument(
        "--branch-executions",
        type=int,
        help="executions of the branching workflow, templates and conditions (default 1000)",
    )
    parser.add_argument("--condition-evals", type=int, help="sequential JS condition evaluations (default 2000)")
    parser.add_argument("--scale-executions", type=int, help="backlog of each scale-out point (default: -n)")
    parser.add_argument(
        "--scale-workers", type=int, nargs="+", help="worker processes of the scale-out points (default 1 2 4)"
    )
    parser.add_argument("--inflight", type=int, help="executions in flight in the memory phase (default 1000)")
    parser.add_argument("--waiting", type=int, help="executions parked in the memory phase (default 100000)")
    parser.add_argument(
        "--waiting-timeout",
        type=float,
        default=900.0,
        help="seconds to start and park them; past it, the figure is taken with those parked (default 900)",
    )
    parser.add_argument("--dbos-executions", type=int, help="DBOS two-step workflows (default: -n)")
    parser.add_argument("--dbos-timeout", type=float, default=120.0, help="seconds allowed to DBOS (default 120)")
    parser.add_argument("--dbos-polling-ms", type=float, default=10.0, help="DBOS queue polling interval (default 10)")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds allowed per phase (default 240)")
    parser.add_argument("--total-timeout", type=float, default=2400.0, help="seconds allowed in all (default 2400)")
    parser.add_argument("--skip-baselines", action="store_true", help="engine only: no commits/procrastinate phases")
    parser.add_argument(
        "--skip-unbatched",
        action="store_true",
        help="no further 2-node drains with group commit off, and with one job a fetch",
    )
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument(
        "--cold-client",
        action="store_true",
        help="start latency with the benchmark's start client cold, as before schema version 7 (no warm_client)",
    )
    parser.add_argument("--skip-wide", action="store_true")
    parser.add_argument("--skip-branch", action="store_true")
    parser.add_argument("--skip-chain", action="store_true")
    parser.add_argument("--skip-scale", action="store_true", help="no scale-out (1, 2, 4 workers)")
    parser.add_argument("--skip-memory", action="store_true", help="no in-flight / waiting memory phase")
    parser.add_argument("--skip-peer", action="store_true", help="no DBOS peer, even if installed")
    parser.add_argument("--skip-conditions", action="store_true")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/throughput-*.json")
    parser.add_argument(
        "--readme", type=Path, help="replace the README's <!-- perf:table --> block with this run's table"
    )
    parser.add_argument(
        "--from", dest="from_file", type=Path, help="with --readme: take the figures from this results file, no run"
    )
    args = parser.parse_args(argv)
    for name in ("executions", "concurrency", "start_batch", "latency_executions", "commits", "condition_evals"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("scale_executions", "inflight", "waiting", "dbos_executions"):
        value = getattr(args, name)
        if value is not None and value < 0:
            parser.error(f"--{name.replace('_', '-')} must not be negative")
    if args.from_file is not None and args.readme is None:
        parser.error("--from goes with --readme")
    return args


def update_readme(readme: Path, results: dict[str, Any]) -> None:
    readme.write_text(replace_table(readme.read_text(), readme_table(results)))
    print(f"the Performance table in {readme} regenerated from the run of {results['timestamp']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_file is not None:
        update_readme(args.readme, json.loads(args.from_file.read_text()))
        return 0

    def report(results: dict[str, Any]) -> None:
        print_report(results)
        if args.readme is not None:
            update_readme(args.readme, results)

    return run_main("throughput", args, run, report)


if __name__ == "__main__":
    sys.exit(main())
