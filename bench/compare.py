"""Two bench/throughput.py results files side by side: each figure, A, B and B/A.

    .venv/bin/python bench/compare.py bench/results/throughput-A.json bench/results/throughput-B.json
    .venv/bin/python bench/compare.py A.json B.json --all    # every numeric figure in either file

By default the headline figures (FIGURES below, which hold every target's figure) and every ratio; a figure
missing from one file (an older schema, a skipped phase) shows "-". B/A is above 1 when B's figure is larger,
whatever the figure: read it with the figure's direction (steps/s: higher is better; latency, transactions,
CPU: lower is better).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from figures import fmt, ratio
from report import dig

# (label, dotted path in the results): the figures that say how a run went.
FIGURES = (
    ("raw commits/s, 1 connection", "commits.single_connection.commits_per_second"),
    ("procrastinate no-op jobs/s", "procrastinate.jobs_per_second"),
    ("procrastinate transactions per job", "procrastinate.transactions_per_job"),
    ("engine starts/s (no worker)", "engine.start_backlog.starts_per_second"),
    ("2-node backlog executions/s", "engine.drain.executions_per_second"),
    ("2-node backlog steps/s", "engine.drain.steps_per_second"),
    ("2-node transactions per step", "engine.drain.transactions_per_step"),
    ("2-node worker CPU s", "engine.drain.cpu.worker_cpu_seconds"),
    ("2-node postgres CPU s", "engine.drain.cpu.postgres_cpu_seconds"),
    ("2-node steps/s, group commit off", "engine.drain_unbatched.steps_per_second"),
    ("2-node transactions per step, group commit off", "engine.drain_unbatched.transactions_per_step"),
    ("2-node steps/s, one job a fetch", "engine.drain_one_fetch.steps_per_second"),
    ("2-node transactions per step, one job a fetch", "engine.drain_one_fetch.transactions_per_step"),
    ("start latency p50 ms", "engine.latency.start_to_first_node_ms.p50"),
    ("start latency p95 ms", "engine.latency.start_to_first_node_ms.p95"),
    ("start latency p50 ms, running worker", "engine.latency.running_start_to_first_node_ms.p50"),
    ("start latency p95 ms, running worker", "engine.latency.running_start_to_first_node_ms.p95"),
    ("start latency offered load / capacity", "engine.latency.offered_load_vs_drain_capacity"),
    ("start latency p50 ms at 0.25 of capacity", "engine.latency.at_load.25pct.start_to_first_node_ms.p50"),
    ("start latency p95 ms at 0.25 of capacity", "engine.latency.at_load.25pct.start_to_first_node_ms.p95"),
    ("start latency p50 ms at 0.10 of capacity", "engine.latency.at_load.10pct.start_to_first_node_ms.p50"),
    ("capacity with starts, executions/s", "engine.latency.capacity_with_starts.executions_per_second"),
    ("capacity with starts / drain capacity", "engine.latency.capacity_with_starts.share_of_drain_capacity"),
    (
        "start latency p50 ms at half the capacity with starts",
        "engine.latency.at_half_capacity_with_starts.start_to_first_node_ms.p50",
    ),
    (
        "start latency p95 ms at half the capacity with starts",
        "engine.latency.at_half_capacity_with_starts.start_to_first_node_ms.p95",
    ),
    ("bare queue start latency p50 ms, same rate", "engine.latency.bare_queue.start_to_first_node_ms.p50"),
    ("bare queue start latency p95 ms, same rate", "engine.latency.bare_queue.start_to_first_node_ms.p95"),
    ("start latency phase: machine busy (share of cores)", "engine.latency.cpu.fresh.busy_share_of_machine"),
    ("start latency phase: postgres CPU ms per run", "engine.latency.cpu.fresh.postgres_cpu_ms_per_execution"),
    ("fan-out 1->50->1 steps/s", "engine.wide.steps_per_second"),
    ("chain 20 steps/s", "engine.chain.steps_per_second"),
    ("branch steps/s", "engine.branch.steps_per_second"),
    ("worker RSS MB, in flight", "engine.memory.inflight.rss_mb"),
    ("worker RSS MB, waiting", "engine.memory.waiting.rss_mb"),
    ("DBOS two-step steps/s", "peer.dbos.steps_per_second"),
    ("JS condition mean us", "conditions.mean_us"),
    ("JS condition decided in the worker, mean us", "conditions.in_worker.mean_us"),
    ("total run seconds", "total_seconds"),
)


# A sandbox helper's round trip is about 200 us; the worker's decision of a simple condition about 1 us. Before
# schema 12 conditions.mean_us was whichever the engine did with the phase's (simple) condition: the helper's
# until the worker decided simple conditions itself, then the worker's (5f3d410's run read 0.98 us, ec58c5f's
# 191 us, both schema 11). Such a file's figures below this are compared as conditions.in_worker, not as the
# sandbox's (compared with a schema-12 file, the sandbox's figure read as 200 times slower).
IN_WORKER_BELOW_US = 20.0


def comparable(results: dict[str, Any]) -> dict[str, Any]:
    """The results with an older schema's condition figures under the keys that mean what they measured."""
    conditions = results.get("conditions")
    if results.get("schema_version", 1) >= 12 or not isinstance(conditions, dict):
        return results
    mean = conditions.get("mean_us")
    if not isinstance(mean, int | float) or mean >= IN_WORKER_BELOW_US:
        return results
    timings = ("mean_us", "p50_us", "p95_us", "max_us", "under_1ms")
    moved = {key: value for key, value in conditions.items() if key not in timings}
    moved["in_worker"] = {key: conditions[key] for key in ("mean_us", "p50_us", "p95_us") if key in conditions}
    return {**results, "conditions": moved}


def scale_figures(results: dict[str, Any]) -> dict[str, float]:
    points = dig(results, "engine.scale_out.points") or []
    return {f"scale-out {p['workers']} worker(s) steps/s": p["steps_per_second"] for p in points}


def numeric_leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, float]]:
    """Every int/float in the results (booleans apart), by dotted path; list items by index."""
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield prefix, float(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from numeric_leaves(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from numeric_leaves(item, f"{prefix}.{i}")


def comparison_rows(a: dict[str, Any], b: dict[str, Any], everything: bool = False) -> list[tuple[str, Any, Any]]:
    """(figure, value in A, value in B) in a stable order: the headline figures (every target's figure among
    them), scale-out, ratios."""
    if everything:
        leaves_a, leaves_b = dict(numeric_leaves(a)), dict(numeric_leaves(b))
        return [(key, leaves_a.get(key), leaves_b.get(key)) for key in sorted(leaves_a.keys() | leaves_b.keys())]
    rows: list[tuple[str, Any, Any]] = [(label, dig(a, path), dig(b, path)) for label, path in FIGURES]
    scale_a, scale_b = scale_figures(a), scale_figures(b)
    rows += [(label, scale_a.get(label), scale_b.get(label)) for label in sorted(scale_a.keys() | scale_b.keys())]
    names = list(a.get("ratios", {}))
    names += [name for name in b.get("ratios", {}) if name not in names]
    rows += [(name, a.get("ratios", {}).get(name), b.get("ratios", {}).get(name)) for name in names]
    return rows


def describe(results: dict[str, Any]) -> str:
    machine = results.get("machine", {})
    return (
        f"{results.get('timestamp', '?')}  git {machine.get('git') or '-'}  schema "
        f"{results.get('schema_version', 1)}{'  --quick' if results.get('quick') else ''}"
    )


def render(a: dict[str, Any], b: dict[str, Any], everything: bool = False) -> list[str]:
    rows = comparison_rows(a, b, everything)
    width = max(len(r[0]) for r in rows) + 2
    lines = [f"A: {describe(a)}", f"B: {describe(b)}", ""]
    lines.append(f"{'figure':<{width}}{'A':>14}{'B':>14}{'B/A':>9}")
    for label, va, vb in rows:
        both = isinstance(va, int | float) and isinstance(vb, int | float)
        change = fmt(ratio(float(vb), float(va)), 2) if both else "-"
        lines.append(f"{label:<{width}}{fmt(va, 2):>14}{fmt(vb, 2):>14}{change:>9}")
    return lines


def main(argv: list[str] | None = None, write: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="results file A (bench/results/throughput-*.json)")
    parser.add_argument("b", type=Path, help="results file B")
    parser.add_argument("--all", action="store_true", help="every numeric figure, by its path in the JSON")
    args = parser.parse_args(argv)
    a, b = (comparable(json.loads(path.read_text())) for path in (args.a, args.b))
    for line in render(a, b, args.all):
        write(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
