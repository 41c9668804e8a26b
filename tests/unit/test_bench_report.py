"""bench/report.py and bench/compare.py on a canned results file (tests/unit/data/throughput-results.json, from a
--quick run, worker logs trimmed; engine.latency.at_load from a later --quick run, schema version 9;
engine.latency.capacity_with_starts and at_half_capacity_with_starts from a third, schema version 10; engine.branch
from a fourth, a run of that phase alone, schema version 11; conditions.in_worker from a fifth, that phase alone,
schema version 12; engine.latency.bare_queue from a sixth, the latency phase alone, schema version 13): the schema's
keys, the ratios, the targets' verdicts, the README table and the side-by-side comparison. No database, no timing."""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CANNED = Path(__file__).resolve().parent / "data" / "throughput-results.json"
# bench/ is scripts, not a package: on the path only while its modules are imported (its other scripts' names,
# such as auth or limits, must not shadow anything for the rest of the session).
sys.path.insert(0, str(ROOT / "bench"))
try:
    import compare
    import report
finally:
    sys.path.remove(str(ROOT / "bench"))


@pytest.fixture
def results() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(CANNED.read_text())
    return data


def test_the_schema_keeps_version_1_keys_and_adds_version_2(results: dict[str, Any]) -> None:
    assert results["schema_version"] == report.SCHEMA_VERSION == 13
    for key in ("timestamp", "quick", "sizes", "machine", "commits", "pool_check", "procrastinate", "engine"):
        assert key in results, key
    for key in ("start_backlog", "drain", "latency", "wide", "chain", "workers", "scale_out", "memory"):
        assert key in results["engine"], key
    assert set(results["engine"]["latency"]["start_to_first_node_ms"]) >= {"p50", "p95"}
    # Version 3: the same starts again once the fresh worker's have ended.
    assert set(results["engine"]["latency"]["running_start_to_first_node_ms"]) >= {"p50", "p95"}
    # Version 4: from the start call's answer to the first node, fresh and running worker.
    for key in ("answer_to_first_node_ms", "running_answer_to_first_node_ms"):
        assert set(results["engine"]["latency"][key]) >= {"p50", "p95"}
    assert "dbos" in results["peer"]
    # The version-1 ratio names keep their meaning; version 2 adds the peer's.
    assert list(report.compute_ratios(results))[:7] == [
        "engine_steps_per_s / procrastinate_jobs_per_s",
        "engine_executions_per_s / procrastinate_jobs_per_s",
        "procrastinate_jobs_per_s / commits_per_s (1 conn)",
        "procrastinate_jobs_per_s / commits_per_s (C conns)",
        "wide_steps_per_s / procrastinate_jobs_per_s",
        "chain_steps_per_s / procrastinate_jobs_per_s",
        "engine_transactions_per_step / procrastinate_transactions_per_job",
    ]
    assert "engine_steps_per_s / dbos_steps_per_s" in report.compute_ratios(results)
    # Version 5: the same 2-node backlog with group commit off, and what group commit gains.
    assert set(results["engine"]["drain_unbatched"]) >= {"steps_per_second", "transactions_per_step", "cpu_ms_per_step"}
    assert list(report.compute_ratios(results))[-3] == "engine_steps_per_s / unbatched_steps_per_s"
    # Version 6: the same 2-node backlog with one job a fetch, and what the batched fetch gains.
    assert set(results["engine"]["drain_one_fetch"]) >= {"steps_per_second", "transactions_per_step", "cpu_ms_per_step"}
    assert list(report.compute_ratios(results))[-2] == "engine_steps_per_s / one_fetch_steps_per_s"
    # Version 7: the start client warmed before the start-latency phase.
    assert set(results["engine"]["latency"]["client_warm_up"]) == {"connections", "starts_per_connection", "seconds"}
    # Version 8: what the machine's CPUs did in each half of the start-latency phase.
    for half in ("fresh", "running"):
        assert set(results["engine"]["latency"]["cpu"][half]) >= {
            "worker_cores",
            "postgres_cores",
            "client_cores",
            "machine_cores",
            "busy_share_of_machine",
            "postgres_cpu_ms_per_execution",
            "worker_cpu_ms_per_execution",
        }
    # Version 9: the start latency again at 0.1 and 0.25 of the drain capacity.
    at_load = results["engine"]["latency"]["at_load"]
    assert list(at_load) == ["10pct", "25pct"]
    for point in at_load.values():
        assert set(point["start_to_first_node_ms"]) >= {"p50", "p95"}
        assert "busy_share_of_machine" in point["cpu"]
    # Version 10: the capacity with the starts counted, and the start latency at half of it.
    latency = results["engine"]["latency"]
    assert set(latency["capacity_with_starts"]) >= {
        "executions",
        "span_seconds",
        "executions_per_second",
        "share_of_drain_capacity",
        "cpu",
    }
    assert set(latency["at_half_capacity_with_starts"]) == set(at_load["10pct"])
    # Version 11: runs with data in them (templates, edge conditions), as the chain's keys, and their ratio.
    assert set(results["engine"]["branch"]) == set(results["engine"]["chain"])
    assert list(report.compute_ratios(results))[-1] == "branch_steps_per_s / procrastinate_jobs_per_s"
    # Version 12: the sandbox's figure keeps its meaning; a simple condition decided in the worker beside it.
    assert set(results["conditions"]["in_worker"]) == {"mean_us", "p50_us", "p95_us"}
    # Version 13: bare Procrastinate jobs' start latency at the latency phase's rate.
    bare = results["engine"]["latency"]["bare_queue"]
    assert set(bare) >= {"rate_per_second", "runs", "worker_cpu_ms_per_run", "postgres_cpu_ms_per_run"}
    assert set(bare["start_to_first_node_ms"]) == {"p50", "p95"}


def test_ratios_are_same_run_quotients(results: dict[str, Any]) -> None:
    ratios = report.compute_ratios(results)
    jobs = results["procrastinate"]["jobs_per_second"]
    drain = results["engine"]["drain"]
    assert ratios["engine_steps_per_s / procrastinate_jobs_per_s"] == pytest.approx(drain["steps_per_second"] / jobs)
    assert ratios["chain_steps_per_s / procrastinate_jobs_per_s"] == pytest.approx(
        results["engine"]["chain"]["steps_per_second"] / jobs
    )
    assert ratios["engine_steps_per_s / dbos_steps_per_s"] == pytest.approx(
        drain["steps_per_second"] / results["peer"]["dbos"]["steps_per_second"]
    )
    assert ratios["engine_steps_per_s / unbatched_steps_per_s"] == pytest.approx(
        drain["steps_per_second"] / results["engine"]["drain_unbatched"]["steps_per_second"]
    )
    assert ratios["engine_steps_per_s / one_fetch_steps_per_s"] == pytest.approx(
        drain["steps_per_second"] / results["engine"]["drain_one_fetch"]["steps_per_second"]
    )
    # A phase that did not run gives no ratio rather than an error.
    del results["procrastinate"]
    assert report.compute_ratios(results)["engine_steps_per_s / procrastinate_jobs_per_s"] is None


def test_targets_say_met_or_not_met(results: dict[str, Any]) -> None:
    results = copy.deepcopy(results)
    results["ratios"] = report.compute_ratios(results)
    results["engine"]["drain"]["transactions_per_step"] = 1.9  # under the <= 2 target
    results["engine"]["latency"]["start_to_first_node_ms"]["p95"] = 25.0  # over the <= 10 ms target
    verdicts = {t["path"]: t["met"] for t in report.evaluate_targets(results)}
    assert verdicts["engine.drain.transactions_per_step"] is True
    assert verdicts["engine.latency.start_to_first_node_ms.p95"] is False
    assert verdicts["engine.memory.inflight.rss_mb"] is None  # a figure, no threshold
    lines: list[str] = []
    report.print_report(results, lines.append)
    text = "\n".join(lines)
    assert "targets (issue 17)" in text
    tx = next(line for line in lines if "transactions per step (2-node backlog)" in line and "<=" in line)
    assert tx.rstrip().endswith(" met") and "NOT" not in tx
    p95 = next(line for line in lines if "start latency p95 at half drain capacity" in line)
    assert p95.rstrip().endswith("NOT met")
    assert any("scale-out, 2 worker(s)" in line for line in lines)
    assert any(line.startswith("ceiling: workers per PostgreSQL core") for line in lines)
    assert any(line.startswith("start client warmed first") and "20 x 6" in line for line in lines)
    answered = next(line for line in lines if line.startswith("start call answered -> first node p50 / p95"))
    assert "0.03 / 5.22" in answered
    # Version 5: the same backlog with group commit off, beside the default drain.
    unbatched = next(line for line in lines if line.startswith("group commit off: steps/s (2-node backlog)"))
    assert "635.0" in unbatched
    assert any(line.startswith("group commit off: transactions per step") and "1.28" in line for line in lines)
    # Version 6: the same backlog with one job a fetch.
    one_fetch = next(line for line in lines if line.startswith("one job a fetch: steps/s (2-node backlog)"))
    assert "679.4" in one_fetch
    assert any(line.startswith("one job a fetch: transactions per step") and "0.93" in line for line in lines)
    # Version 8: the cores busy and the CPU per run in the start-latency phase.
    busy = next(line for line in lines if line.startswith("latency phase, fresh worker: cores busy"))
    assert "0.32 + 0.80 + 0.28" in busy and "0.70 of 2" in busy
    per_run = next(line for line in lines if line.startswith("latency phase, running worker: CPU per run"))
    assert "1.80 + 4.00" in per_run
    # Version 9: the start latency at lower offered loads.
    low = next(line for line in lines if line.startswith("start latency p50 / p95 at 0.10 of drain capacity"))
    assert "1.6 / 1.9" in low and "50 starts at 96/s" in low and "machine 0.29 busy" in low
    # Version 10: the capacity with starts, and the latency at half of it.
    capacity = next(line for line in lines if line.startswith("capacity with starts: executions/s"))
    assert "630.2" in capacity and "0.79 of drain capacity" in capacity and "machine 0.77 busy" in capacity
    half = next(line for line in lines if line.startswith("start latency p50 / p95 at half the capacity with starts"))
    assert "3.5 / 6.7" in half and "50 starts at 316/s (0.39 of drain capacity)" in half
    # Version 13: the bare queue at the same rate; a failed phase says so.
    bare = next(line for line in lines if line.startswith("bare Procrastinate jobs at the same rate"))
    assert "13.5 / 42.6" in bare and "100 no-op jobs" in bare and "1.50 + 1.40 ms" in bare
    # Without the phase (the pace given), no line.
    del (
        results["engine"]["latency"]["capacity_with_starts"],
        results["engine"]["latency"]["at_half_capacity_with_starts"],
    )
    lines.clear()
    report.print_report(results, lines.append)
    assert not any("capacity with starts" in line for line in lines)


def test_a_skipped_peer_is_said_so(results: dict[str, Any]) -> None:
    results["peer"] = {"dbos": {"skipped": "dbos is not installed (pip install -e '.[bench]')"}}
    results["ratios"] = report.compute_ratios(results)
    lines: list[str] = []
    report.print_report(results, lines.append)
    assert any("peer: DBOS Transact" in line and "skipped" in line for line in lines)
    peer = next(t for t in report.target_lines(results) if t[0].startswith("2-node steps/s / DBOS"))
    assert peer[3] == "not measured"


def test_readme_table_replaces_only_the_marked_block(results: dict[str, Any]) -> None:
    results["ratios"] = report.compute_ratios(results)
    readme = f"before\n{report.START}\nold table\n{report.END}\nafter\n"
    updated = report.replace_table(readme, report.readme_table(results))
    assert updated.startswith("before\n" + report.START) and updated.endswith(report.END + "\nafter\n")
    assert "old table" not in updated
    assert "| 2-node backlog steps/s / no-op jobs/s |" in updated and "\u2265 1.50\u00d7" in updated
    answered = next(line for line in updated.splitlines() if "from a call's answer to the first node" in line)
    assert "12.5 ms; 5.2 / 5.7 ms" in answered
    off = next(line for line in updated.splitlines() if "group commit off (a transaction per record)" in line)
    assert "| 635; 1.28; 0.77 + 1.55 ms |" in off
    one = next(line for line in updated.splitlines() if "one job a fetch (`DW_WORKER_FETCH_BATCH=1`)" in line)
    assert "| 679; 0.93; 0.72 + 1.32 ms |" in one
    busy = next(line for line in updated.splitlines() if line.startswith("| start latency phase (fresh worker)"))
    assert (
        "| 0.32 + 0.80 + 0.28 of 2 cores (0.70); 1.60 + 4.00 ms (the backlog drain's, start apart: 0.90 + 1.37 ms) |"
        in busy
    )
    lower = next(line for line in updated.splitlines() if line.startswith("| start latency at lower offered loads"))
    assert "| 0.10: 1.6 / 1.9 ms (0.29); 0.25: 2.5 / 3.6 ms (" in lower
    with_starts = next(line for line in updated.splitlines() if line.startswith("| capacity with starts"))
    assert "| 630 (0.79); 3.5 / 6.7 ms |" in with_starts
    bare = next(line for line in updated.splitlines() if line.startswith("| bare Procrastinate no-op jobs"))
    assert "| 13.5 / 42.6 ms; 1.50 + 1.40 ms |" in bare
    with pytest.raises(SystemExit):
        report.replace_table("no markers", "table")


def test_compare_prints_both_files_and_b_over_a(results: dict[str, Any], tmp_path: Path) -> None:
    faster = copy.deepcopy(results)
    faster["engine"]["drain"]["steps_per_second"] = results["engine"]["drain"]["steps_per_second"] * 2
    del faster["peer"]  # a phase missing from one side shows "-"
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(results))
    b.write_text(json.dumps(faster))
    lines: list[str] = []
    assert compare.main([str(a), str(b)], lines.append) == 0
    steps = next(line for line in lines if line.startswith("2-node backlog steps/s"))
    assert steps.split()[-1] == "2.00"
    dbos = next(line for line in lines if line.startswith("DBOS two-step steps/s"))
    assert dbos.split()[-2:] == ["-", "-"]
    everything: list[str] = []
    compare.main([str(a), str(b), "--all"], everything.append)
    assert any(line.startswith("engine.drain.steps_per_second") for line in everything)
    low = next(line for line in lines if line.startswith("start latency p50 ms at 0.25 of capacity"))
    assert low.split()[-1] == "1.00"
    half = next(line for line in lines if line.startswith("start latency p50 ms at half the capacity with starts"))
    assert half.split()[-3:] == ["3.53", "3.53", "1.00"]


def test_compare_shows_every_targets_figure(results: dict[str, Any], tmp_path: Path) -> None:
    """compare's headline figures hold every target's (its docstring says so): the running worker's
    start latencies, two of issue 17's targets, were missing."""
    paths = {path for _, path in compare.FIGURES}
    missing = [t.name for t in report.TARGETS if not t.path.startswith("ratios.") and t.path not in paths]
    assert missing == []
    a = tmp_path / "a.json"
    a.write_text(json.dumps(results))
    lines: list[str] = []
    compare.main([str(a), str(a)], lines.append)
    assert any(line.startswith("start latency p95 ms, running worker") for line in lines)


def test_compare_reads_an_older_schemas_worker_decided_condition_as_such(
    results: dict[str, Any], tmp_path: Path
) -> None:
    """Before schema 12, conditions.mean_us was the worker's decision once the engine decided simple conditions
    itself (bench/published/throughput-20261207T125929Z.json: 0.98 us, schema 11): beside a schema-12 file's
    sandbox figure it read as 200 times slower. It is compared as the worker's decision."""
    old = copy.deepcopy(results)
    old["schema_version"] = 11
    old["conditions"] = {"evaluations": 2000, "mean_us": 0.98, "p50_us": 0.97, "p95_us": 1.04, "max_us": 5.9}
    new = copy.deepcopy(results)
    new["schema_version"] = 12
    new["conditions"] = {**new["conditions"], "mean_us": 197.0, "in_worker": {"mean_us": 1.78}}
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(old))
    b.write_text(json.dumps(new))
    lines: list[str] = []
    compare.main([str(a), str(b)], lines.append)
    sandbox = next(line for line in lines if line.startswith("JS condition mean us"))
    assert sandbox.split()[-3:] == ["-", "197.00", "-"]
    worker = next(line for line in lines if line.startswith("JS condition decided in the worker, mean us"))
    assert worker.split()[-3:] == ["0.98", "1.78", "1.82"]
    old["conditions"]["mean_us"] = 191.0  # a sandbox's figure, as schema 11 files before it measured
    a.write_text(json.dumps(old))
    lines.clear()
    compare.main([str(a), str(b)], lines.append)
    sandbox = next(line for line in lines if line.startswith("JS condition mean us"))
    assert sandbox.split()[-3:] == ["191.00", "197.00", "1.03"]
