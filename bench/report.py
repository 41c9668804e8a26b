"""bench/throughput.py's results: ratios, the issue-17 targets (met / not met), the printed report, and the README's
Performance table (`bench/throughput.py --readme README.md [--from results.json]`).

The results JSON (bench/results/throughput-<UTC timestamp>.json) has a stable schema, so that runs can be compared
(bench/compare.py): a key keeps its meaning once it exists, new figures are new keys, and `schema_version` says
which keys to expect. Version 1 (no `schema_version` key) had: timestamp, quick, sizes, machine, commits,
pool_check, procrastinate, engine.{start_backlog, drain, latency, wide, chain, workers}, conditions, ratios,
total_seconds. Version 2 adds: schema_version, targets (name, path, figure, op, threshold, unit, met),
engine.scale_out (points, model), engine.memory (inflight, waiting), peer.dbos (or peer.dbos.skipped), the
ratio `engine_steps_per_s / dbos_steps_per_s`, engine.drain.{workers, concurrency_per_worker,
cpu_ms_per_step}, and p99/max of engine.latency.start_to_first_node_ms. A phase that failed holds
{"error": ...} in its place. engine.drain.cpu is now counted over the server's own processes (psutil), not
every process named postgres on the host. Version 3 adds engine.latency.running_start_to_first_node_ms: the
same number of starts again, at the same pace, once the fresh worker's have ended (engine_phases.engine_latency);
start_to_first_node_ms keeps its meaning (a fresh worker's starts, its cold start included). Version 4 adds
engine.latency.answer_to_first_node_ms and running_answer_to_first_node_ms (p50, p95): from the start call's
answer, as the benchmark process saw it, to the first node's start; the worker's pick-up without the start's own
transaction (negative when the worker was faster than the answer's way back). Version 5 adds engine.drain_unbatched:
the same 2-node backlog (a workflow of its own) drained after the live phases by a worker with group commit off
(DW_WORKER_GROUP_COMMIT=1: each attempt record a transaction of its own), with engine.drain's keys, and the ratio
`engine_steps_per_s / unbatched_steps_per_s`. engine.drain keeps its meaning (the engine as configured by
default, group commit on since 241634a). Version 6 adds engine.drain_one_fetch: the same again (a workflow of its
own), drained after that by a worker that fetches one job a transaction (DW_WORKER_FETCH_BATCH=1, as Procrastinate
fetches), with engine.drain's keys, and the ratio `engine_steps_per_s / one_fetch_steps_per_s`; engine.drain
fetches in batches since 016fd4b. Version 7 adds engine.latency.client_warm_up {connections,
starts_per_connection, seconds; null with --cold-client}: before the start-latency phase, the benchmark's own
start client opens its whole pool and each connection plans the start call in starts rolled back
(workloads.warm_client). start_to_first_node_ms keeps its meaning (a fresh worker's starts, its cold start
included); up to version 6 it also held the benchmark client's cold start (a pool of two connections growing
during the phase, each new connection's first starts compiling and planning: start calls p95 ~100-160 ms), which
no API that has been serving pays. Version 8 adds engine.latency.cpu.{fresh, running}: from each half's first
start to its last run's end, the cores busy in the worker, PostgreSQL and the benchmark process (worker_cores,
postgres_cores, client_cores, and their seconds), machine_cores, busy_share_of_machine (their sum over the
machine's cores), and postgres_cpu_ms_per_execution / worker_cpu_ms_per_execution (the start's cost included).
Version 9 adds engine.latency.at_load: after the two halves at half the drain capacity, the same number of starts
at lower offered loads (sizes.latency_loads, 0.1 and 0.25 of the drain capacity), the worker of the halves still
running; keyed "10pct", "25pct", each {share_of_drain_capacity, executions, interval_ms, offered_rate_per_second,
offered_load_vs_drain_capacity, start_to_first_node_ms {p50, p95, p99, max}, cpu (as engine.latency.cpu's
halves)}; empty when the pace was given (--latency-interval-ms). Figures, not targets: the targets stay at half
the drain capacity. Version 10 adds engine.latency.capacity_with_starts {executions, start_seconds, span_seconds,
executions_per_second, steps_per_second, share_of_drain_capacity, all_succeeded, statuses, cpu}: the 2-node runs a
second the machine completes when it starts them too (started as fast as the client goes while the worker runs,
first start -> last end; engine_phases.capacity_with_starts), and engine.latency.at_half_capacity_with_starts (an
at_load point's keys): the start latency at half of that rate. Null when the pace was given. Figures for reading
the latency targets, which stay at half the drain capacity. Version 11 adds engine.branch (engine.chain's keys):
runs of a workflow with data in it (a lookup template, two edge conditions of which one fires, a template with a
filter: workloads.branch_workflow), started while the live phases' worker runs, and the ratio
`branch_steps_per_s / procrastinate_jobs_per_s`: a figure, not a target. Version 12 adds conditions.in_worker
{mean_us, p50_us, p95_us}: the same condition decided in the worker (dataworkflows.simple_conditions), which
the engine now does for simple conditions; conditions.mean_us and its siblings keep their meaning (through a
sandbox helper: until version 12's code, a simple condition measured in the worker would have read as one).
Version 13 adds engine.latency.bare_queue {rate_per_second, runs, seconds, worker_cores, postgres_cores,
worker_cpu_seconds, postgres_cpu_seconds, worker_cpu_ms_per_run, postgres_cpu_ms_per_run, start_to_first_node_ms
{p50, p95}} (or {error}): after the live phases, twice the latency phase's number of bare Procrastinate no-op
jobs deferred one at a time at its offered rate, run by a no-op worker listening (baselines.bare_queue_latency):
the queue's own start latency (its `started` event minus its `deferred` event) at that rate in the same run.
A figure, not a target: the targets are the engine's.

Nothing here touches a database: the unit test (tests/unit/test_bench_report.py) runs it on a canned file.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from figures import fmt, ratio

SCHEMA_VERSION = 13

# Every wake-up of a LISTENing backend by a NOTIFY counts as a transaction too (engine_phases.py's docstring
# says what else is in the count).
TRANSACTIONS_NOTE = "pg_stat_database, incl. NOTIFY wake-ups"


def dig(results: dict[str, Any], path: str) -> Any:
    """The value at a dotted path ("engine.drain.steps_per_second"), or None. A ratio's name may hold dots
    and slashes, so `ratios.` takes the rest of the path as one key."""
    if path.startswith("ratios."):
        return results.get("ratios", {}).get(path[len("ratios.") :])
    value: Any = results
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def compute_ratios(results: dict[str, Any]) -> dict[str, float | None]:
    """Same-run ratios. The first seven names are schema version 1's and keep their meaning."""
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
        # Schema version 2.
        "engine_steps_per_s / dbos_steps_per_s": ratio(
            drain.get("steps_per_second"), results.get("peer", {}).get("dbos", {}).get("steps_per_second")
        ),
        # Schema version 5: what group commit gains.
        "engine_steps_per_s / unbatched_steps_per_s": ratio(
            drain.get("steps_per_second"), engine.get("drain_unbatched", {}).get("steps_per_second")
        ),
        # Schema version 6: what the batched fetch gains.
        "engine_steps_per_s / one_fetch_steps_per_s": ratio(
            drain.get("steps_per_second"), engine.get("drain_one_fetch", {}).get("steps_per_second")
        ),
        # Schema version 11: data in a run (templates, edge conditions).
        "branch_steps_per_s / procrastinate_jobs_per_s": ratio(engine.get("branch", {}).get("steps_per_second"), jobs),
    }


# -- targets (issue 17) --------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    path: str  # where the figure is in the results (see dig)
    op: str | None  # ">=", "<=", or None for a figure printed without a threshold
    threshold: float | None = None
    unit: str = "x"
    digits: int = 2

    def check(self, value: Any) -> bool | None:
        if value is None or self.op is None or self.threshold is None:
            return None
        return bool(value >= self.threshold) if self.op == ">=" else bool(value <= self.threshold)


TARGETS = (
    Target("2-node backlog steps/s / no-op jobs/s", "ratios.engine_steps_per_s / procrastinate_jobs_per_s", ">=", 1.5),
    Target("transactions per step (2-node backlog)", "engine.drain.transactions_per_step", "<=", 2.0, ""),
    Target("20-node chain steps/s / no-op jobs/s", "ratios.chain_steps_per_s / procrastinate_jobs_per_s", ">=", 3.0),
    Target("1->50->1 fan-out steps/s / no-op jobs/s", "ratios.wide_steps_per_s / procrastinate_jobs_per_s", ">=", 2.0),
    Target(
        "start latency p95 at half drain capacity", "engine.latency.start_to_first_node_ms.p95", "<=", 10.0, " ms", 1
    ),
    Target(
        "start latency p50 at half drain capacity", "engine.latency.start_to_first_node_ms.p50", "<=", 3.0, " ms", 1
    ),
    # The same targets for a worker that has been running (the figures above include a fresh worker's cold start).
    Target(
        "start latency p95, worker running a while",
        "engine.latency.running_start_to_first_node_ms.p95",
        "<=",
        10.0,
        " ms",
        1,
    ),
    Target(
        "start latency p50, worker running a while",
        "engine.latency.running_start_to_first_node_ms.p50",
        "<=",
        3.0,
        " ms",
        1,
    ),
    Target("2-node steps/s / DBOS two-step steps/s", "ratios.engine_steps_per_s / dbos_steps_per_s", ">=", 4.0),
    Target("worker RSS, executions in flight", "engine.memory.inflight.rss_mb", None, unit=" MB", digits=0),
    Target("worker RSS, executions waiting (rows only)", "engine.memory.waiting.rss_mb", None, unit=" MB", digits=0),
)


def evaluate_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its figure from this run and whether it is met (None: not measured or no threshold)."""
    return [
        {
            "name": target.name,
            "path": target.path,
            "figure": dig(results, target.path),
            "op": target.op,
            "threshold": target.threshold,
            "unit": target.unit.strip(),
            "met": target.check(dig(results, target.path)),
        }
        for target in TARGETS
    ]


def verdict(met: bool | None, figure: Any, op: str | None) -> str:
    if figure is None:
        return "not measured"
    if op is None:
        return "figure"
    return "met" if met else "NOT met"


def target_label(target: Target, results: dict[str, Any]) -> str:
    """The target's name with the measured size where it matters (1,000 in flight, 100,000 waiting)."""
    if dig(results, target.path) is None:
        return target.name
    if target.path == "engine.memory.inflight.rss_mb":
        return f"worker RSS, {fmt(dig(results, 'engine.memory.inflight.executions'))} executions in flight"
    if target.path == "engine.memory.waiting.rss_mb":
        return f"worker RSS, {fmt(dig(results, 'engine.memory.waiting.executions'))} executions waiting (rows only)"
    return target.name


def target_lines(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(name, figure, target, verdict) of every target, for the printed report and the README."""
    lines = []
    for target, outcome in zip(TARGETS, evaluate_targets(results), strict=True):
        figure = outcome["figure"]
        shown = "-" if figure is None else f"{fmt(float(figure), target.digits)}{target.unit}"
        goal = "" if target.op is None else f"{target.op} {fmt(target.threshold, target.digits)}{target.unit}"
        lines.append((target_label(target, results), shown, goal, verdict(outcome["met"], figure, target.op)))
    return lines


# -- the printed report ---------------------------------------------------------------------------

Row = tuple[str, str, str] | None


class Rows:
    def __init__(self) -> None:
        self.rows: list[Row] = []

    def add(self, label: str, value: Any, note: str = "", digits: int = 1) -> None:
        self.rows.append((label, fmt(value, digits), note))

    def text(self, label: str, value: str, note: str = "") -> None:
        self.rows.append((label, value, note))

    def gap(self) -> None:
        self.rows.append(None)

    def cpu(self, name: str, cpu: dict[str, Any], units: int, unit: str) -> None:
        worker, server = cpu["worker_cpu_seconds"], cpu["postgres_cpu_seconds"]
        self.text(
            f"{name} CPU per {unit}: worker / postgres",
            f"{fmt(ratio(worker, units / 1000), 2)} / {fmt(ratio(server, units / 1000), 2)}",
            f"ms (cores busy: worker {fmt(cpu['worker_cores'], 2)}, postgres {fmt(cpu['postgres_cores'], 2)})",
        )


def baseline_rows(rows: Rows, results: dict[str, Any]) -> None:
    commits = results.get("commits")
    if commits:
        one, many = commits["single_connection"], commits["concurrent"]
        rows.add("raw commits/s, 1 connection", one["commits_per_second"], f"{one['mean_ms']:.3f} ms per commit")
        rows.add(f"raw commits/s, {many['connections']} connections", many["commits_per_second"], "aggregate")
    check = results.get("pool_check")
    if check:
        rows.add("pool checkout + SELECT 1, with check", check["with_check"]["mean_us"], "us (engine's make_pool)")
        rows.add("pool checkout + SELECT 1, no check", check["without_check"]["mean_us"], "us")
        rows.add("pool check overhead per DB call", check["check_overhead_us"], "us (a socket poll, no round trip)")
    proc = results.get("procrastinate")
    if proc:
        rows.gap()
        rows.add(
            "procrastinate no-op jobs/s",
            proc["jobs_per_second"],
            f"{proc['jobs_run']} jobs in {proc['span_seconds']:.2f}s (first start -> last end)",
        )
        rows.add("procrastinate transactions per job", proc["transactions_per_job"], TRANSACTIONS_NOTE, digits=2)
        rows.cpu("procrastinate", proc["cpu"], proc["jobs_run"], "job")


def drain_rows(rows: Rows, engine: dict[str, Any]) -> None:
    drain = engine["drain"]
    rows.gap()
    rows.add("engine starts/s (no worker, batches)", engine["start_backlog"]["starts_per_second"])
    rows.add(
        "engine executions/s (2-node backlog)",
        drain["executions_per_second"],
        f"{drain['executions']} in {fmt(drain['span_seconds'], 2)}s (first started -> last ended)",
    )
    rows.add("engine steps/s (2-node backlog)", drain["steps_per_second"], f"{drain['steps']} Succeeded attempts")
    rows.add("engine drain wall time from spawn", drain["wall_seconds_from_spawn"], "s (incl. worker start-up)", 2)
    rows.add(
        "engine execution run time (mean)",
        drain["mean_execution_ms"],
        f"ms lease taken -> finished; {fmt(drain['mean_in_flight'])} executions in flight on average",
    )
    rows.add("engine transactions per execution", drain["transactions_per_execution"], TRANSACTIONS_NOTE, 2)
    rows.add("engine transactions per step", drain["transactions_per_step"], "", 2)
    rows.cpu("engine", drain["cpu"], drain["steps"], "step")
    rows.add("all executions Succeeded", drain["all_succeeded"], str(drain["statuses"]))
    for key, label, note in (
        ("drain_unbatched", "group commit off", "DW_WORKER_GROUP_COMMIT=1: each record a transaction of its own"),
        ("drain_one_fetch", "one job a fetch", "DW_WORKER_FETCH_BATCH=1: a fetch transaction per job"),
    ):
        if engine.get(key):
            variant_rows(rows, label, engine[key], note)


def variant_rows(rows: Rows, label: str, drain: dict[str, Any], note: str) -> None:
    """The same 2-node backlog drained again with one feature off (engine.drain_unbatched, drain_one_fetch)."""
    rows.gap()
    rows.add(f"{label}: steps/s (2-node backlog)", drain["steps_per_second"], note)
    rows.add(
        f"{label}: run time (mean)",
        drain["mean_execution_ms"],
        f"ms; {fmt(drain['mean_in_flight'])} executions in flight on average",
    )
    rows.add(f"{label}: transactions per step", drain["transactions_per_step"], "", 2)
    rows.cpu(label, drain["cpu"], drain["steps"], "step")
    rows.add(f"{label}: all Succeeded", drain["all_succeeded"], str(drain["statuses"]))


def live_rows(rows: Rows, engine: dict[str, Any]) -> None:
    latency = engine.get("latency")
    if latency:
        rows.gap()
        note = (
            f"{latency['executions']} starts at {latency['offered_rate_per_second']:.0f}/s"
            f" ({fmt(latency['offered_load_vs_drain_capacity'], 2)} of drain capacity)"
        )
        rows.add("start latency p50 (-> first node)", latency["start_to_first_node_ms"]["p50"], "ms; " + note)
        rows.add("start latency p95 (-> first node)", latency["start_to_first_node_ms"]["p95"], "ms")
        running = latency.get("running_start_to_first_node_ms")
        if running and running.get("p95") is not None:
            rows.add("start latency p50, running worker", running["p50"], "ms; as many starts again, same pace")
            rows.add("start latency p95, running worker", running["p95"], "ms")
        for point in (latency.get("at_load") or {}).values():
            figures = point["start_to_first_node_ms"]
            rows.text(
                f"start latency p50 / p95 at {fmt(point['share_of_drain_capacity'], 2)} of drain capacity",
                f"{fmt(figures['p50'], 1)} / {fmt(figures['p95'], 1)}",
                f"ms; {point['executions']} starts at {point['offered_rate_per_second']:.0f}/s, running worker,"
                f" machine {fmt(point['cpu']['busy_share_of_machine'], 2)} busy",
            )
        if with_starts := latency.get("capacity_with_starts"):
            rows.add(
                "capacity with starts: executions/s",
                with_starts["executions_per_second"],
                f"{with_starts['executions']} started as fast as they go, worker running;"
                f" {fmt(with_starts['share_of_drain_capacity'], 2)} of drain capacity;"
                f" machine {fmt(with_starts['cpu']['busy_share_of_machine'], 2)} busy",
            )
        if half := latency.get("at_half_capacity_with_starts"):
            figures = half["start_to_first_node_ms"]
            rows.text(
                "start latency p50 / p95 at half the capacity with starts",
                f"{fmt(figures['p50'], 1)} / {fmt(figures['p95'], 1)}",
                f"ms; {half['executions']} starts at {half['offered_rate_per_second']:.0f}/s"
                f" ({fmt(half['share_of_drain_capacity'], 2)} of drain capacity),"
                f" machine {fmt(half['cpu']['busy_share_of_machine'], 2)} busy",
            )
        if (bare := latency.get("bare_queue")) and "error" not in bare:
            figures = bare["start_to_first_node_ms"]
            rows.text(
                "bare Procrastinate jobs at the same rate: start latency p50 / p95",
                f"{fmt(figures['p50'], 1)} / {fmt(figures['p95'], 1)}",
                f"ms; {bare['runs']} no-op jobs deferred one at a time, deferred -> started; CPU a job,"
                f" worker + PostgreSQL: {fmt(bare['worker_cpu_ms_per_run'], 2)}"
                f" + {fmt(bare['postgres_cpu_ms_per_run'], 2)} ms",
            )
        elif bare:
            rows.text("bare Procrastinate jobs at the same rate", "failed", bare["error"][:200])
        rows.add("start -> execution end p50", latency["start_to_end_ms"]["p50"], "ms")
        rows.add("start -> execution end p95", latency["start_to_end_ms"]["p95"], "ms")
        calls = latency["start_call_ms"]
        rows.text("start call round trip p50 / p95", f"{fmt(calls['p50'], 2)} / {fmt(calls['p95'], 2)}", "ms")
        if warm := latency.get("client_warm_up"):
            rows.text(
                "start client warmed first",
                f"{warm['connections']} x {warm['starts_per_connection']}",
                f"connections x starts rolled back, {fmt(warm['seconds'], 2)} s (warm_client)",
            )
        for key, label in (
            ("answer_to_first_node_ms", "start call answered -> first node p50 / p95"),
            ("running_answer_to_first_node_ms", "the same, running worker"),
        ):
            if after := latency.get(key):
                rows.text(label, f"{fmt(after['p50'], 2)} / {fmt(after['p95'], 2)}", "ms; the worker's pick-up alone")
        for half, cpu in (latency.get("cpu") or {}).items():
            rows.text(
                f"latency phase, {half} worker: cores busy",
                f"{fmt(cpu['worker_cores'], 2)} + {fmt(cpu['postgres_cores'], 2)} + {fmt(cpu['client_cores'], 2)}",
                f"worker + PostgreSQL + start client, {fmt(cpu['busy_share_of_machine'], 2)} of {cpu['machine_cores']}",
            )
            rows.text(
                f"latency phase, {half} worker: CPU per run",
                f"{fmt(cpu['worker_cpu_ms_per_execution'], 2)} + {fmt(cpu['postgres_cpu_ms_per_execution'], 2)}",
                "ms, worker + PostgreSQL (its start included)",
            )
    for key, label in (
        ("wide", "wide (1 -> 50 -> 1)"),
        ("chain", "chain (20 nodes)"),
        ("branch", "branch (templates, conditions)"),
    ):
        figures = engine.get(key)
        if figures:
            rows.gap()
            rows.add(
                f"{label} steps/s",
                figures["steps_per_second"],
                f"{figures['executions']} executions, {figures['steps']} steps in {fmt(figures['span_seconds'], 2)}s",
            )
            rows.add(f"{label} executions/s", figures["executions_per_second"], "", 2)
            rows.add(f"{label} all Succeeded", figures["all_succeeded"], str(figures["statuses"]))


def scale_rows(rows: Rows, engine: dict[str, Any]) -> None:
    scale = engine.get("scale_out")
    if not scale:
        return
    rows.gap()
    if "error" in scale:
        rows.text("scale-out", "failed", scale["error"][:200])
    for point in scale["points"]:
        cpu, per_step = point["cpu"], point["cpu_ms_per_step"]
        rows.add(
            f"scale-out, {point['workers']} worker(s) x {point['concurrency_per_worker']}: steps/s",
            point["steps_per_second"],
            f"x{fmt(point['speedup_vs_1_worker'], 2)} of 1 worker; cores busy: workers {fmt(cpu['worker_cores'], 2)},"
            f" postgres {fmt(cpu['postgres_cores'], 2)}; CPU ms/step {fmt(per_step['worker'], 2)} +"
            f" {fmt(per_step['postgres'], 2)}; {fmt(point['transactions_per_step'], 2)} transactions/step",
        )


def model_rows(rows: Rows, engine: dict[str, Any]) -> None:
    model = dig(engine, "scale_out.model")
    if not model or model.get("worker_ms_per_step") is None:
        return
    rows.text(
        "ceiling: steps/s per worker core / per PostgreSQL core",
        f"{fmt(model['steps_per_s_per_worker_core'], 0)} / {fmt(model['steps_per_s_per_postgres_core'], 0)}",
        "from the 1-worker point's CPU per step",
    )
    rows.add(
        "ceiling: workers per PostgreSQL core",
        model["workers_per_postgres_core"],
        "a worker running flat out keeps 1 / this PostgreSQL cores busy",
        2,
    )
    rows.add(
        f"ceiling: {model['cores']} shared cores, steps/s",
        model["shared_cores_ceiling_steps_per_s"],
        "workers and PostgreSQL on the same cores, all busy",
        0,
    )


def memory_rows(rows: Rows, engine: dict[str, Any]) -> None:
    memory = engine.get("memory")
    if not memory:
        return
    rows.gap()
    if "error" in memory:
        rows.text("worker RSS", "failed", memory["error"][:200])
    inflight = memory.get("inflight")
    if inflight:
        rows.add(
            f"worker RSS, {fmt(inflight['executions'])} in flight",
            inflight["rss_mb"],
            f"MB (idle {fmt(inflight['idle_rss_mb'])} MB; {fmt(inflight['kb_per_execution'])} kB per execution;"
            f" concurrency {inflight['worker_concurrency']})"
            + (
                f"; only {fmt(inflight['executions'])} of {fmt(inflight['started'])} Running in time"
                if inflight.get("started", inflight["executions"]) > inflight["executions"]
                else ""
            ),
        )
    waiting = memory.get("waiting")
    if waiting:
        rows.add(
            f"worker RSS, {fmt(waiting['executions'])} waiting",
            waiting["rss_mb"],
            f"MB (the worker that parked them, {fmt(waiting['parked_per_second'])}/s; leases held"
            f" {waiting['leases_held']})"
            + (
                f"; only {fmt(waiting['executions'])} of {fmt(waiting['started'])} parked in time"
                if waiting.get("timed_out")
                else ""
            ),
        )


def peer_rows(rows: Rows, results: dict[str, Any]) -> None:
    dbos = results.get("peer", {}).get("dbos")
    if dbos is None:
        return
    rows.gap()
    if "skipped" in dbos or "error" in dbos:
        outcome = "skipped" if "skipped" in dbos else "failed"
        rows.text("peer: DBOS Transact", outcome, dbos.get("skipped") or dbos["error"])
        return
    rows.add(
        "peer: DBOS two-step steps/s",
        dbos["steps_per_second"],
        f"{dbos['succeeded']} of {dbos['workflows']} workflows in {fmt(dbos['span_seconds'], 2)}s; dbos"
        f" {dbos['dbos_version']}, 1 process, queue concurrency {dbos['queue_worker_concurrency']}"
        + ("; TIMED OUT" if dbos.get("timed_out") else ""),
    )
    cpu = dbos.get("cpu")
    if cpu and dbos["steps"]:
        rows.cpu("peer: DBOS", cpu, dbos["steps"], "step")


def header(results: dict[str, Any]) -> list[str]:
    machine, sizes = results["machine"], results["sizes"]
    settings = machine["postgresql_settings"]
    return [
        f"DataWorkflows throughput  |  nproc {machine['nproc']}  |  PostgreSQL {settings['server_version']}  |  "
        f"fsync {settings['fsync']}, synchronous_commit {settings['synchronous_commit']}",
        f"{machine['platform']}  |  Python {machine['python']}  |  procrastinate {machine['procrastinate']}"
        f"  |  git {machine['git'] or '-'}",
        f"database: {machine['database']}  |  N={sizes['executions']} C={sizes['concurrency']} "
        f"M={sizes['commits']} K={sizes['wide_executions']}/{sizes['chain_executions']}",
    ]


def report_lines(results: dict[str, Any]) -> list[str]:
    rows = Rows()
    baseline_rows(rows, results)
    engine = results.get("engine")
    if engine:
        drain_rows(rows, engine)
        live_rows(rows, engine)
        scale_rows(rows, engine)
        model_rows(rows, engine)
        memory_rows(rows, engine)
    peer_rows(rows, results)
    cond = results.get("conditions")
    if cond:
        rows.gap()
        rows.add("JS condition mean", cond["mean_us"], f"us over {cond['evaluations']} sequential evaluations")
        rows.add("JS condition p95", cond["p95_us"], "us")
        rows.add("JS condition p95 under 1 ms", cond["under_1ms"], "")
        if cond.get("in_worker"):
            rows.add("JS condition decided in the worker, mean", cond["in_worker"]["mean_us"], "us (a simple one)")
    rows.gap()
    for label, value in results["ratios"].items():
        rows.text(label, fmt(value, 3))

    present = [r for r in rows.rows if r]
    width = max(len(r[0]) for r in present) + 2
    vwidth = max(len(r[1]) for r in present) + 2
    line = "-" * (width + vwidth + 50)
    out = ["", line, *header(results), line]
    for r in rows.rows:
        out.append("" if r is None else f"{r[0]:<{width}}{r[1]:>{vwidth}}  {r[2]}".rstrip())
    out.append(line)
    out.append("targets (issue 17), same-run figures:")
    targets = target_lines(results)
    tw = max(len(t[0]) for t in targets) + 2
    for name, figure, goal, outcome in targets:
        out.append(f"  {name:<{tw}}{figure:>14}  {goal:<10}  {outcome}")
    out.append(line)
    out.extend(worker_lines(results))
    return out


def worker_lines(results: dict[str, Any]) -> list[str]:
    out = []
    for worker in results.get("engine", {}).get("workers", []):
        logs = worker["log"]
        out.append(
            f"engine worker ({worker['phase']}): exit code {worker['exit_code']} {worker['stop_seconds']:.2f}s after"
            f" SIGTERM; log lines at warning+: {logs['lines_by_level'] or 'none'}"
        )
        out.extend(f"  {sample}" for sample in logs["samples"])
    for key, title in (("procrastinate", "no-op worker output:"), ("peer.dbos", "DBOS drain output:")):
        logs = dig(results, key + ".log")
        if logs and logs["samples"]:
            out.append(title)
            out.extend(f"  {sample}" for sample in logs["samples"])
    return out


def print_report(results: dict[str, Any], write: Callable[[str], None] = print) -> None:
    for line in report_lines(results):
        write(line)


# -- the README table -------------------------------------------------------------------------------

START, END = "<!-- perf:table -->", "<!-- perf:table:end -->"


def readme_table(results: dict[str, Any]) -> str:
    """The README's Performance table from one results file: the figures, then each target with met / not met."""
    machine, sizes = results["machine"], results["sizes"]
    settings = machine["postgresql_settings"]
    drain = dig(results, "engine.drain") or {}
    lines = [
        f"Run {results['timestamp']}, git {machine.get('git') or '-'}, {machine['nproc']} cores, PostgreSQL "
        f"{settings['server_version']} (fsync {settings['fsync']}), one worker process at concurrency "
        f"{sizes['concurrency']} unless said, {sizes['executions']:,}-run backlogs"
        + (" (--quick)" if results.get("quick") else "")
        + ":",
        "",
        "| measurement | figure | target | met |",
        "|---|---:|---|---|",
    ]

    def add(label: str, figure: str, target: str = "", met: str = "") -> None:
        lines.append(f"| {label} | {figure} | {target} | {met} |")

    add(
        f"raw single-row commits/s, 1 connection / {sizes['concurrency']} connections",
        f"{fmt(dig(results, 'commits.single_connection.commits_per_second'), 0)}"
        f" / {fmt(dig(results, 'commits.concurrent.commits_per_second'), 0)}",
    )
    add("raw Procrastinate no-op jobs/s", fmt(dig(results, "procrastinate.jobs_per_second"), 0))
    add(
        "2-node backlog: steps/s (executions/s)",
        f"{fmt(drain.get('steps_per_second'), 0)} ({fmt(drain.get('executions_per_second'), 0)})",
    )
    per_step = drain.get("cpu_ms_per_step") or {}
    add(
        "2-node backlog: CPU per step, worker + PostgreSQL",
        f"{fmt(per_step.get('worker'), 2)} + {fmt(per_step.get('postgres'), 2)} ms",
    )
    for path, what in (
        ("engine.drain_unbatched", "group commit off (a transaction per record)"),
        ("engine.drain_one_fetch", "one job a fetch (`DW_WORKER_FETCH_BATCH=1`)"),
    ):
        variant = dig(results, path) or {}
        if variant:
            cpu = variant.get("cpu_ms_per_step") or {}
            add(
                f"2-node backlog, {what}: steps/s; transactions per step; CPU per step, worker + PostgreSQL",
                f"{fmt(variant.get('steps_per_second'), 0)}; {fmt(variant.get('transactions_per_step'), 2)};"
                f" {fmt(cpu.get('worker'), 2)} + {fmt(cpu.get('postgres'), 2)} ms",
            )
    add(
        "20-node chain / 1→50→1 fan-out: steps/s",
        f"{fmt(dig(results, 'engine.chain.steps_per_second'), 0)}"
        f" / {fmt(dig(results, 'engine.wide.steps_per_second'), 0)}",
    )
    if dig(results, "engine.branch.steps_per_second") is not None:
        add(
            "2 steps with data in them (a lookup template, two edge conditions of which one fires, a template"
            " with a filter; no target): steps/s, ratio to the no-op jobs",
            f"{fmt(dig(results, 'engine.branch.steps_per_second'), 0)},"
            f" {fmt(dig(results, 'ratios.branch_steps_per_s / procrastinate_jobs_per_s'), 2)}\N{MULTIPLICATION SIGN}",
        )
    add(
        "start latency: the start calls' own p95; from a call's answer to the first node, p95 fresh / running",
        f"{fmt(dig(results, 'engine.latency.start_call_ms.p95'), 1)} ms;"
        f" {fmt(dig(results, 'engine.latency.answer_to_first_node_ms.p95'), 1)}"
        f" / {fmt(dig(results, 'engine.latency.running_answer_to_first_node_ms.p95'), 1)} ms",
    )
    at_load = dig(results, "engine.latency.at_load") or {}
    if at_load:
        add(
            "start latency at lower offered loads (worker running): p50 / p95 at a share of the drain capacity"
            " (the machine's share busy)",
            "; ".join(
                f"{fmt(p['share_of_drain_capacity'], 2)}: {fmt(p['start_to_first_node_ms']['p50'], 1)}"
                f" / {fmt(p['start_to_first_node_ms']['p95'], 1)} ms ({fmt(p['cpu']['busy_share_of_machine'], 2)})"
                for p in at_load.values()
            ),
        )
    with_starts = dig(results, "engine.latency.capacity_with_starts") or {}
    half = dig(results, "engine.latency.at_half_capacity_with_starts") or {}
    if with_starts:
        rate, share = with_starts.get("executions_per_second"), with_starts.get("share_of_drain_capacity")
        p50, p95 = dig(half, "start_to_first_node_ms.p50"), dig(half, "start_to_first_node_ms.p95")
        add(
            "capacity with starts: 2-node executions/s when the machine starts them too (share of the drain"
            " capacity); start latency p50 / p95 at half of it",
            f"{fmt(rate, 0)} ({fmt(share, 2)}); {fmt(p50, 1)} / {fmt(p95, 1)} ms",
        )
    fresh = dig(results, "engine.latency.cpu.fresh") or {}
    if fresh:
        drain_steps = ratio(dig(results, "engine.drain.steps"), dig(results, "engine.drain.executions")) or 2.0

        def per_run(side: str) -> float | None:
            figure = dig(results, f"engine.drain.cpu_ms_per_step.{side}")
            return None if figure is None else figure * drain_steps

        add(
            "start latency phase (fresh worker): cores busy, worker + PostgreSQL + start client (their share of the"
            " machine); CPU per run, worker + PostgreSQL (its start included)",
            f"{fmt(fresh.get('worker_cores'), 2)} + {fmt(fresh.get('postgres_cores'), 2)}"
            f" + {fmt(fresh.get('client_cores'), 2)} of {fresh.get('machine_cores')} cores"
            f" ({fmt(fresh.get('busy_share_of_machine'), 2)}); {fmt(fresh.get('worker_cpu_ms_per_execution'), 2)}"
            f" + {fmt(fresh.get('postgres_cpu_ms_per_execution'), 2)} ms (the backlog drain's, start apart:"
            f" {fmt(per_run('worker'), 2)} + {fmt(per_run('postgres'), 2)} ms)",
        )
    bare = dig(results, "engine.latency.bare_queue") or {}
    if bare:
        p50, p95 = dig(bare, "start_to_first_node_ms.p50"), dig(bare, "start_to_first_node_ms.p95")
        worker, postgres = bare.get("worker_cpu_ms_per_run"), bare.get("postgres_cpu_ms_per_run")
        add(
            "bare Procrastinate no-op jobs deferred one at a time at the latency phase's rate (no target): start"
            " latency p50 / p95; CPU a job, worker + PostgreSQL (its defer included)",
            "failed"
            if "error" in bare
            else f"{fmt(p50, 1)} / {fmt(p95, 1)} ms; {fmt(worker, 2)} + {fmt(postgres, 2)} ms",
        )
    dbos = dig(results, "peer.dbos") or {}
    add(
        "DBOS Transact two-step workflows: steps/s",
        "skipped" if "skipped" in dbos else "failed" if "error" in dbos else fmt(dbos.get("steps_per_second"), 0),
    )
    for point in dig(results, "engine.scale_out.points") or []:
        cpu = point["cpu"]
        add(
            f"scale-out, {point['workers']} worker process{'es' if point['workers'] > 1 else ''}: steps/s"
            " (cores busy: workers + PostgreSQL)",
            f"{fmt(point['steps_per_second'], 0)} ({fmt(cpu['worker_cores'], 2)} + {fmt(cpu['postgres_cores'], 2)})",
        )
    in_worker = dig(results, "conditions.in_worker.mean_us")
    add(
        "one JavaScript condition in the sandbox, mean / p95"
        + ("; a simple one decided in the worker instead, mean" if in_worker is not None else ""),
        f"{fmt(dig(results, 'conditions.mean_us'), 0)} / {fmt(dig(results, 'conditions.p95_us'), 0)} µs"
        + (f"; {fmt(in_worker, 1)} µs" if in_worker is not None else ""),
    )
    model = dig(results, "engine.scale_out.model") or {}
    if model.get("worker_ms_per_step") is not None:
        add(
            "ceiling from CPU per step: steps/s per PostgreSQL core; PostgreSQL cores per worker running flat out",
            f"{fmt(model['steps_per_s_per_postgres_core'], 0)}; {fmt(ratio(1, model['workers_per_postgres_core']), 2)}",
        )
    for name, figure, goal, outcome in target_lines(results):
        add(
            name.replace("->", "→"),
            figure[:-1] + "\u00d7" if figure.endswith("x") else figure,
            (goal[:-1] + "\u00d7" if goal.endswith("x") else goal).replace(">=", "≥").replace("<=", "≤"),
            "" if outcome == "figure" else outcome,
        )
    return "\n".join(lines)


def replace_table(readme: str, table: str) -> str:
    """The README with the table between its markers replaced."""
    pattern = re.compile(re.escape(START) + r".*?" + re.escape(END), re.DOTALL)
    if not pattern.search(readme):
        raise SystemExit(f"the README has no {START} ... {END} block")
    return pattern.sub(lambda _: f"{START}\n{table}\n{END}", readme, count=1)
