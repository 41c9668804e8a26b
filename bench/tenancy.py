"""Tenancy benchmark: what row-level security and the per-transaction tenant cost, measured in one run.

Run from the repository root:

    .venv/bin/python bench/tenancy.py            # default sizes: about a minute on 2 cores
    .venv/bin/python bench/tenancy.py --quick    # small sizes: about 30 s

Database as in bench/throughput.py (whose helpers this script uses): an embedded PostgreSQL in a temporary
directory with DATABASE_URL unset, else a scratch database dw_bench_<random> on that server; removed at the end.

* Statement: S reads of one execution by id (db.executions.get, a two-table join) through the engine's data
  layer, three ways, interleaved in rounds: as the login (a superuser: row-level security does not apply) with
  no tenant; as the application role (RLS forced) in one tenant, which the connection's session keeps; as the
  application role alternating two tenants, so that every call first sets the connection's tenant (the worst
  case). Mean and p50/p95 microseconds per call.
* Steps: the same backlog of N executions of a 2-node echo workflow drained by one `dataworkflows worker` at
  concurrency C, twice, in alternating order over R rounds: with DW_DB_ROLE=none (the login's rights: no
  row-level security) and with the default application role. steps/s per drain and the ratio.

Figures are printed as a table and written to bench/results/tenancy-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psycopg

from dataworkflows.db import Database, make_pool
from dataworkflows.logs import configure_logging
from dataworkflows.migrations import migrate
from dataworkflows.tenancy import DEFAULT_TENANT, no_tenant, tenant_scope
from throughput import (
    BenchError,
    Monitor,
    Subprocess,
    child_env,
    echo2_workflow,
    execution_figures,
    fmt,
    open_pool,
    percentile,
    progress,
    publish,
    ratio,
    run_main,
    start_many,
    start_one,
    wait_final,
    worker_command,
)

MODES = ("login (no RLS), no tenant", "app role (RLS), same tenant", "app role (RLS), tenant switches")


async def bench_statement(conninfo: str, reads: int, rounds: int) -> dict[str, Any]:
    """Reads of one execution per mode, interleaved in rounds; microseconds per call."""
    workflow_id = "bench-tenancy-read"
    ids: dict[str, Any] = {}
    async with open_pool(conninfo, 4) as pool:
        db = Database(pool)
        for tenant in (DEFAULT_TENANT, "other"):
            with tenant_scope(tenant):
                await publish(db, echo2_workflow(workflow_id))
                await start_one(db, workflow_id, 0)
                found = await db.executions.page(
                    workflow_id=workflow_id, status=None, after_created=None, after_id=None, limit=1
                )
                if not found:
                    raise BenchError("no execution to read")
                ids[tenant] = found[0].id
    login = make_pool(conninfo, min_size=1, max_size=1, name="bench-login", role=None)
    app = make_pool(conninfo, min_size=1, max_size=1, name="bench-app")
    timings: dict[str, list[float]] = {mode: [] for mode in MODES}
    await login.open(wait=True)
    await app.open(wait=True)
    try:
        setups = [(MODES[0], Database(login), False), (MODES[1], Database(app), False), (MODES[2], Database(app), True)]
        for round_no in range(rounds):
            order = setups if round_no % 2 == 0 else list(reversed(setups))
            for mode, db, switch in order:
                for call in range(reads // rounds):
                    # Switching: every call of another tenant than the connection's last (one more
                    # statement each); else always the default tenant (set once per connection).
                    tenant = ("other" if call % 2 else DEFAULT_TENANT) if switch else DEFAULT_TENANT
                    with tenant_scope(tenant) if mode != MODES[0] else no_tenant():
                        started = time.perf_counter()
                        row = await db.executions.get(ids[tenant])
                        timings[mode].append((time.perf_counter() - started) * 1e6)
                    if row is None:
                        raise BenchError(f"{mode}: the execution was not visible")
    finally:
        await login.close()
        await app.close()
    return {
        mode: {
            "calls": len(values),
            "mean_us": statistics.fmean(values),
            "p50_us": percentile(values, 50),
            "p95_us": percentile(values, 95),
        }
        for mode, values in timings.items()
    }


async def drain(
    conninfo: str, monitor: Monitor, workflow_id: str, args: argparse.Namespace, role: str, workdir: Path
) -> dict[str, Any]:
    """Starts N executions, then drains them with one worker acting as `role`."""
    async with open_pool(conninfo, 20) as pool:
        await start_many(Database(pool), workflow_id, args.executions, 100)
    env = child_env(conninfo) | {"DW_DB_ROLE": role}
    worker = Subprocess(
        f"worker ({role})",
        [*worker_command(), "worker", "--concurrency", str(args.concurrency)],
        env,
        workdir / f"{workflow_id}.log",
    )
    try:
        await worker.start()
        await wait_final(monitor, workflow_id, args.timeout, worker)
    finally:
        await worker.stop()
    figures = await execution_figures(monitor, workflow_id)
    if figures.get("failed"):
        raise BenchError(f"{workflow_id}: {figures['failed']} executions did not succeed")
    return figures


async def run(args: argparse.Namespace, conninfo: str, description: str, workdir: Path) -> dict[str, Any]:
    configure_logging("console", "warning")
    progress("applying migrations")
    migrate(conninfo)
    results: dict[str, Any] = {"machine": description, "executions": args.executions, "rounds": args.rounds}
    progress(f"statement: {args.reads} reads of one execution per mode")
    results["statement"] = await bench_statement(conninfo, args.reads, args.rounds)
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        monitor = Monitor(conn)
        steps: dict[str, list[float]] = {"none": [], "dataworkflows_app": []}
        for round_no in range(args.rounds):
            order = ["none", "dataworkflows_app"] if round_no % 2 == 0 else ["dataworkflows_app", "none"]
            for role in order:
                workflow_id = f"bench-tenancy-{role.replace('_', '-')}-{round_no}"
                async with open_pool(conninfo, 4) as pool:
                    await publish(Database(pool), echo2_workflow(workflow_id))
                progress(f"round {round_no + 1}/{args.rounds}: drain of {args.executions} runs as {role}")
                figures = await drain(conninfo, monitor, workflow_id, args, role, workdir)
                steps[role].append(float(figures["steps_per_second"]))
    results["steps_per_second"] = {role: statistics.fmean(values) for role, values in steps.items()}
    results["steps_per_second_rounds"] = steps
    results["ratio_rls_over_none"] = ratio(
        results["steps_per_second"]["dataworkflows_app"], results["steps_per_second"]["none"]
    )
    return results


def report(results: dict[str, Any]) -> None:
    print("\nTenancy: row-level security and the tenant of each call")
    print(f"  {'statement (execution by id)':42} {'mean us':>9} {'p50 us':>9} {'p95 us':>9}")
    for mode, figures in results["statement"].items():
        print(f"  {mode:42} {fmt(figures['mean_us']):>9} {fmt(figures['p50_us']):>9} {fmt(figures['p95_us']):>9}")
    sps, rounds = results["steps_per_second"], results["steps_per_second_rounds"]
    print(f"  {'steps/s, no RLS (DW_DB_ROLE=none)':42} {fmt(sps['none']):>9}   rounds {rounds['none']}")
    app = "dataworkflows_app"
    print(f"  {'steps/s, RLS (dataworkflows_app)':42} {fmt(sps[app]):>9}   rounds {rounds[app]}")
    print(f"  {'ratio RLS / none':42} {fmt(results['ratio_rls_over_none'], 3):>9}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="The cost of tenancy: RLS per statement and per step.")
    parser.add_argument("--quick", action="store_true", help="small sizes")
    parser.add_argument("--executions", "-n", type=int, help="runs per drain (default 1000, quick 300)")
    parser.add_argument("--reads", type=int, help="reads per statement mode (default 3000, quick 1000)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds (default 2)")
    parser.add_argument("--concurrency", "-c", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds allowed per drain")
    parser.add_argument("--total-timeout", type=float, default=900.0)
    parser.add_argument("--no-save", action="store_true")
    args = parser.parse_args(argv)
    args.executions = args.executions or (300 if args.quick else 1000)
    args.reads = args.reads or (1000 if args.quick else 3000)
    if min(args.executions, args.reads, args.rounds, args.concurrency) < 1:
        parser.error("sizes must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_main("tenancy", parse_args(argv), run, report)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
