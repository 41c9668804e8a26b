"""Waits benchmark: many runs parked on timers (rows, not worker slots), the timers' firing, signal round trips.

Run from the repository root:

    .venv/bin/python bench/waits.py            # default sizes: about 3.5 minutes on 2 cores
    .venv/bin/python bench/waits.py --quick    # small sizes: about 1 minute
    .venv/bin/python bench/waits.py --help     # sizes, workers, phases to skip

Database as in bench/throughput.py (whose helpers this script uses): an embedded PostgreSQL in a temporary
directory with DATABASE_URL unset, else a scratch database dw_bench_<random> on that server; removed at the end.

What is measured, in one run, on the same database, by the same worker process(es) (`dataworkflows worker`,
--workers W, --concurrency C; each with PGAPPNAME=dw-bench-worker-<i>, so that its connections can be told
apart in pg_stat_activity):

* Baseline: B executions of the 2-node echo workflow started (dw.start_execution_v1) before the workers
  start, then drained: executions/s over first execution started -> last ended (server clock), as in
  bench/throughput.py's backlog drain.
* Timers, burst: N executions of `delay (until {{ trigger.at }}) -> core.echo`, started in batches of
  dw.start_execution_v1 calls in SQL, every trigger naming the same due time. The workers take each run,
  which parks: a dw.waits row, status Waiting, no lease, one Procrastinate job scheduled at the due time.
  The due time is set from the baseline's rate so that all are parked before it (--lead to set it); the
  parking rate is reported, and a run that a worker first takes after the due time fires without parking
  (the report says so, and that the burst figures are then mixed).
  While all N wait: runs Waiting, open waits, leases held, Procrastinate jobs by status ('doing' = worker
  slots held), the workers' connections (pg_stat_activity by application_name), RSS (/proc VmRSS; helper
  child processes apart), the CPU used by the workers and by PostgreSQL while nothing is due (and which
  server processes were seen active), the server time of one Procrastinate fetch when no job is due, and
  the 2-node echo rate of up to --loaded-echo executions run then (the work that does not wait); each
  next to the same figure for the idle workers before the timers, or the baseline.
  Then, from the due time: firing rate (timers fired per second, due time -> last dw.waits.consumed_at),
  lateness p50/p95/max (consumed_at - due_at; consumed_at is the firing transaction's start), time until
  every run Succeeded, CPU of workers and PostgreSQL while firing.
* Timers, paced: P executions whose due times are spread evenly at a rate below the measured firing rate
  (half of it, at most 200/s; --paced-rate to set it): lateness when timers do not queue behind each
  other, i.e. the wake-up path (the worker that parked a run wakes its fetch loops at the due time; other
  workers would see the job at their next poll, DW_WORKER_POLL_SECONDS).
* Signals: 2 x M executions of `signal (name go) -> core.echo` parked, then one
  POST /api/v1/executions/{id}/signals/go with {"payload": {"i": ...}} each, to a `dataworkflows api`
  process: first M sequentially (the next POST is sent --signal-gap-ms after the previous 202), then M
  with --signal-concurrency POSTs in flight (a burst: it measures queueing once the POSTs arrive faster
  than the worker finishes runs). Round trip = the signal node's node_states.ended_at (its Succeeded
  checkpoint) - the time the POST was sent (same host, same clock); also to the execution's end (the echo
  node after it) and the POST's own response time. The node's outputs are checked to be the payload sent.

Figures and ratios are printed as a table and written to bench/results/waits-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg
from psycopg.types.json import Jsonb

from dataworkflows.db import Database
from dataworkflows.logs import configure_logging
from dataworkflows.migrations import migrate
from dataworkflows.tenancy import DEFAULT_TENANT
from throughput import (
    FINAL,
    QUEUE,
    BenchError,
    Monitor,
    Subprocess,
    child_env,
    echo2_workflow,
    echo_node,
    execution_figures,
    fmt,
    machine_info,
    open_pool,
    percentile,
    progress,
    publish,
    ratio,
    report_failures,
    run_main,
    summarize_log,
    worker_command,
)

WORKER_APP = "dw-bench-worker"
API_APP = "dw-bench-api"
MONITOR_APP = "dw-bench-monitor"
BASELINE_ID, LOADED_ID, SIGNAL_ID = "bench-echo2", "bench-echo2-while-waiting", "bench-signal"
TIMER_ID, PACED_ID = "bench-timer", "bench-timer-paced"
SIGNAL_NAME = "go"
# Parking one run (take it, start the delay node, write the wait, park) costs about what a 2-node echo run
# does, but every Procrastinate fetch also walks past the wake-up jobs of the runs parked so far, so parking
# 10,000 ran at 0.65-1.4x the baseline's rate (depending on the plan PostgreSQL picks for the fetch). The due
# time is set as if parking ran at this fraction of the baseline's rate, plus a margin; --lead overrides it.
PARK_RATE_GUESS = 0.6
LEAD_MARGIN_SECONDS = 8.0
# How long the "while waiting" CPU window lasts at most (it ends a second before the due time): long enough
# to see one pass of each worker's recovery loop (every DW_RECOVERY_INTERVAL_SECONDS, 5 s by default).
QUIET_WINDOW_SECONDS = 8.0


# -- sizes ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    timers: int
    workers: int
    concurrency: int
    baseline: int
    loaded_echo: int
    paced: int
    paced_rate: float | None
    signals: int
    signal_concurrency: int
    signal_gap_ms: float
    start_batch: int
    lead_seconds: float | None
    phase_timeout: float


def sizes_from_args(args: argparse.Namespace) -> Sizes:
    quick = args.quick

    def pick(value: Any, default: Any, quick_default: Any) -> Any:
        if value is not None:
            return value
        return quick_default if quick else default

    return Sizes(
        timers=pick(args.timers, 10_000, 2_000),
        workers=pick(args.workers, 1, 1),
        concurrency=pick(args.concurrency, 20, 20),
        baseline=pick(args.baseline, 2_000, 500),
        loaded_echo=0 if args.skip_loaded_echo else pick(args.loaded_echo, 500, 300),
        paced=0 if args.skip_paced else pick(args.paced, 300, 200),
        paced_rate=args.paced_rate,
        signals=0 if args.skip_signals else pick(args.signals, 200, 50),
        signal_concurrency=pick(args.signal_concurrency, 10, 10),
        signal_gap_ms=pick(args.signal_gap_ms, 10.0, 10.0),
        start_batch=pick(args.start_batch, 500, 500),
        lead_seconds=args.lead,
        phase_timeout=args.timeout,
    )


# -- processes and their footprint ---------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def named_env(conninfo: str, app_name: str) -> dict[str, str]:
    """The child's environment: libpq gives every connection it opens this application_name."""
    env = child_env(conninfo)
    env["PGAPPNAME"] = app_name
    return env


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (kB) and Threads of one process, from /proc/<pid>/status."""
    values: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                values[key] = int(rest.split()[0])
    return values


def child_pids(pid: int) -> list[int]:
    """Direct children of `pid` (the worker's template and condition helpers, when it started any)."""
    found = []
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                text = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            if int(text[text.rfind(")") + 2 :].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def cpu_seconds(pid: int) -> float | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Workers:
    """W `dataworkflows worker` processes, each with its own PGAPPNAME; always stopped on exit."""

    def __init__(self, conninfo: str, sizes: Sizes, workdir: Path) -> None:
        self.procs = [
            Subprocess(
                f"worker {i}",
                [*worker_command(), "worker", "--concurrency", str(sizes.concurrency)],
                named_env(conninfo, f"{WORKER_APP}-{i}"),
                workdir / f"worker-{i}.log",
            )
            for i in range(sizes.workers)
        ]
        self.app_names = [f"{WORKER_APP}-{i}" for i in range(sizes.workers)]
        self.stopped: list[dict[str, Any]] = []

    @property
    def pids(self) -> list[int]:
        return [p.process.pid for p in self.procs if p.process is not None]

    async def start(self) -> None:
        for proc in self.procs:
            await proc.start()

    def check_alive(self) -> None:
        for proc in self.procs:
            if proc.returncode is not None:
                raise BenchError(f"{proc.name} exited (code {proc.returncode}):\n{proc.tail()}")

    async def stop(self) -> None:
        results = await asyncio.gather(*(proc.stop() for proc in self.procs), return_exceptions=True)
        for proc, result in zip(self.procs, results, strict=True):
            code, seconds = result if isinstance(result, tuple) else (None, 0.0)
            self.stopped.append(
                {"name": proc.name, "exit_code": code, "stop_seconds": seconds, "log": summarize_log(proc.log_path)}
            )

    def cpu(self) -> float:
        return sum(cpu_seconds(pid) or 0.0 for pid in self.pids)


async def footprint(monitor: Monitor, workers: Workers) -> dict[str, Any]:
    """The workers' connections to PostgreSQL (by state), RSS and threads; their helpers' RSS apart."""
    rows = await monitor.rows(
        "SELECT application_name, COALESCE(state, '?'), count(*) FROM pg_stat_activity"
        " WHERE application_name = ANY(%s) GROUP BY 1, 2",
        (workers.app_names,),
    )
    by_state: dict[str, int] = {}
    for _, state, count in rows:
        by_state[state] = by_state.get(state, 0) + int(count)
    others = await monitor.value(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND backend_type = 'client backend'"
        " AND application_name <> ALL(%s)",
        ([*workers.app_names, MONITOR_APP],),
    )
    rss = hwm = threads = 0
    helpers: list[int] = []
    for pid in workers.pids:
        status = proc_status(pid)
        rss += status.get("VmRSS", 0)
        hwm += status.get("VmHWM", 0)
        threads += status.get("Threads", 0)
        helpers.extend(child_pids(pid))
    helper_rss = sum(proc_status(pid).get("VmRSS", 0) for pid in helpers)
    return {
        "connections": sum(by_state.values()),
        "connections_by_state": by_state,
        "other_client_connections": int(others),
        "rss_mb": rss / 1024,
        "peak_rss_mb": hwm / 1024,
        "threads": threads,
        "helper_processes": len(helpers),
        "helper_rss_mb": helper_rss / 1024,
    }


async def queue_state(monitor: Monitor) -> dict[str, Any]:
    rows = await monitor.rows(
        "SELECT status::text, count(*), count(*) FILTER (WHERE scheduled_at > now()),"
        " count(DISTINCT args ->> 'execution_id') FROM procrastinate_jobs WHERE queue_name = %s GROUP BY 1",
        (QUEUE,),
    )
    by_status = {r[0]: int(r[1]) for r in rows}
    todo = next((r for r in rows if r[0] == "todo"), None)
    return {
        "jobs_by_status": by_status,
        "doing": by_status.get("doing", 0),
        "todo_scheduled_later": int(todo[2]) if todo else 0,
        "todo_distinct_executions": int(todo[3]) if todo else 0,
    }


class ServerCpu:
    """CPU seconds of this benchmark's PostgreSQL server, from /proc: its postmaster and the postmaster's
    children (not another server on the same host). Only when the server runs on this host (ServerCpu.postmaster
    is set once per run, from the monitor connection's backend). Call sample() often: a backend that exits
    loses its time since the last sample."""

    postmaster: int | None = None

    def __init__(self) -> None:
        self.tick = os.sysconf("SC_CLK_TCK")
        self.first = self._scan()
        self.last = dict(self.first)

    @staticmethod
    def postmaster_of(backend: int) -> int | None:
        """The parent of one of the server's backends, if that backend is a process on this host."""
        try:
            text = Path(f"/proc/{backend}/stat").read_text()
        except OSError:
            return None  # not on this host
        if text[text.find("(") + 1 : text.rfind(")")] != "postgres":
            return None  # same pid, other process: the server is elsewhere
        return int(text[text.rfind(")") + 2 :].split()[1])

    def _scan(self) -> dict[int, float]:
        seen: dict[int, float] = {}
        if self.postmaster is None:
            return seen
        with contextlib.suppress(OSError):
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    text = Path(f"/proc/{entry.name}/stat").read_text()
                except OSError:
                    continue
                fields = text[text.rfind(")") + 2 :].split()
                pid = int(entry.name)
                if pid == self.postmaster or int(fields[1]) == self.postmaster:
                    seen[pid] = (int(fields[11]) + int(fields[12])) / self.tick  # utime + stime
        return seen

    def sample(self) -> None:
        self.last.update(self._scan())

    def result(self, seconds: float) -> dict[str, float | None]:
        self.sample()
        if self.postmaster is None:
            return {"postgres_cpu_seconds": None, "postgres_cores": None}
        used = sum(value - self.first.get(pid, 0.0) for pid, value in self.last.items())
        return {"postgres_cpu_seconds": used, "postgres_cores": ratio(used, seconds)}


class ActivitySampler:
    """What the workers' connections are running, sampled (pg_stat_activity, state 'active'): per function
    called (dw.* or procrastinate_*), in how many samples; and for the recovery loop's call, each pass
    seen (pid, query_start) with the longest time it was seen running."""

    def __init__(self, monitor: Monitor, workers: Workers) -> None:
        self.monitor = monitor
        self.app_names = workers.app_names
        self.samples = 0
        self.calls: dict[str, int] = {}
        self.passes: dict[tuple[int, datetime], float] = {}

    async def sample(self) -> None:
        self.samples += 1
        for pid, call, started, running in await self.monitor.rows(
            "SELECT pid, COALESCE(substring(query FROM '((?:dw\\.|procrastinate_)[a-z0-9_]+)\\('), left(query, 40)),"
            " query_start, extract(epoch FROM clock_timestamp() - query_start)::float8"
            " FROM pg_stat_activity WHERE application_name = ANY(%s) AND state = 'active'",
            (self.app_names,),
        ):
            self.calls[call] = self.calls.get(call, 0) + 1
            if call == "dw.recover_executions_v1":
                key = (int(pid), started)
                self.passes[key] = max(self.passes.get(key, 0.0), float(running))

    def result(self) -> dict[str, Any]:
        busy = self.calls.get("dw.recover_executions_v1", 0)
        return {
            "samples": self.samples,
            "calls_in_samples": dict(sorted(self.calls.items(), key=lambda item: -item[1])),
            "recovery_share": ratio(busy, self.samples),
            "recovery_passes_seen": len(self.passes),
            "recovery_pass_longest_seen_seconds": max(self.passes.values(), default=None),
        }


async def idle_cpu(monitor: Monitor, workers: Workers, seconds: float) -> dict[str, Any]:
    """CPU used by the workers and by PostgreSQL over a window in which nothing is due: PostgreSQL's by
    process, and what the workers' connections were seen running (sampled every 0.1 s)."""
    server = ServerCpu()
    activity = ActivitySampler(monitor, workers)
    before = workers.cpu()
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        server.sample()
        await activity.sample()
        await asyncio.sleep(0.1)
    elapsed = time.perf_counter() - started
    usage = server.result(elapsed)
    worker = workers.cpu() - before
    return {
        "seconds": elapsed,
        "worker_cpu_seconds": worker,
        "worker_cores": ratio(worker, elapsed),
        "postgres_cores": usage["postgres_cores"],
        "postgres_cores_by_process": await server_cpu_by_process(monitor, server, elapsed),
        "worker_activity": activity.result(),
    }


async def server_cpu_by_process(monitor: Monitor, server: ServerCpu, seconds: float) -> dict[str, float]:
    """The sampler's PostgreSQL CPU by process kind (pg_stat_activity's backend_type, or a client's
    application_name; 'exited' for processes gone by now), in cores, largest first."""
    names = {
        int(pid): name
        for pid, name in await monitor.rows(
            "SELECT pid, CASE WHEN backend_type = 'client backend' THEN COALESCE(NULLIF(application_name, ''), '?')"
            " ELSE backend_type END FROM pg_stat_activity"
        )
    }
    by_name: dict[str, float] = {}
    for pid, value in server.last.items():
        used = value - server.first.get(pid, 0.0)
        if used > 0:
            name = names.get(pid, "exited or postmaster")
            by_name[name] = by_name.get(name, 0.0) + used / seconds
    return dict(sorted(by_name.items(), key=lambda item: -item[1]))


# -- workflows and starts ------------------------------------------------------------------------


def timer_workflow(workflow_id: str) -> dict[str, Any]:
    return {
        "id": workflow_id,
        "displayName": "Bench: delay until trigger.at, then echo",
        "startNode": "nap",
        "nodes": [
            {"id": "nap", "nodeType": "delay", "parameters": {"until": "{{ trigger.at }}"}},
            echo_node("after"),
        ],
    }


def signal_workflow(workflow_id: str) -> dict[str, Any]:
    return {
        "id": workflow_id,
        "displayName": "Bench: wait for signal go, then echo",
        "startNode": "wait",
        "nodes": [
            {"id": "wait", "nodeType": "signal", "parameters": {"name": SIGNAL_NAME}},
            echo_node("after"),
        ],
    }


async def start_batches(
    conn: psycopg.AsyncConnection[Any], workflow_id: str, triggers: list[dict[str, Any]], batch: int
) -> float:
    """Starts one execution per trigger: `batch` dw.start_execution_v1 calls per statement (one transaction
    each, autocommit), the same procedure POST /workflows/{id}/execute calls. Returns the seconds taken."""
    prefix = f"{workflow_id}-{secrets.token_hex(4)}-"
    started = time.perf_counter()
    for offset in range(0, len(triggers), batch):
        chunk = triggers[offset : offset + batch]
        cur = await conn.execute(
            "SELECT count(*) FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY AS t(trig, n),"
            " LATERAL dw.start_execution_v1(%s, %s || (n + %s), t.trig, 'bench', 'user', NULL, %s) s",
            (Jsonb(chunk), workflow_id, prefix, offset, QUEUE),
        )
        row = await cur.fetchone()
        if row is None or row[0] != len(chunk):
            raise BenchError(f"started {row[0] if row else 0} of {len(chunk)} executions of {workflow_id}")
    return time.perf_counter() - started


async def wait_status(
    monitor: Monitor,
    workflow_id: str,
    *,
    done: str,
    deadline: float,
    workers: Workers,
    label: str,
    samplers: tuple[ServerCpu, ...] = (),
    interval: float = 0.2,
    hook: Callable[[], Awaitable[None]] | None = None,
    hook_interval: float = 2.0,
    activity: ActivitySampler | None = None,
) -> float:
    """Polls until no execution of the workflow is in a state other than the wanted ones: done='parked'
    (Waiting, or already final) or done='final'. Returns perf_counter() when that was seen."""
    wanted = list(FINAL) + (["Waiting"] if done == "parked" else [])
    next_hook = time.perf_counter() + hook_interval
    while True:
        for sampler in samplers:
            sampler.sample()
        if activity is not None:
            await activity.sample()
        if hook is not None and time.perf_counter() >= next_hook:
            next_hook = time.perf_counter() + hook_interval
            await hook()
        remaining = await monitor.value(
            "SELECT count(*) FROM dw.executions WHERE workflow_id = %s AND status <> ALL(%s)", (workflow_id, wanted)
        )
        if remaining == 0:
            return time.perf_counter()
        workers.check_alive()
        if time.perf_counter() > deadline:
            statuses = dict(
                await monitor.rows(
                    "SELECT status, count(*) FROM dw.executions WHERE workflow_id = %s GROUP BY 1", (workflow_id,)
                )
            )
            raise BenchError(f"{label}: {remaining} executions not {done} in time; statuses {statuses}")
        await asyncio.sleep(interval)


async def db_now(monitor: Monitor) -> datetime:
    value = await monitor.value("SELECT clock_timestamp()")
    assert isinstance(value, datetime)
    return value


async def sleep_until_db(monitor: Monitor, when: datetime) -> None:
    delay = (when - await db_now(monitor)).total_seconds()
    if delay > 0:
        await asyncio.sleep(delay)


# -- phases --------------------------------------------------------------------------------------


async def bench_baseline(
    monitor: Monitor, starter: psycopg.AsyncConnection[Any], sizes: Sizes, workers: Workers
) -> dict[str, Any]:
    """B 2-node echo executions queued before the workers start, then drained by them."""
    progress(f"baseline: {sizes.baseline} echo executions queued, then {sizes.workers} worker(s) started")
    await start_batches(starter, BASELINE_ID, [{"index": i} for i in range(sizes.baseline)], sizes.start_batch)
    server = ServerCpu()
    worker_cpu = workers.cpu()
    await workers.start()
    began = time.perf_counter()
    await wait_status(
        monitor,
        BASELINE_ID,
        done="final",
        deadline=began + sizes.phase_timeout,
        workers=workers,
        label="baseline",
        samplers=(server,),
        interval=0.1,
    )
    wall = time.perf_counter() - began
    figures = await execution_figures(monitor, BASELINE_ID)
    report_failures("baseline", figures)
    worker_cpu = workers.cpu() - worker_cpu
    usage = server.result(wall)
    figures.update(
        wall_seconds_from_spawn=wall,
        worker_cores=ratio(worker_cpu, wall),
        postgres_cores=usage["postgres_cores"],
        worker_cpu_ms_per_execution=ratio(worker_cpu * 1000, figures["executions"]),
        postgres_cpu_ms_per_execution=ratio(
            usage["postgres_cpu_seconds"] * 1000 if usage["postgres_cpu_seconds"] is not None else None,
            figures["executions"],
        ),
    )
    return figures


async def timer_figures(monitor: Monitor, workflow_id: str) -> dict[str, Any]:
    """Lateness and firing rate from the timers' dw.waits rows; ends from dw.executions."""
    row = (
        await monitor.rows(
            "SELECT count(*), count(*) FILTER (WHERE w.state = 'fired'), min(w.due_at), max(w.due_at),"
            " min(w.consumed_at), max(w.consumed_at), max(e.ended_at), min(w.created_at), max(w.created_at)"
            " FROM dw.waits w JOIN dw.executions e ON e.id = w.execution_id"
            " WHERE e.workflow_id = %s AND w.kind = 'timer'",
            (workflow_id,),
        )
    )[0]
    waits, fired, first_due, last_due, first_fired, last_fired, last_ended, first_wait, last_wait = row
    lateness = [
        float(r[0]) * 1000
        for r in await monitor.rows(
            "SELECT extract(epoch FROM w.consumed_at - w.due_at)::float8 FROM dw.waits w"
            " JOIN dw.executions e ON e.id = w.execution_id"
            " WHERE e.workflow_id = %s AND w.kind = 'timer' AND w.consumed_at IS NOT NULL",
            (workflow_id,),
        )
    ]
    peak = await monitor.value(
        "SELECT max(c) FROM (SELECT count(*) AS c FROM dw.waits w JOIN dw.executions e ON e.id = w.execution_id"
        " WHERE e.workflow_id = %s AND w.kind = 'timer' AND w.state = 'fired'"
        " GROUP BY date_trunc('second', w.consumed_at)) s",
        (workflow_id,),
    )
    events = dict(
        await monitor.rows(
            "SELECT v.type, count(*) FROM dw.execution_events v JOIN dw.executions e ON e.id = v.execution_id"
            " WHERE e.workflow_id = %s AND v.type IN ('timer_fired', 'execution_parked', 'execution_reacquired')"
            " GROUP BY 1",
            (workflow_id,),
        )
    )
    parked = (
        await monitor.rows(
            "SELECT min(e.created_at), max(v.at) FROM dw.execution_events v"
            " JOIN dw.executions e ON e.id = v.execution_id"
            " WHERE e.workflow_id = %s AND v.type = 'execution_parked'",
            (workflow_id,),
        )
    )[0]

    def seconds(later: datetime | None, earlier: datetime | None) -> float | None:
        return (later - earlier).total_seconds() if later and earlier else None

    due_to_last_fired = seconds(last_fired, first_due)
    first_to_last_fired = seconds(last_fired, first_fired)
    park_span = seconds(parked[1], parked[0])
    return {
        "waits": int(waits),
        "fired": int(fired),
        "first_due": first_due,
        "last_due": last_due,
        "due_window_seconds": seconds(last_due, first_due),
        "first_fired_after_due_ms": ratio(seconds(first_fired, first_due), 0.001),
        "due_to_last_fired_seconds": due_to_last_fired,
        "first_to_last_fired_seconds": first_to_last_fired,
        "fired_per_second": ratio(fired, due_to_last_fired),
        "fired_per_second_first_to_last": ratio(fired, first_to_last_fired),
        "peak_fired_in_one_second": int(peak) if peak is not None else None,
        "due_to_all_succeeded_seconds": seconds(last_ended, first_due),
        "lateness_ms": {
            "p50": percentile(lateness, 50),
            "p95": percentile(lateness, 95),
            "max": max(lateness) if lateness else None,
            "min": min(lateness) if lateness else None,
            "fired_early": sum(1 for v in lateness if v < 0),
        },
        "spare_before_first_due_seconds": seconds(first_due, parked[1]),
        "park_span_seconds": park_span,
        # Runs that came due before a worker took them fire at once, without parking.
        "parked": int(events.get("execution_parked", 0)),
        "parked_per_second": ratio(int(events.get("execution_parked", 0)), park_span),
        "wait_rows_written_span_seconds": seconds(last_wait, first_wait),
        "events": {k: int(v) for k, v in events.items()},
    }


async def fetch_cost(monitor: Monitor, repeat: int = 3) -> dict[str, Any]:
    """What one Procrastinate fetch costs the server: the candidate query of procrastinate_fetch_job_v2 (its
    lock clause left out: no job here has a lock), median of `repeat` EXPLAIN ANALYZE. When a job is due,
    the statement locks it for its own duration (autocommit), as a worker's fetch would (it skips locked ones)."""
    times: list[float] = []
    plan: dict[str, Any] = {}
    for _ in range(repeat):
        answer = await monitor.value(
            "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT jobs.id FROM procrastinate_jobs AS jobs"
            " WHERE jobs.status = 'todo' AND jobs.queue_name = ANY(%s)"
            " AND (jobs.scheduled_at IS NULL OR jobs.scheduled_at <= now())"
            " ORDER BY jobs.priority DESC, jobs.id ASC LIMIT 1 FOR UPDATE OF jobs SKIP LOCKED",
            ([QUEUE],),
        )
        document = answer[0] if isinstance(answer, list) else json.loads(answer)[0]
        times.append(float(document["Execution Time"]))
        plan = document["Plan"]

    def scans(node: dict[str, Any]) -> list[str]:
        found = [node["Node Type"]] if "Scan" in node["Node Type"] and "Bitmap Index" not in node["Node Type"] else []
        for child in node.get("Plans", []):
            found.extend(scans(child))
        return found

    def removed(node: dict[str, Any]) -> int:
        return int(node.get("Rows Removed by Filter", 0)) + sum(removed(c) for c in node.get("Plans", []))

    return {
        "ms": percentile(times, 50),
        "scan": "/".join(scans(plan)),
        "rows_removed": removed(plan),
        "buffers": int(plan.get("Shared Hit Blocks", 0)) + int(plan.get("Shared Read Blocks", 0)),
    }


async def jobs_table(monitor: Monitor) -> dict[str, int]:
    """procrastinate_jobs' live and dead rows and its (auto)vacuum counts, from pg_stat_user_tables."""
    rows = await monitor.rows(
        "SELECT n_live_tup, n_dead_tup, vacuum_count + autovacuum_count, analyze_count + autoanalyze_count"
        " FROM pg_stat_user_tables WHERE relname = 'procrastinate_jobs'"
    )
    live, dead, vacuums, analyzes = rows[0] if rows else (0, 0, 0, 0)
    return {"live": int(live), "dead": int(dead), "vacuums": int(vacuums), "analyzes": int(analyzes)}


async def loaded_echo(
    monitor: Monitor,
    starter: psycopg.AsyncConnection[Any],
    sizes: Sizes,
    workers: Workers,
    due: datetime,
    baseline_rate: float | None,
) -> dict[str, Any] | None:
    """2-node echo executions run while the N timer runs wait (and before they come due): does the
    work that does not wait slow down? As many as fit before the due time, at most --loaded-echo."""
    spare = (due - await db_now(monitor)).total_seconds() - 2.0
    count = min(sizes.loaded_echo, int(spare * 0.5 * (baseline_rate or 100.0)))
    if count < 50:
        return None
    progress(f"timers: {count} echo executions while they wait ({spare + 2.0:.1f}s before the due time)")
    await start_batches(starter, LOADED_ID, [{"index": i} for i in range(count)], sizes.start_batch)
    deadline = time.perf_counter() + max(spare, 0.0) + sizes.phase_timeout
    await wait_status(monitor, LOADED_ID, done="final", deadline=deadline, workers=workers, label="echo while waiting")
    figures = await execution_figures(monitor, LOADED_ID)
    report_failures("echo while waiting", figures)
    last_ended = await monitor.value("SELECT max(ended_at) FROM dw.executions WHERE workflow_id = %s", (LOADED_ID,))
    return {
        "executions": figures["executions"],
        "executions_per_second": figures["executions_per_second"],
        "span_seconds": figures["span_seconds"],
        "all_succeeded": figures["all_succeeded"],
        "statuses": figures["statuses"],
        "ended_before_due": last_ended is not None and last_ended < due,
    }


async def bench_timers(
    monitor: Monitor,
    starter: psycopg.AsyncConnection[Any],
    sizes: Sizes,
    workers: Workers,
    baseline_rate: float | None,
) -> dict[str, Any]:
    """N runs parked on one common due time; the footprint while they wait; their firing."""
    count = sizes.timers
    results: dict[str, Any] = {"idle_before": await footprint(monitor, workers)}
    results["idle_before"]["cpu"] = await idle_cpu(monitor, workers, 2.0)
    results["idle_before"]["queue"] = await queue_state(monitor)
    results["idle_before"]["fetch"] = await fetch_cost(monitor)
    if sizes.lead_seconds is not None:
        lead = sizes.lead_seconds
    else:
        lead = count / (PARK_RATE_GUESS * (baseline_rate or 100.0)) + LEAD_MARGIN_SECONDS
    results["lead_seconds"] = lead
    due = await db_now(monitor) + timedelta(seconds=lead)
    progress(f"timers: starting {count} executions, all due at {due:%H:%M:%S.%f} UTC ({lead:.1f}s from now)")
    trigger = {"at": due.astimezone(UTC).isoformat()}
    start_seconds = await start_batches(starter, TIMER_ID, [trigger] * count, sizes.start_batch)
    results["start_seconds"] = start_seconds
    results["starts_per_second"] = count / start_seconds
    progress(f"timers: started in {start_seconds:.1f}s; the worker(s) park them")
    await wait_status(
        monitor,
        TIMER_ID,
        done="parked",
        deadline=time.perf_counter() + lead + sizes.phase_timeout,
        workers=workers,
        label="timers parking",
    )
    spare = (due - await db_now(monitor)).total_seconds()
    results["all_parked_before_due"] = spare > 0
    if spare > 0:
        progress(f"timers: all {count} parked, {spare:.1f}s before they come due; measuring while they wait")
        window = min(QUIET_WINDOW_SECONDS, max(spare - 1.0, 0.0))
        cpu = await idle_cpu(monitor, workers, window) if window >= 0.5 else None
        waiting = await footprint(monitor, workers)
        waiting["cpu"] = cpu
        waiting["queue"] = await queue_state(monitor)
        waiting["fetch"] = await fetch_cost(monitor)
        waiting["executions_waiting"] = int(
            await monitor.value(
                "SELECT count(*) FROM dw.executions WHERE workflow_id = %s AND status = 'Waiting'", (TIMER_ID,)
            )
        )
        waiting["open_waits"] = int(
            await monitor.value(
                "SELECT count(*) FROM dw.waits w JOIN dw.executions e ON e.id = w.execution_id"
                " WHERE e.workflow_id = %s AND w.state = 'open'",
                (TIMER_ID,),
            )
        )
        waiting["leases_held"] = int(
            await monitor.value(
                "SELECT count(*) FROM dw.executions WHERE workflow_id = %s AND lease_owner IS NOT NULL", (TIMER_ID,)
            )
        )
        results["while_waiting"] = waiting
        if sizes.loaded_echo:
            results["echo_while_waiting"] = await loaded_echo(monitor, starter, sizes, workers, due, baseline_rate)
    else:
        progress(f"timers: WARNING: parking ended {-spare:.1f}s after the due time (pass a larger --lead)")

    await sleep_until_db(monitor, due)
    progress("timers: due now; waiting until every run Succeeded")
    server = ServerCpu()
    worker_cpu = workers.cpu()
    began = time.perf_counter()
    table_before = await jobs_table(monitor)
    fetches: list[dict[str, Any]] = []
    activity = ActivitySampler(monitor, workers)

    async def sample_fetch() -> None:
        fetches.append(await fetch_cost(monitor, repeat=1))

    await wait_status(
        monitor,
        TIMER_ID,
        done="final",
        deadline=began + sizes.phase_timeout,
        workers=workers,
        label="timers firing",
        samplers=(server,),
        interval=0.25,
        hook=sample_fetch,
        hook_interval=2.0,
        activity=activity,
    )
    table_after = await jobs_table(monitor)
    fetch_ms = [f["ms"] for f in fetches]
    results["activity_while_firing"] = activity.result()
    results["fetch_while_firing"] = {
        "samples": len(fetches),
        "ms": summary(fetch_ms),
        "buffers_max": max((f["buffers"] for f in fetches), default=None),
        "rows_removed_max": max((f["rows_removed"] for f in fetches), default=None),
        "scans": sorted({f["scan"] for f in fetches}),
        "jobs_table_before": table_before,
        "jobs_table_after": table_after,
    }
    elapsed = time.perf_counter() - began
    worker_cpu = workers.cpu() - worker_cpu
    usage = server.result(elapsed)
    # Not when the runs had already fired (parked after their due time) by the time this began.
    results["firing_cpu"] = (
        {
            "seconds": elapsed,
            "worker_cores": ratio(worker_cpu, elapsed),
            "postgres_cores": usage["postgres_cores"],
            "worker_cpu_ms_per_run": ratio(worker_cpu * 1000, count),
            "postgres_cpu_ms_per_run": ratio(
                usage["postgres_cpu_seconds"] * 1000 if usage["postgres_cpu_seconds"] is not None else None, count
            ),
        }
        if results["all_parked_before_due"]
        else None
    )
    results["after_firing"] = await footprint(monitor, workers)
    results.update(await timer_figures(monitor, TIMER_ID))
    figures = await execution_figures(monitor, TIMER_ID)
    report_failures("timers", figures)
    results["statuses"] = figures["statuses"]
    results["all_succeeded"] = figures["all_succeeded"]
    # A parked run is taken again when it wakes up: expected here.
    results["unusual_events"] = {k: v for k, v in figures["unusual_events"].items() if k != "execution_reacquired"}
    results["timers"] = count
    return results


async def bench_paced(
    monitor: Monitor,
    starter: psycopg.AsyncConnection[Any],
    sizes: Sizes,
    workers: Workers,
    burst: dict[str, Any],
) -> dict[str, Any]:
    """P runs whose due times are spread evenly at a rate the workers keep up with: the wake-up lateness."""
    count = sizes.paced
    rate = sizes.paced_rate or min(200.0, 0.5 * (burst.get("fired_per_second") or 100.0))
    park_rate = burst.get("parked_per_second") or 100.0
    lead = sizes.lead_seconds if sizes.lead_seconds is not None else count / (0.7 * park_rate) + 3.0
    first_due = await db_now(monitor) + timedelta(seconds=lead)
    triggers = [{"at": (first_due + timedelta(seconds=i / rate)).astimezone(UTC).isoformat()} for i in range(count)]
    progress(f"paced timers: {count} executions due one every {1000 / rate:.1f} ms from {lead:.1f}s from now")
    await start_batches(starter, PACED_ID, triggers, sizes.start_batch)
    window = count / rate
    deadline = time.perf_counter() + lead + window + sizes.phase_timeout
    await wait_status(monitor, PACED_ID, done="final", deadline=deadline, workers=workers, label="paced timers")
    results = await timer_figures(monitor, PACED_ID)
    figures = await execution_figures(monitor, PACED_ID)
    report_failures("paced timers", figures)
    results.update(
        timers=count,
        offered_rate_per_second=rate,
        statuses=figures["statuses"],
        all_succeeded=figures["all_succeeded"],
    )
    return results


async def bench_signals(
    monitor: Monitor,
    starter: psycopg.AsyncConnection[Any],
    sizes: Sizes,
    workers: Workers,
    conninfo: str,
    workdir: Path,
) -> dict[str, Any]:
    """2 x M runs parked on a signal; POST the signal over HTTP (sequentially, then C at a time)."""
    count = sizes.signals
    port = free_port()
    api = Subprocess(
        "api",
        [*worker_command(), "api", "--port", str(port)],
        named_env(conninfo, API_APP),
        workdir / "api.log",
    )
    results: dict[str, Any] = {}
    try:
        await api.start()
        progress(f"signals: API on port {port}; {2 * count} executions parked on signal {SIGNAL_NAME!r}")
        await start_batches(starter, SIGNAL_ID, [{"i": i} for i in range(2 * count)], sizes.start_batch)
        deadline = time.perf_counter() + sizes.phase_timeout
        await wait_status(monitor, SIGNAL_ID, done="parked", deadline=deadline, workers=workers, label="signals")
        rows = await monitor.rows(
            "SELECT e.id::text, (e.trigger ->> 'i')::int FROM dw.executions e"
            " JOIN dw.waits w ON w.execution_id = e.id AND w.state = 'open' AND w.kind = 'signal'"
            " WHERE e.workflow_id = %s ORDER BY 2",
            (SIGNAL_ID,),
        )
        if len(rows) != 2 * count:
            raise BenchError(f"signals: {len(rows)} open signal waits, expected {2 * count}")
        base_url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base_url, timeout=10.0) as client:
            await wait_api_ready(client, api)
            sent: dict[str, float] = {}
            responses: dict[str, float] = {}
            problems: list[str] = []

            async def post(execution_id: str, index: int) -> None:
                url = f"/api/v1/executions/{execution_id}/signals/{SIGNAL_NAME}"
                sent[execution_id] = time.time()
                began = time.perf_counter()
                response = await client.post(url, json={"payload": {"i": index}})
                responses[execution_id] = (time.perf_counter() - began) * 1000
                body = response.json() if response.status_code == 202 else None
                if body is None or body.get("outcome") != "consumed":
                    problems.append(f"{execution_id}: {response.status_code} {response.text[:200]}")

            progress(f"signals: {count} POSTs one after another ({sizes.signal_gap_ms:g} ms after each 202)")
            sequential = rows[:count]
            for execution_id, index in sequential:
                await post(execution_id, index)
                await asyncio.sleep(sizes.signal_gap_ms / 1000)
            progress(f"signals: {count} POSTs, {sizes.signal_concurrency} in flight")
            concurrent = rows[count:]
            gate = asyncio.Semaphore(sizes.signal_concurrency)
            burst_began = time.perf_counter()

            async def gated(execution_id: str, index: int) -> None:
                async with gate:
                    await post(execution_id, index)

            await asyncio.gather(*(gated(e, i) for e, i in concurrent))
            burst_seconds = time.perf_counter() - burst_began
        deadline = time.perf_counter() + sizes.phase_timeout
        await wait_status(monitor, SIGNAL_ID, done="final", deadline=deadline, workers=workers, label="signals")
        ends = {
            r[0]: r[1:]
            for r in await monitor.rows(
                "SELECT e.id::text, extract(epoch FROM n.ended_at)::float8, extract(epoch FROM e.ended_at)::float8,"
                " extract(epoch FROM w.consumed_at)::float8, n.status,"
                " n.outputs = jsonb_build_object('i', e.trigger -> 'i')"
                " FROM dw.executions e JOIN dw.node_states n ON n.execution_id = e.id AND n.node_id = 'wait'"
                " JOIN dw.waits w ON w.execution_id = e.id AND w.kind = 'signal'"
                " WHERE e.workflow_id = %s",
                (SIGNAL_ID,),
            )
        }
        for label, group in (("sequential", sequential), ("concurrent", concurrent)):
            ids = [e for e, _ in group]
            node = [(ends[e][0] - sent[e]) * 1000 for e in ids if ends[e][0] is not None]
            run = [(ends[e][1] - sent[e]) * 1000 for e in ids if ends[e][1] is not None]
            consumed = [(ends[e][2] - sent[e]) * 1000 for e in ids if ends[e][2] is not None]
            calls = [responses[e] for e in ids if e in responses]
            results[label] = {
                "signals": len(ids),
                "node_succeeded": sum(1 for e in ids if ends[e][3] == "Succeeded"),
                "outputs_match_payload": sum(1 for e in ids if ends[e][4]),
                "post_to_node_succeeded_ms": summary(node),
                "post_to_execution_end_ms": summary(run),
                "post_to_consumed_ms": summary(consumed),
                "post_response_ms": summary(calls),
            }
        results["concurrent"]["in_flight"] = sizes.signal_concurrency
        results["concurrent"]["posts_per_second"] = count / burst_seconds
        results["sequential"]["gap_ms"] = sizes.signal_gap_ms
        results["problems"] = problems[:10]
        results["problem_count"] = len(problems)
        figures = await execution_figures(monitor, SIGNAL_ID)
        report_failures("signals", figures)
        results["statuses"] = figures["statuses"]
        results["all_succeeded"] = figures["all_succeeded"]
    finally:
        code, stop_seconds = await api.stop()
        results["api"] = {"exit_code": code, "stop_seconds": stop_seconds, "log": summarize_log(api.log_path)}
    return results


def summary(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "max": max(values) if values else None,
    }


async def wait_api_ready(client: httpx.AsyncClient, api: Subprocess, limit_seconds: float = 60.0) -> None:
    deadline = time.perf_counter() + limit_seconds
    while True:
        if api.returncode is not None:
            raise BenchError(f"the API exited (code {api.returncode}):\n{api.tail()}")
        with contextlib.suppress(httpx.TransportError):
            if (await client.get("/health/ready", timeout=1.0)).status_code == 200:
                return
        if time.perf_counter() > deadline:
            raise BenchError(f"the API was not ready within {limit_seconds:g}s:\n{api.tail()}")
        await asyncio.sleep(0.1)


# -- report --------------------------------------------------------------------------------------


def compute_ratios(results: dict[str, Any]) -> dict[str, float | None]:
    base = results.get("baseline", {}).get("executions_per_second")
    timers = results.get("timers", {})
    idle, waiting = timers.get("idle_before", {}), timers.get("while_waiting", {})
    rss_growth = None
    if waiting and idle:
        rss_growth = ratio((waiting["rss_mb"] - idle["rss_mb"]) * 1024, timers["timers"] / 1000)
    return {
        "timer firings/s / baseline executions/s": ratio(timers.get("fired_per_second"), base),
        "timer runs parked/s / baseline executions/s": ratio(timers.get("parked_per_second"), base),
        "echo executions/s while N wait / baseline executions/s": ratio(
            (timers.get("echo_while_waiting") or {}).get("executions_per_second"), base
        ),
        "postgres CPU per fired timer run / per baseline execution": ratio(
            (timers.get("firing_cpu") or {}).get("postgres_cpu_ms_per_run"),
            results.get("baseline", {}).get("postgres_cpu_ms_per_execution"),
        ),
        "worker connections: N waiting / idle": ratio(waiting.get("connections"), idle.get("connections")),
        "worker RSS change idle -> N waiting, per 1,000 runs (kB)": rss_growth,
    }


def print_report(results: dict[str, Any]) -> None:
    machine = results["machine"]
    sizes = results["sizes"]
    rows: list[tuple[str, str, str] | None] = []

    def row(label: str, value: Any, note: str = "", digits: int = 1) -> None:
        rows.append((label, fmt(value, digits), note))

    def pair(label: str, first: Any, second: Any, note: str = "", digits: int = 1) -> None:
        rows.append((label, f"{fmt(first, digits)} / {fmt(second, digits)}", note))

    def activity_row(label: str, activity: dict[str, Any]) -> None:
        calls = activity["calls_in_samples"]
        share = activity["recovery_share"]
        longest = activity["recovery_pass_longest_seen_seconds"]
        rows.append(
            (
                label,
                f"{fmt(share * 100 if share is not None else None, 0)}% recovery",
                f"of {activity['samples']} samples a worker connection ran dw.recover_executions_v1"
                + (
                    f" ({activity['recovery_passes_seen']} passes seen, longest >= {fmt(longest, 2)}s)"
                    if longest is not None
                    else " (no pass seen)"
                )
                + "; all calls seen: "
                + (", ".join(f"{k} {v}" for k, v in list(calls.items())[:4]) or "none"),
            )
        )

    def footprint_rows(name: str, fp: dict[str, Any]) -> None:
        states = ", ".join(f"{k} {v}" for k, v in sorted(fp["connections_by_state"].items()))
        row(
            f"{name}: worker connections",
            fp["connections"],
            f"({states}); other clients {fp['other_client_connections']}",
        )
        pair(
            f"{name}: worker RSS / peak RSS",
            fp["rss_mb"],
            fp["peak_rss_mb"],
            f"MB; {fp['threads']} threads; {fp['helper_processes']} helper processes, {fp['helper_rss_mb']:.1f} MB",
        )
        cpu = fp.get("cpu")
        if cpu:
            pair(
                f"{name}: CPU cores busy, workers / postgres",
                cpu["worker_cores"],
                cpu["postgres_cores"],
                f"over {cpu['seconds']:.1f}s with nothing due; postgres by process: "
                + (
                    ", ".join(f"{k} {v:.3f}" for k, v in list(cpu["postgres_cores_by_process"].items())[:3])
                    or "nothing"
                ),
                3,
            )
            activity_row(f"{name}: worker connections busy with", cpu["worker_activity"])
        fetch = fp.get("fetch")
        if fetch:
            row(
                f"{name}: one Procrastinate fetch, no job due",
                fetch["ms"],
                f"ms server time ({fetch['scan']}, {fetch['rows_removed']:,} job rows read and skipped,"
                f" {fetch['buffers']:,} buffers)",
                2,
            )
        queue = fp.get("queue")
        if queue:
            row(
                f"{name}: Procrastinate jobs 'doing'",
                queue["doing"],
                f"todo {queue['jobs_by_status'].get('todo', 0)} ({queue['todo_scheduled_later']} scheduled later,"
                f" {queue['todo_distinct_executions']} distinct runs)",
            )

    base = results.get("baseline")
    if base:
        row(
            "baseline: 2-node echo executions/s",
            base["executions_per_second"],
            f"{base['executions']} in {base['span_seconds']:.2f}s (first started -> last ended);"
            f" cores busy: workers {fmt(base['worker_cores'], 2)}, postgres {fmt(base['postgres_cores'], 2)}",
        )
        pair(
            "baseline: CPU ms per execution, workers / postgres",
            base["worker_cpu_ms_per_execution"],
            base["postgres_cpu_ms_per_execution"],
            "",
            2,
        )
        row("baseline: all Succeeded", base["all_succeeded"], str(base["statuses"]))
    timers = results.get("timers")
    if timers:
        rows.append(None)
        row("timers: executions started (batched SQL)", timers["timers"], f"{timers['starts_per_second']:,.0f}/s")
        row(
            "timers: runs parked/s",
            timers["parked_per_second"],
            f"{timers['parked']:,} in {fmt(timers['park_span_seconds'], 2)}s (first started -> last parked)",
        )
        spare = timers["spare_before_first_due_seconds"]
        row(
            "timers: all parked before the due time",
            timers["all_parked_before_due"],
            f"{fmt(spare, 1)}s to spare (due {timers['lead_seconds']:.0f}s after the first start)"
            if timers["all_parked_before_due"]
            else f"only {timers['parked']:,} parked (the rest fired when first taken); the firing figures below mix"
            " parking and firing: pass a larger --lead",
        )
        footprint_rows("idle (before timers)", timers["idle_before"])
        waiting = timers.get("while_waiting")
        if waiting:
            row("while waiting: executions Waiting", waiting["executions_waiting"], "")
            row("while waiting: open dw.waits rows", waiting["open_waits"], "")
            row("while waiting: leases held", waiting["leases_held"], "")
            footprint_rows("while waiting", waiting)
        loaded = timers.get("echo_while_waiting")
        if loaded:
            row(
                "while waiting: 2-node echo executions/s",
                loaded["executions_per_second"],
                f"{loaded['executions']} in {fmt(loaded['span_seconds'], 2)}s; all Succeeded:"
                f" {fmt(loaded['all_succeeded'])}; ended before the due time: {fmt(loaded['ended_before_due'])}",
            )
        row(
            "timers: fired/s (due -> last fired)",
            timers["fired_per_second"],
            f"{timers['fired']} fired in {fmt(timers['due_to_last_fired_seconds'], 2)}s;"
            f" peak {fmt(timers['peak_fired_in_one_second'])} in one second",
        )
        row("timers: first fired after the due time", timers["first_fired_after_due_ms"], "ms")
        lateness = timers["lateness_ms"]
        rows.append(
            (
                "timers: lateness p50 / p95 / max",
                f"{fmt(lateness['p50'], 0)} / {fmt(lateness['p95'], 0)} / {fmt(lateness['max'], 0)}",
                f"ms (consumed_at - due_at); fired early: {lateness['fired_early']}",
            )
        )
        row("timers: due -> all Succeeded", timers["due_to_all_succeeded_seconds"], "s", 2)
        fetch = timers.get("fetch_while_firing")
        if fetch and fetch["samples"]:
            table = fetch["jobs_table_after"]
            vacuums = table["vacuums"] - fetch["jobs_table_before"]["vacuums"]
            rows.append(
                (
                    "timers: one Procrastinate fetch while firing, p50 / max",
                    f"{fmt(fetch['ms']['p50'], 2)} / {fmt(fetch['ms']['max'], 2)}",
                    f"ms over {fetch['samples']} samples ({'/'.join(fetch['scans'])}, up to {fetch['buffers_max']:,}"
                    f" buffers); procrastinate_jobs vacuumed {vacuums}x meanwhile, {table['dead']:,} dead at the end",
                )
            )
        if timers.get("activity_while_firing"):
            activity_row("timers: while firing, worker connections busy with", timers["activity_while_firing"])
        cpu = timers["firing_cpu"]
        if cpu:
            pair("timers: CPU cores busy while firing", cpu["worker_cores"], cpu["postgres_cores"], "workers / pg", 2)
            pair(
                "timers: CPU ms per fired run, workers / postgres",
                cpu["worker_cpu_ms_per_run"],
                cpu["postgres_cpu_ms_per_run"],
                "(fire + delay node checkpoint + echo node + end)",
                2,
            )
        row(
            "timers: all Succeeded, one timer_fired each",
            timers["all_succeeded"] and timers["events"].get("timer_fired") == timers["timers"],
            f"{timers['statuses']}; events {timers['events']}; unusual {timers['unusual_events'] or 'none'}",
        )
        after = timers["after_firing"]
        row(
            "after firing: worker connections",
            after["connections"],
            f"RSS {after['rss_mb']:.1f} MB, peak {after['peak_rss_mb']:.1f} MB",
        )
    paced = results.get("paced")
    if paced:
        rows.append(None)
        lateness = paced["lateness_ms"]
        rows.append(
            (
                "paced timers: lateness p50 / p95 / max",
                f"{fmt(lateness['p50'], 1)} / {fmt(lateness['p95'], 1)} / {fmt(lateness['max'], 1)}",
                f"ms; {paced['timers']} due at {paced['offered_rate_per_second']:.0f}/s over"
                f" {fmt(paced['due_window_seconds'], 1)}s; fired early: {lateness['fired_early']}",
            )
        )
        row("paced timers: all Succeeded", paced["all_succeeded"], str(paced["statuses"]))
    sig = results.get("signals")
    if sig and "sequential" in sig:
        rows.append(None)
        for key in ("sequential", "concurrent"):
            part = sig[key]
            how = (
                f"{part['signals']} one after another, {part['gap_ms']:g} ms gap"
                if key == "sequential"
                else f"{part['signals']} with {part['in_flight']} in flight ({part['posts_per_second']:.0f} POSTs/s)"
            )
            for label, name in (
                ("POST -> signal node Succeeded", "post_to_node_succeeded_ms"),
                ("POST -> execution Succeeded", "post_to_execution_end_ms"),
                ("POST response", "post_response_ms"),
            ):
                figures = part[name]
                rows.append(
                    (
                        f"signals {key}: {label} p50 / p95",
                        f"{fmt(figures['p50'], 1)} / {fmt(figures['p95'], 1)}",
                        f"ms (max {fmt(figures['max'], 1)}); {how}" if name == "post_to_node_succeeded_ms" else "ms",
                    )
                )
            row(
                f"signals {key}: node Succeeded with the payload",
                part["node_succeeded"] == part["outputs_match_payload"] == part["signals"],
                f"{part['outputs_match_payload']} of {part['signals']}",
            )
        row("signals: POSTs not answered 202 consumed", sig["problem_count"], "; ".join(sig["problems"][:2]))
    rows.append(None)
    for label, value in results["ratios"].items():
        rows.append((label, fmt(value, 3), ""))

    width = max(len(r[0]) for r in rows if r) + 2
    vwidth = max(len(r[1]) for r in rows if r) + 2
    line = "-" * (width + vwidth + 50)
    print()
    print(line)
    settings = machine["postgresql_settings"]
    print(
        f"DataWorkflows waits  |  nproc {machine['nproc']}  |  PostgreSQL {settings['server_version']}  |  fsync"
        f" {settings['fsync']}, synchronous_commit {settings['synchronous_commit']}"
    )
    print(
        f"{machine['platform']}  |  Python {machine['python']}  |  procrastinate {machine['procrastinate']}"
        f"  |  git {machine['git'] or '-'}"
    )
    print(
        f"database: {machine['database']}  |  timers N={sizes['timers']} paced P={sizes['paced']}"
        f" signals M={sizes['signals']}x2  baseline B={sizes['baseline']}  workers W={sizes['workers']}"
        f" C={sizes['concurrency']}"
    )
    print(
        "load average (1, 5, 15 min) at start / end: "
        + " / ".join(
            ", ".join(f"{v:.2f}" for v in machine[key]) for key in ("load_average_at_start", "load_average_at_end")
        )
        + f"  |  PostgreSQL CPU counted: {'this server' if ServerCpu.postmaster else 'no (not on this host)'}"
    )
    print(line)
    for r in rows:
        if r is None:
            print()
            continue
        print(f"{r[0]:<{width}}{r[1]:>{vwidth}}  {r[2]}")
    print(line)
    logs = list(results.get("workers", []))
    api = results.get("signals", {}).get("api")
    if api:
        logs.append({"name": "api", **api})
    for proc in logs:
        lines = proc["log"]
        print(
            f"{proc['name']}: exit code {proc['exit_code']} {proc['stop_seconds']:.2f}s after SIGTERM;"
            f" log lines at warning+: {lines['lines_by_level'] or 'none'}"
        )
        for sample in lines["samples"]:
            print(f"  {sample}")


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
    async with (
        await psycopg.AsyncConnection.connect(conninfo, autocommit=True, application_name=MONITOR_APP) as conn,
        await psycopg.AsyncConnection.connect(conninfo, autocommit=True, application_name=MONITOR_APP) as starter,
    ):
        monitor = Monitor(conn)
        # Runs are started in a tenant (dw.start_execution_v2 refuses none): the default one, the
        # workers' and the benchmark pool's (run_main's tenant scope).
        await starter.execute("SELECT set_config('dw.tenant_id', %s, false)", (DEFAULT_TENANT,))
        results["machine"] = await machine_info(monitor, description)
        results["machine"]["load_average_at_start"] = os.getloadavg()
        ServerCpu.postmaster = ServerCpu.postmaster_of(await monitor.value("SELECT pg_backend_pid()"))
        async with open_pool(conninfo, 2) as pool:
            db = Database(pool)
            for workflow in (
                echo2_workflow(BASELINE_ID),
                echo2_workflow(LOADED_ID),
                timer_workflow(TIMER_ID),
                timer_workflow(PACED_ID),
                signal_workflow(SIGNAL_ID),
            ):
                await publish(db, workflow)
        workers = Workers(conninfo, sizes, workdir)
        try:
            results["baseline"] = await bench_baseline(monitor, starter, sizes, workers)
            base_rate = results["baseline"]["executions_per_second"]
            progress(f"baseline: {fmt(base_rate)} executions/s")
            results["timers"] = await bench_timers(monitor, starter, sizes, workers, base_rate)
            if sizes.paced:
                results["paced"] = await bench_paced(monitor, starter, sizes, workers, results["timers"])
            if sizes.signals:
                results["signals"] = await bench_signals(monitor, starter, sizes, workers, conninfo, workdir)
        finally:
            await workers.stop()
            results["workers"] = workers.stopped
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["ratios"] = compute_ratios(results)
    return results


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Runs waiting on timers and signals: footprint, firing, latency.")
    parser.add_argument("--quick", action="store_true", help="small sizes: 2,000 timers, 50 signals, 500 baseline")
    parser.add_argument("--timers", "-n", type=int, help="executions parked on one common due time (default 10000)")
    parser.add_argument("--workers", "-w", type=int, help="worker processes (default 1)")
    parser.add_argument("--concurrency", "-c", type=int, help="concurrency of each worker (default 20)")
    parser.add_argument("--baseline", type=int, help="2-node echo executions of the baseline (default 2000)")
    parser.add_argument(
        "--loaded-echo", type=int, help="echo executions run while the timers wait, at most (default 500)"
    )
    parser.add_argument("--paced", type=int, help="timers due at a steady rate, for the wake-up lateness (default 300)")
    parser.add_argument("--paced-rate", type=float, help="due times per second (default half the burst firing rate)")
    parser.add_argument("--signals", "-m", type=int, help="signal round trips per round, 2 rounds (default 200)")
    parser.add_argument("--signal-concurrency", type=int, help="POSTs in flight in the second round (default 10)")
    parser.add_argument("--signal-gap-ms", type=float, help="pause after each 202 in the first round (default 10)")
    parser.add_argument("--start-batch", type=int, help="dw.start_execution_v1 calls per statement (default 500)")
    parser.add_argument(
        "--lead", type=float, help="seconds from the timers' start to their due time (default: computed)"
    )
    parser.add_argument("--timeout", type=float, default=180.0, help="seconds allowed per phase (default 180)")
    parser.add_argument("--total-timeout", type=float, default=600.0, help="seconds allowed in all (default 600)")
    parser.add_argument("--skip-loaded-echo", action="store_true")
    parser.add_argument("--skip-paced", action="store_true")
    parser.add_argument("--skip-signals", action="store_true")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/waits-*.json")
    args = parser.parse_args(argv)
    for name in ("timers", "workers", "concurrency", "baseline", "signal_concurrency", "start_batch"):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("loaded_echo", "paced", "signals"):
        value = getattr(args, name)
        if value is not None and value < 0:
            parser.error(f"--{name} must not be negative")
    return args


def main(argv: list[str] | None = None) -> int:
    return run_main("waits", parse_args(argv), run, print_report, errors=(BenchError, psycopg.Error, httpx.HTTPError))


if __name__ == "__main__":
    sys.exit(main())
