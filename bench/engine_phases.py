"""The engine's phases of bench/throughput.py: the 2-node backlog drain, start latency, the 1 -> 50 -> 1 fan-out
and the 20-node chain, scale-out over 1, 2 and 4 worker processes, and a worker's memory with runs in flight
and with runs waiting.

How "transactions per step" is counted (engine.drain.transactions_per_step, and per scale-out point):
pg_stat_database's xact_commit + xact_rollback of the bench database, read before the worker starts and
again after it has exited (a backend flushes its counters lazily, at the latest as it exits; the reading
connection forces its own flush), minus the statements of the benchmark's own monitoring connection in that
window (it polls progress every 0.1 s; each statement is one transaction, counted by Monitor). What remains is
the worker's transactions, over its whole life: start-up (registration, LISTEN) and shutdown are in it (a few
dozen against thousands of steps), and so is every wake-up of a LISTENing backend by a NOTIFY (PostgreSQL
runs one transaction to read the notification queue), and any autovacuum/analyze of the bench database's
tables in the window. It is divided by the Succeeded attempt rows (steps). No start is in the window: the
backlog is started before, through a pool closed before the first reading.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import psutil

from baselines import bare_queue_latency
from dataworkflows.db import Database
from figures import percentile, progress, ratio, spread
from harness import (
    BenchError,
    Monitor,
    ProcessCpu,
    Subprocess,
    open_pool,
    postmaster_pid,
    rss_bytes,
    summarize_log,
    usable_cores,
)
from sizes import Sizes
from workloads import (
    branch_workflow,
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
    warm_client,
    wide_workflow,
)

DRAIN_ID, LATENCY_ID, WIDE_ID, CHAIN_ID = "bench-echo2", "bench-echo2-latency", "bench-wide", "bench-chain"
BRANCH_ID = "bench-branch"
# The same 2-node workflow, started as fast as the client goes while the worker runs (capacity_with_starts).
WITH_STARTS_ID = "bench-echo2-with-starts"
# The same 2-node workflow, drained by a worker that writes each record in a transaction of its own.
UNBATCHED_ID = "bench-echo2-unbatched"
# What that worker sets: group commit off (dataworkflows.data.group_commit).
UNBATCHED = {"DW_WORKER_GROUP_COMMIT": "1"}
# The same again, drained by a worker that fetches one job a transaction, as Procrastinate does.
ONE_FETCH_ID = "bench-echo2-one-fetch"
ONE_FETCH = {"DW_WORKER_FETCH_BATCH": "1"}
HOLD_ID, PARK_ID = "bench-hold", "bench-park"


def pool_size(sizes: Sizes) -> int:
    return max(sizes.start_batch // 5, 10)


def hold_workflow(workflow_id: str, hold_ms: int) -> dict[str, Any]:
    """One echo node that sleeps `hold_ms` in the worker: an execution in flight, holding its lease."""
    node = echo_node("hold")
    node["parameters"]["delayMs"] = hold_ms
    return {"id": workflow_id, "displayName": "Bench: held in flight", "startNode": "hold", "nodes": [node]}


def park_workflow(workflow_id: str) -> dict[str, Any]:
    """A delay of a day, then an echo: the worker takes the run once and parks it (rows only)."""
    return {
        "id": workflow_id,
        "displayName": "Bench: parked on a delay",
        "startNode": "nap",
        "nodes": [
            {"id": "nap", "nodeType": "delay", "parameters": {"duration": "P1D"}, "edges": [{"targetNode": "echo"}]},
            echo_node("echo", []),
        ],
    }


async def publish_all(conninfo: str, sizes: Sizes) -> None:
    async with open_pool(conninfo, pool_size(sizes)) as pool:
        db = Database(pool)
        await publish(db, echo2_workflow(DRAIN_ID))
        await publish(db, echo2_workflow(UNBATCHED_ID))
        await publish(db, echo2_workflow(ONE_FETCH_ID))
        await publish(db, echo2_workflow(LATENCY_ID))
        await publish(db, echo2_workflow(WITH_STARTS_ID))
        await publish(db, wide_workflow(WIDE_ID, sizes.wide_fanout))
        await publish(db, chain_workflow(CHAIN_ID, sizes.chain_length))
        await publish(db, branch_workflow(BRANCH_ID))
        await publish(db, hold_workflow(HOLD_ID, sizes.inflight_hold_ms))
        await publish(db, park_workflow(PARK_ID))


async def start_backlog(conninfo: str, sizes: Sizes, workflow_id: str, count: int) -> dict[str, Any]:
    """`count` executions started with no worker running, through a pool closed afterwards (its backends'
    statistics are flushed before a transaction count starts)."""
    async with open_pool(conninfo, pool_size(sizes)) as pool:
        seconds = await start_many(Database(pool), workflow_id, count, sizes.start_batch)
    return {"executions": count, "seconds": seconds, "starts_per_second": count / seconds}


async def drain_with_workers(
    conninfo: str,
    monitor: Monitor,
    sizes: Sizes,
    workflow_id: str,
    worker_count: int,
    workdir: Path,
    label: str,
    settings: Mapping[str, str] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Drains a backlog already started with `worker_count` worker processes (concurrency C each; `settings`:
    DW_ variables of theirs), stopped afterwards. Returns the figures (execution_figures + transactions + CPU)
    and the workers' exit records."""
    await monitor.checkpoint()
    before = await monitor.transactions()
    workers = [
        engine_worker(conninfo, sizes.concurrency, workdir / f"engine-worker-{label}-{i}.log", settings)
        for i in range(worker_count)
    ]
    exits: list[dict[str, Any]] = []
    try:
        for worker in workers:
            await worker.start()
        pids = [w.process.pid for w in workers if w.process is not None]
        cpu = ProcessCpu(pids, await postmaster_pid(monitor))
        await wait_final(monitor, workflow_id, sizes.phase_timeout, workers[0], cpu=cpu)
        for worker in workers[1:]:
            if worker.returncode is not None:
                raise BenchError(f"a worker exited (code {worker.returncode}) during {label}")
        wall = time.perf_counter() - workers[0].spawned_at
        figures = await execution_figures(monitor, workflow_id)
        usage = cpu.result(figures["span_seconds"])
    finally:
        stopped = await asyncio.gather(*(worker.stop() for worker in workers))
        for worker, (code, stop_seconds) in zip(workers, stopped, strict=True):
            exits.append(
                {"phase": label, "exit_code": code, "stop_seconds": stop_seconds, "log": summarize_log(worker.log_path)}
            )
    after = await monitor.transactions()
    report_failures(label, figures)
    transactions = Monitor.transactions_between(before, after)
    steps = figures["steps"]
    figures.update(
        workers=worker_count,
        concurrency_per_worker=sizes.concurrency,
        wall_seconds_from_spawn=wall,
        transactions=transactions,
        transactions_per_execution=ratio(transactions, figures["executions"]),
        transactions_per_step=ratio(transactions, steps),
        cpu=usage,
        cpu_ms_per_step={
            "worker": ratio(usage["worker_cpu_seconds"] * 1000, steps),
            "postgres": ratio(usage["postgres_cpu_seconds"] * 1000, steps),
        },
    )
    return figures, exits


async def engine_latency(
    db: Database, monitor: Monitor, sizes: Sizes, workflow_id: str, worker: Subprocess, capacity: float | None
) -> dict[str, Any]:
    """Executions started at a steady rate while the worker is listening: request -> first node running.

    Unless --latency-interval-ms is given, the offered load is half the measured drain capacity (the 2-node
    backlog's executions/s with one worker: one start every 2 / capacity seconds, at most one a millisecond),
    so that the figure is the pick-up path, not queueing behind a backlog.

    The worker is fresh (started for these phases), so these starts include its cold start (each pooled
    connection's first calls compile and plan the procedures). The benchmark's start client is not: its
    connections are open and have planned the start call before (warm_client, since schema version 7). The same
    number of starts again, at the same pace once those have ended, measure a worker that has been running:
    `running_start_to_first_node_ms`. Then, the worker still running, figures besides the targets: the latency
    at lower loads (latency_at_loads), the capacity with the starts counted (capacity_with_starts), and the
    latency at half of that (`at_half_capacity_with_starts`)."""
    count = sizes.latency_executions
    if sizes.latency_interval_ms is not None:
        interval = sizes.latency_interval_ms / 1000
    else:
        interval = max(0.001, 2 / capacity) if capacity else 0.02
    progress(f"engine: start latency, {count} executions one every {interval * 1000:.1f} ms")
    answered: dict[int, float] = {}
    postmaster = await postmaster_pid(monitor)
    call_seconds, offered, fresh_cpu = await paced_phase(
        db, monitor, sizes, workflow_id, worker, range(count), interval, answered, postmaster
    )
    progress(f"engine: start latency, running worker: {count} more executions at the same pace")
    _, _, running_cpu = await paced_phase(
        db, monitor, sizes, workflow_id, worker, range(count, 2 * count), interval, answered, postmaster
    )
    at_load = await latency_at_loads(db, monitor, sizes, workflow_id, worker, capacity, postmaster, 2 * count)
    with_starts: dict[str, Any] | None = None
    at_half_with_starts: dict[str, Any] | None = None
    if capacity and sizes.latency_interval_ms is None:
        with_starts = await capacity_with_starts(db, monitor, sizes, worker, capacity, postmaster)
        if with_starts["executions_per_second"]:
            at_half_with_starts = await latency_point(
                db,
                monitor,
                sizes,
                workflow_id,
                worker,
                capacity,
                postmaster,
                (2 + len(sizes.latency_loads)) * count,
                with_starts["executions_per_second"] / 2 / capacity,
                " (half the capacity with starts)",
            )
    rows = await monitor.rows(
        "SELECT extract(epoch FROM n.started_at - e.created_at)::float8,"
        " extract(epoch FROM e.ended_at - e.created_at)::float8,"
        " (e.trigger ->> 'index')::int >= %s, (e.trigger ->> 'index')::int, extract(epoch FROM n.started_at)::float8"
        " FROM dw.executions e JOIN dw.node_states n ON n.execution_id = e.id AND n.position = 0"
        " WHERE e.workflow_id = %s AND (e.trigger ->> 'index')::int < %s",
        (count, workflow_id, 2 * count),
    )
    first_node = [r[0] * 1000 for r in rows if r[0] is not None and not r[2]]
    end_to_end = [r[1] * 1000 for r in rows if r[1] is not None and not r[2]]
    running = [r[0] * 1000 for r in rows if r[0] is not None and r[2]]
    # From the start call's answer (its commit came before) to the first node's start: the worker's
    # pick-up without the start's own transaction. Negative when the worker started the node before
    # the benchmark process had read the answer. Same clock: the server runs on this host.
    after_answer: dict[bool, list[float]] = {False: [], True: []}
    for r in rows:
        if r[4] is not None and r[3] in answered:
            after_answer[bool(r[2])].append((r[4] - answered[r[3]]) * 1000)
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
        "start_to_first_node_ms": spread(first_node),
        "start_to_end_ms": {"p50": percentile(end_to_end, 50), "p95": percentile(end_to_end, 95)},
        "running_start_to_first_node_ms": spread(running),
        "start_call_ms": {"p50": percentile(calls, 50), "p95": percentile(calls, 95)},
        "answer_to_first_node_ms": {
            "p50": percentile(after_answer[False], 50),
            "p95": percentile(after_answer[False], 95),
        },
        "running_answer_to_first_node_ms": {
            "p50": percentile(after_answer[True], 50),
            "p95": percentile(after_answer[True], 95),
        },
        "cpu": {"fresh": fresh_cpu, "running": running_cpu},
        "at_load": at_load,
        "capacity_with_starts": with_starts,
        "at_half_capacity_with_starts": at_half_with_starts,
    }


def load_key(share: float) -> str:
    """engine.latency.at_load's key for an offered load: 0.1 -> "10pct" (a dotted path cannot hold "0.1")."""
    return f"{round(share * 100):d}pct"


async def latency_at_loads(
    db: Database,
    monitor: Monitor,
    sizes: Sizes,
    workflow_id: str,
    worker: Subprocess,
    capacity: float | None,
    postmaster: int | None,
    first_index: int,
) -> dict[str, Any]:
    """The start latency again at lower offered loads (sizes.latency_loads: shares of the drain capacity), the
    same number of starts each, with the worker of the halves before (running): where the latency stands when
    the machine is not near full. The targets stay at half the drain capacity; these are figures. Empty when
    the pace was given (--latency-interval-ms) or no capacity was measured."""
    if not capacity or sizes.latency_interval_ms is not None:
        return {}
    count = sizes.latency_executions
    return {
        load_key(share): await latency_point(
            db, monitor, sizes, workflow_id, worker, capacity, postmaster, first_index + n * count, share
        )
        for n, share in enumerate(sorted(sizes.latency_loads))
    }


async def latency_point(
    db: Database,
    monitor: Monitor,
    sizes: Sizes,
    workflow_id: str,
    worker: Subprocess,
    capacity: float,
    postmaster: int | None,
    first: int,
    share: float,
    label: str = "",
) -> dict[str, Any]:
    """sizes.latency_executions starts (trigger indexes from `first`) at `share` of the drain capacity, the worker
    running: one of engine.latency.at_load's points (and at_half_capacity_with_starts)."""
    count = sizes.latency_executions
    interval = max(0.001, 1 / (share * capacity))
    progress(
        f"engine: start latency at {share:.2f} of drain capacity{label}: {count} executions one every"
        f" {interval * 1000:.1f} ms"
    )
    _, offered, cpu = await paced_phase(
        db, monitor, sizes, workflow_id, worker, range(first, first + count), interval, {}, postmaster
    )
    rows = await monitor.rows(
        "SELECT extract(epoch FROM n.started_at - e.created_at)::float8 * 1000"
        " FROM dw.executions e JOIN dw.node_states n ON n.execution_id = e.id AND n.position = 0"
        " WHERE e.workflow_id = %s AND (e.trigger ->> 'index')::int >= %s AND (e.trigger ->> 'index')::int < %s",
        (workflow_id, first, first + count),
    )
    latencies = [r[0] for r in rows if r[0] is not None]
    rate = count / offered
    return {
        "share_of_drain_capacity": share,
        "executions": count,
        "interval_ms": interval * 1000,
        "offered_rate_per_second": rate,
        "offered_load_vs_drain_capacity": ratio(rate, capacity),
        "start_to_first_node_ms": spread(latencies),
        "cpu": cpu,
    }


async def capacity_with_starts(
    db: Database, monitor: Monitor, sizes: Sizes, worker: Subprocess, capacity: float, postmaster: int | None
) -> dict[str, Any]:
    """The 2-node runs a second the machine completes when it also starts them: sizes.executions runs of a
    workflow of their own started as fast as the benchmark's client goes (start_many, as the backlog's), the
    worker running, from the first start to the last run's end (server clock). The drain capacity that sets the
    latency phase's pace leaves the starts out (its backlog is started before the worker comes), yet a start
    costs about as much CPU as the run it starts: here they share the machine, as an API's starts and the
    workers do. A figure for reading the latency targets; half of it is where at_half_capacity_with_starts is
    measured."""
    count = sizes.executions
    progress(f"engine: capacity with starts: {count} executions started as fast as they go while the worker runs")
    cpu = ProcessCpu([worker.process.pid] if worker.process is not None else [], postmaster)
    cpu.mark()
    client_before, began = own_cpu_seconds(), time.perf_counter()
    start_seconds = await start_many(db, WITH_STARTS_ID, count, sizes.start_batch)
    await wait_final(monitor, WITH_STARTS_ID, sizes.phase_timeout, worker, interval=0.05, cpu=cpu)
    usage = machine_usage(cpu, began, client_before, count)
    span = await monitor.value(
        "SELECT extract(epoch FROM max(ended_at) - min(created_at))::float8 FROM dw.executions WHERE workflow_id = %s",
        (WITH_STARTS_ID,),
    )
    figures = await execution_figures(monitor, WITH_STARTS_ID)
    report_failures("capacity with starts", figures)
    rate = ratio(figures["executions"], span)
    return {
        "executions": figures["executions"],
        "start_seconds": start_seconds,
        "span_seconds": span,
        "executions_per_second": rate,
        "steps_per_second": ratio(figures["steps"], span),
        "share_of_drain_capacity": ratio(rate, capacity),
        "all_succeeded": figures["all_succeeded"],
        "statuses": figures["statuses"],
        "cpu": usage,
    }


def own_cpu_seconds() -> float:
    """This process's CPU seconds so far (user + system): the start client's, and the monitor's polls."""
    return float(sum(psutil.Process().cpu_times()[:2]))


def machine_usage(cpu: ProcessCpu, began: float, client_before: float, executions: int) -> dict[str, Any]:
    """What the machine's CPUs did from `began` (time.perf_counter()) until now: ProcessCpu's figures and this
    process's (own_cpu_seconds() was `client_before` then); cores busy in each, their sum as a share of the
    machine's cores, and PostgreSQL's and the worker's CPU per execution."""
    seconds = time.perf_counter() - began
    client_seconds = own_cpu_seconds() - client_before
    usage = cpu.result(seconds)
    machine = usable_cores() or os.cpu_count()
    busy = usage["worker_cpu_seconds"] + usage["postgres_cpu_seconds"] + client_seconds
    usage.update(
        seconds=seconds,
        client_cpu_seconds=client_seconds,
        client_cores=ratio(client_seconds, seconds),
        machine_cores=machine,
        busy_share_of_machine=ratio(busy, seconds * machine) if machine else None,
        postgres_cpu_ms_per_execution=ratio(usage["postgres_cpu_seconds"] * 1000, executions),
        worker_cpu_ms_per_execution=ratio(usage["worker_cpu_seconds"] * 1000, executions),
    )
    return usage


async def paced_phase(
    db: Database,
    monitor: Monitor,
    sizes: Sizes,
    workflow_id: str,
    worker: Subprocess,
    indexes: range,
    interval: float,
    answered: dict[int, float],
    postmaster: int | None,
) -> tuple[list[float], float, dict[str, Any]]:
    """One half of the latency phase: the paced starts (paced_starts), then until all of them have ended.
    Returns the start calls' seconds, the seconds the starts took, and what the machine's CPUs did from the
    first start to the last run's end: cores busy in the worker (its helpers included), in PostgreSQL's
    processes and in this process (the start client, and the monitor's polls); their sum as a share of the
    machine's cores; PostgreSQL's and the worker's CPU per execution (its start included). (Not transactions:
    the worker's and the client's backends stay connected, and an idle backend reports its counts to
    pg_stat_database up to 10 s late.)"""
    pids = [worker.process.pid] if worker.process is not None else []
    cpu = ProcessCpu(pids, postmaster)
    cpu.mark()
    client_before, began = own_cpu_seconds(), time.perf_counter()
    call_seconds = await paced_starts(db, workflow_id, indexes, interval, answered)
    offered = time.perf_counter() - began
    await wait_final(monitor, workflow_id, sizes.phase_timeout, worker, interval=0.05, cpu=cpu)
    usage = machine_usage(cpu, began, client_before, len(indexes))
    return call_seconds, offered, usage


async def paced_starts(
    db: Database, workflow_id: str, indexes: range, interval: float, answered: dict[int, float]
) -> list[float]:
    """Starts one execution per index (its trigger's `index`), one every `interval` seconds, without waiting
    for a start's answer before the next; returns each start call's seconds, and puts in `answered` when
    (epoch seconds) each call's answer came."""

    async def timed(index: int) -> float:
        seconds = await start_one(db, workflow_id, index)
        answered[index] = time.time()
        return seconds

    began = time.perf_counter()
    tasks: list[asyncio.Task[float]] = []
    for n, index in enumerate(indexes):
        delay = began + n * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(timed(index)))
    return list(await asyncio.gather(*tasks))


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


async def live_phases(
    conninfo: str, monitor: Monitor, sizes: Sizes, args: argparse.Namespace, workdir: Path, capacity: float | None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Start latency, fan-out, chain and branch, with one fresh worker listening while the executions are started."""
    results: dict[str, Any] = {}
    worker = engine_worker(conninfo, sizes.concurrency, workdir / "engine-worker-rest.log")
    try:
        await worker.start()
        size = pool_size(sizes)
        async with open_pool(conninfo, size, min_size=2 if args.cold_client else size) as pool:
            db = Database(pool)
            await wait_registered(monitor, worker)
            if not args.skip_latency:
                # The start client warm, as an API's that has been serving (see warm_client); the worker fresh.
                warm_up = None if args.cold_client else await warm_client(db, size, LATENCY_ID)
                results["latency"] = await engine_latency(db, monitor, sizes, LATENCY_ID, worker, capacity)
                results["latency"]["client_warm_up"] = warm_up
            if not args.skip_wide:
                progress(f"engine: wide, {sizes.wide_executions} executions of {sizes.wide_fanout + 2} nodes")
                results["wide"] = await engine_batch(db, monitor, sizes, WIDE_ID, sizes.wide_executions, worker)
            if not args.skip_chain:
                progress(f"engine: chain, {sizes.chain_executions} executions of {sizes.chain_length} nodes")
                results["chain"] = await engine_batch(db, monitor, sizes, CHAIN_ID, sizes.chain_executions, worker)
            if not getattr(args, "skip_branch", False) and sizes.branch_executions:
                progress(f"engine: branch, {sizes.branch_executions} executions (templates, edge conditions)")
                results["branch"] = await engine_batch(db, monitor, sizes, BRANCH_ID, sizes.branch_executions, worker)
    finally:
        code, stop_seconds = await worker.stop()
    record = {"phase": "latency/wide/chain/branch", "exit_code": code, "stop_seconds": stop_seconds}
    return results, {**record, "log": summarize_log(worker.log_path)}


async def scale_out(
    conninfo: str, monitor: Monitor, sizes: Sizes, workdir: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The same 2-node backlog (S executions, a workflow of its own per point) drained by 1, 2 and 4 worker
    processes of concurrency C each: steps/s, transactions per step, and the CPU split between the workers
    and PostgreSQL over the drain window."""
    points: list[dict[str, Any]] = []
    exits: list[dict[str, Any]] = []
    for count in sizes.scale_workers:
        workflow_id = f"bench-scale-{count}w"
        async with open_pool(conninfo, pool_size(sizes)) as pool:
            await publish(Database(pool), echo2_workflow(workflow_id))
        progress(f"engine: scale-out, {sizes.scale_executions} executions drained by {count} worker(s)")
        await start_backlog(conninfo, sizes, workflow_id, sizes.scale_executions)
        figures, records = await drain_with_workers(
            conninfo, monitor, sizes, workflow_id, count, workdir, f"scale-{count}w"
        )
        exits.extend(records)
        cpu = figures["cpu"]
        busy = (cpu["worker_cpu_seconds"] or 0.0) + (cpu["postgres_cpu_seconds"] or 0.0)
        points.append(
            {
                "workers": count,
                "concurrency_per_worker": sizes.concurrency,
                "executions": figures["executions"],
                "steps": figures["steps"],
                "span_seconds": figures["span_seconds"],
                "steps_per_second": figures["steps_per_second"],
                "executions_per_second": figures["executions_per_second"],
                "all_succeeded": figures["all_succeeded"],
                "transactions_per_step": figures["transactions_per_step"],
                "cpu": cpu,
                "cpu_ms_per_step": figures["cpu_ms_per_step"],
                # Of the CPU the run used (workers + PostgreSQL), the share PostgreSQL took.
                "postgres_share_of_cpu": ratio(cpu["postgres_cpu_seconds"], busy),
            }
        )
    one = next((p for p in points if p["workers"] == 1), None)
    for point in points:
        point["speedup_vs_1_worker"] = ratio(point["steps_per_second"], one["steps_per_second"] if one else None)
    return {"points": points, "model": cpu_model(one["cpu_ms_per_step"] if one else {})}, exits


def cpu_model(per_step: dict[str, float | None]) -> dict[str, float | None]:
    """Where the ceiling is, from the CPU one step costs (the 1-worker point: the least contended):
    * a worker process is one Python process, so at most 1000 / worker_ms steps/s (one core);
    * PostgreSQL needs postgres_ms per step, so one PostgreSQL core carries 1000 / postgres_ms steps/s;
    * a worker running flat out keeps postgres_ms / worker_ms PostgreSQL cores busy: one more PostgreSQL core
      per worker_ms / postgres_ms workers;
    * with every core shared (this machine: workers and PostgreSQL on the same cores), the machine's ceiling is
      cores * 1000 / (worker_ms + postgres_ms) steps/s."""
    worker, server = per_step.get("worker"), per_step.get("postgres")
    cores = os.cpu_count() or 1
    return {
        "worker_ms_per_step": worker,
        "postgres_ms_per_step": server,
        "steps_per_s_per_worker_core": ratio(1000.0, worker),
        "steps_per_s_per_postgres_core": ratio(1000.0, server),
        "workers_per_postgres_core": ratio(worker, server),
        "cores": cores,
        "shared_cores_ceiling_steps_per_s": ratio(cores * 1000.0, (worker or 0) + (server or 0)) if worker else None,
    }


async def wait_count(
    monitor: Monitor,
    workflow_id: str,
    status: str,
    target: int,
    worker: Subprocess,
    limit_seconds: float,
    *,
    partial: bool = False,
) -> tuple[int, float]:
    """Until `target` executions of the workflow have `status`: (how many have it, seconds waited). Past
    `limit_seconds` it raises, or with `partial` returns what it reached."""
    started = time.perf_counter()
    while True:
        count = int(
            await monitor.value(
                "SELECT count(*) FROM dw.executions WHERE workflow_id = %s AND status = %s", (workflow_id, status)
            )
        )
        waited = time.perf_counter() - started
        if count >= target:
            return count, waited
        if worker.returncode is not None:
            raise BenchError(f"the worker exited (code {worker.returncode}) with {count} of {target} {status}")
        if waited > limit_seconds:
            if partial:
                return count, waited
            raise BenchError(f"only {count} of {target} executions of {workflow_id} {status} after {limit_seconds:g}s")
        await asyncio.sleep(0.5 if partial else 0.2)


async def memory(
    conninfo: str, monitor: Monitor, sizes: Sizes, workdir: Path
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """A worker's resident memory (psutil RSS of the worker process; helper processes apart):
    * idle, once registered;
    * with `inflight` executions in flight at once: a worker of concurrency `inflight`, each execution
      holding its lease while its one echo node sleeps `inflight_hold_ms`;
    * with `waiting` executions parked on a one-day delay (rows only: no lease, no slot), measured on the
      worker that parked them all, once they are parked; past --waiting-timeout, with those parked by then
      (`executions` is how many were parked, `timed_out` says so)."""
    results: dict[str, Any] = {}
    exits: list[dict[str, Any]] = []
    mib = 1024 * 1024

    if sizes.inflight:
        worker = engine_worker(conninfo, sizes.inflight, workdir / "engine-worker-inflight.log")
        try:
            await worker.start()
            assert worker.process is not None
            await wait_registered(monitor, worker)
            idle = rss_bytes(worker.process.pid)
            progress(
                f"engine: memory, {sizes.inflight} executions in flight (echo sleeping {sizes.inflight_hold_ms} ms)"
            )
            async with open_pool(conninfo, pool_size(sizes)) as pool:
                await start_many(Database(pool), HOLD_ID, sizes.inflight, sizes.start_batch)
            # Measured once all are Running, or (a slow machine) with those Running when the first ones
            # are about to finish their sleep.
            limit = sizes.inflight_hold_ms / 1000 * 0.8
            running, seconds = await wait_count(
                monitor, HOLD_ID, "Running", sizes.inflight, worker, limit, partial=True
            )
            held = rss_bytes(worker.process.pid)
            await wait_final(monitor, HOLD_ID, sizes.phase_timeout, worker)
            after = rss_bytes(worker.process.pid)
            figures = await execution_figures(monitor, HOLD_ID)
            report_failures("in flight", figures)
        finally:
            code, stop_seconds = await worker.stop()
            exits.append(
                {
                    "phase": "memory: in flight",
                    "exit_code": code,
                    "stop_seconds": stop_seconds,
                    "log": summarize_log(worker.log_path),
                }
            )
        results["inflight"] = {
            "executions": running,
            "started": sizes.inflight,
            "worker_concurrency": sizes.inflight,
            "seconds_to_all_running": seconds,
            "idle_rss_mb": ratio(idle, mib),
            "rss_mb": ratio(held, mib),
            "rss_mb_after": ratio(after, mib),
            "kb_per_execution": ratio((held or 0) - (idle or 0), running * 1024) if held and idle else None,
            "all_succeeded": figures["all_succeeded"],
        }

    if sizes.waiting:
        # The worker parks the runs while they are being started (the two overlap: at 100,000 runs each
        # takes minutes); the figure is taken once all are parked and the last parks have settled.
        progress(f"engine: memory, {sizes.waiting} executions started and parked on a one-day delay")
        worker = engine_worker(conninfo, sizes.concurrency, workdir / "engine-worker-waiting.log")
        try:
            await worker.start()
            assert worker.process is not None
            await wait_registered(monitor, worker)
            began = time.perf_counter()
            start = await start_backlog(conninfo, sizes, PARK_ID, sizes.waiting)
            limit = sizes.waiting_timeout - start["seconds"]
            parked, _ = await wait_count(monitor, PARK_ID, "Waiting", sizes.waiting, worker, limit, partial=True)
            park_seconds = time.perf_counter() - began
            if parked < sizes.waiting:
                progress(f"engine: memory: only {parked} of {sizes.waiting} parked within --waiting-timeout")
            await asyncio.sleep(2.0)
            rss = rss_bytes(worker.process.pid)
            leases = await monitor.value(
                "SELECT count(*) FROM dw.executions WHERE workflow_id = %s AND lease_owner IS NOT NULL", (PARK_ID,)
            )
        finally:
            code, stop_seconds = await worker.stop()
            exits.append(
                {
                    "phase": "memory: waiting",
                    "exit_code": code,
                    "stop_seconds": stop_seconds,
                    "log": summarize_log(worker.log_path),
                }
            )
        results["waiting"] = {
            "executions": parked,
            "started": sizes.waiting,
            "timed_out": parked < sizes.waiting,
            "start_seconds": start["seconds"],
            "park_seconds": park_seconds,
            "parked_per_second": ratio(parked, park_seconds),
            "rss_mb": ratio(rss, mib),
            "leases_held": leases,
        }
    return results, exits


async def bench_engine(
    conninfo: str, monitor: Monitor, sizes: Sizes, args: argparse.Namespace, workdir: Path
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    await publish_all(conninfo, sizes)

    # Backlog: every execution is queued before the worker exists; then one worker drains it.
    progress(f"engine: starting {sizes.executions} executions ({sizes.start_batch} at a time, no worker yet)")
    results["start_backlog"] = await start_backlog(conninfo, sizes, DRAIN_ID, sizes.executions)
    progress(f"engine: one worker (concurrency {sizes.concurrency}) drains the backlog")
    results["drain"], workers = await drain_with_workers(conninfo, monitor, sizes, DRAIN_ID, 1, workdir, "drain")

    if not (args.skip_latency and args.skip_wide and args.skip_chain and getattr(args, "skip_branch", False)):
        live, record = await live_phases(
            conninfo, monitor, sizes, args, workdir, results["drain"]["executions_per_second"]
        )
        results.update(live)
        workers.append(record)
        if latency := results.get("latency"):
            # The queue's own start latency at the phase's rate, a worker's worth of no-op jobs, in the same run.
            try:
                latency["bare_queue"] = (
                    await bare_queue_latency(
                        conninfo,
                        monitor,
                        [(latency["offered_rate_per_second"], 2 * sizes.latency_executions)],
                        sizes.concurrency,
                        workdir,
                        sizes.phase_timeout,
                    )
                )[0]
            except BenchError as exc:  # the figures measured so far are kept
                progress(f"WARNING: the bare queue's start latency failed: {exc}")
                latency["bare_queue"] = {"error": str(exc)}
    if not args.skip_unbatched:
        # What group commit gains, in the same run: the same backlog, each record a transaction of its own.
        # After the live phases, so that the latency phase follows one drain, as it did before this one.
        progress(f"engine: the 2-node backlog again, group commit off ({UNBATCHED})")
        await start_backlog(conninfo, sizes, UNBATCHED_ID, sizes.executions)
        results["drain_unbatched"], unbatched = await drain_with_workers(
            conninfo, monitor, sizes, UNBATCHED_ID, 1, workdir, "drain-unbatched", UNBATCHED
        )
        workers.extend(unbatched)
        # What the batched fetch gains, in the same run: the same backlog, one job a fetch.
        progress(f"engine: the 2-node backlog again, one job a fetch ({ONE_FETCH})")
        await start_backlog(conninfo, sizes, ONE_FETCH_ID, sizes.executions)
        results["drain_one_fetch"], one_fetch = await drain_with_workers(
            conninfo, monitor, sizes, ONE_FETCH_ID, 1, workdir, "drain-one-fetch", ONE_FETCH
        )
        workers.extend(one_fetch)
    if not args.skip_scale:
        try:
            results["scale_out"], records = await scale_out(conninfo, monitor, sizes, workdir)
            workers.extend(records)
        except BenchError as exc:  # the figures measured so far are kept
            progress(f"WARNING: scale-out failed: {exc}")
            results["scale_out"] = {"error": str(exc), "points": []}
    results["workers"] = workers
    return results
