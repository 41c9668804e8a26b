"""Document rendering benchmark: renders per second of the sample project brief, in the API's preview
and in the core.template.render action.

Run from the repository root:

    .venv/bin/python bench/documents.py            # about 30 s on 2 cores
    .venv/bin/python bench/documents.py --quick    # about 15 s

Database as in bench/throughput.py (whose helpers this script uses): an embedded PostgreSQL in a temporary
directory with DATABASE_URL unset, else a scratch database dw_bench_<random> on that server; removed at the end.
The sample set (fixtures/documents, loaded as `up` loads it) and the project-brief workflow are stored first.

What is measured, in one run, on the same database:

* Baseline: the brief rendered directly in this process (dataworkflows.documents.render, no helper,
  no database): renders/s, one at a time.
* Preview: P `POST /api/v1/templates/project-briefs/brief/render` (the stored sample data) to one API
  app in this process (Litestar's test client, one request at a time; limiter off): renders/s and
  p50/p95 latency. Each reads the template and its set, renders in a template helper and answers.
* Action: N executions of the project-brief workflow (core.template.render of the brief from the
  trigger, then core.echo) started while ONE `dataworkflows worker --concurrency C` process runs, then
  drained: renders/s = Succeeded render attempts / (first execution started -> last ended, server
  clock). Against it, N 2-node core.echo executions on the same worker (the engine's own cost).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from litestar.testing import AsyncTestClient

from dataworkflows import documents
from dataworkflows.api.app import create_app
from dataworkflows.config import Settings
from dataworkflows.db import Database
from dataworkflows.examples import example_definitions, load_template_sets
from dataworkflows.logs import configure_logging
from dataworkflows.migrations import migrate
from throughput import (
    BENCH_DIR,
    QUEUE,
    BenchError,
    Monitor,
    echo2_workflow,
    engine_worker,
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
    wait_final,
    wait_registered,
)

BRIEF_ID, ECHO2_ID = "project-brief", "bench-echo2"
SAMPLE = BENCH_DIR.parent / "fixtures" / "documents" / "project-brief-sample.json"


def sample_trigger() -> dict[str, Any]:
    import json

    trigger = json.loads(SAMPLE.read_text())["trigger"]
    assert isinstance(trigger, dict)
    return trigger


async def bench_in_process(db: Database, count: int) -> dict[str, Any]:
    sources = await db.document_templates.sources("project-briefs")
    data = sample_trigger()
    began = time.perf_counter()
    for _ in range(count):
        documents.render("brief", sources, data, "markdown")
    seconds = time.perf_counter() - began
    return {"renders": count, "seconds": seconds, "renders_per_second": ratio(count, seconds)}


async def bench_preview(conninfo: str, count: int) -> dict[str, Any]:
    app = create_app(Settings(database_url=conninfo, api_rate_per_minute=0))
    times: list[float] = []
    async with AsyncTestClient(app) as client:
        for i in range(count + 20):
            began = time.perf_counter()
            answer = await client.post("/api/v1/templates/project-briefs/brief/render", json={})
            if answer.status_code != 200:
                raise BenchError(f"preview answered {answer.status_code}: {answer.text[:500]}")
            if i >= 20:  # the first ones start the helpers
                times.append((time.perf_counter() - began) * 1000)
    seconds = sum(times) / 1000
    return {
        "renders": count,
        "seconds": seconds,
        "renders_per_second": ratio(count, seconds),
        "p50_ms": percentile(times, 50),
        "p95_ms": percentile(times, 95),
        "document_bytes": len(answer.json()["document"].encode()),
    }


async def start_runs(db: Database, workflow_id: str, count: int, trigger: dict[str, Any], batch: int) -> None:
    async def one() -> None:
        await db.executions.start(
            workflow_id=workflow_id,
            request_id=f"{workflow_id}-{secrets.token_hex(8)}",
            trigger=trigger,
            principal_id="bench",
            principal_type="user",
            correlation_id=None,
            queue=QUEUE,
        )

    for offset in range(0, count, batch):
        await asyncio.gather(*(one() for _ in range(min(batch, count - offset))))


async def bench_runs(
    db: Database, monitor: Monitor, workflow_id: str, count: int, trigger: dict[str, Any], worker: Any, limit: float
) -> dict[str, Any]:
    await monitor.checkpoint()
    await start_runs(db, workflow_id, count, trigger, 50)
    await wait_final(monitor, workflow_id, limit, worker)
    figures = await execution_figures(monitor, workflow_id)
    report_failures(workflow_id, figures)
    figures["executions_per_second"] = ratio(figures["executions"], figures["span_seconds"])
    return figures


async def run(args: argparse.Namespace, conninfo: str, description: str, workdir: Path) -> dict[str, Any]:
    configure_logging("console", "warning")
    progress("applying migrations")
    migrate(conninfo)
    previews, runs = (200, 200) if args.quick else (1000, 1000)
    results: dict[str, Any] = {
        "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
        "quick": args.quick,
        "sizes": {"previews": previews, "runs": runs, "concurrency": args.concurrency},
    }
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        monitor = Monitor(conn)
        results["machine"] = await machine_info(monitor, description)
        async with open_pool(conninfo, 12) as pool:
            db = Database(pool)
            await load_template_sets(db)
            brief = dict(example_definitions())["documents/project-brief-workflow.json"]
            await publish(db, brief)
            await publish(db, echo2_workflow(ECHO2_ID))
            progress(f"in process: {previews} renders")
            results["in_process"] = await bench_in_process(db, previews)
            progress(f"preview: {previews} requests")
            results["preview"] = await bench_preview(conninfo, previews)
            worker = engine_worker(conninfo, args.concurrency, workdir / "engine-worker.log")
            try:
                await worker.start()
                await wait_registered(monitor, worker)
                progress(f"action: {runs} project-brief runs, then {runs} 2-node echo runs")
                trigger = sample_trigger()
                results["action"] = await bench_runs(db, monitor, BRIEF_ID, runs, trigger, worker, args.timeout)
                results["echo2"] = await bench_runs(db, monitor, ECHO2_ID, runs, {"n": 1}, worker, args.timeout)
            finally:
                code, stop_seconds = await worker.stop()
                results["worker"] = {
                    "exit_code": code,
                    "stop_seconds": stop_seconds,
                    "log": summarize_log(worker.log_path),
                }
    return results


def report(results: dict[str, Any]) -> None:
    preview, action, echo2 = results["preview"], results["action"], results["echo2"]
    print(f"\nsample brief: {preview['document_bytes']} bytes of Markdown (brief + parts macros + footer include)")
    print(f"{'measurement':<58} {'figure':>12}")
    rows = [
        ("in process, documents.render (no helper): renders/s", results["in_process"]["renders_per_second"]),
        ("API preview, one at a time: renders/s", preview["renders_per_second"]),
        ("API preview: p50 ms", preview["p50_ms"]),
        ("API preview: p95 ms", preview["p95_ms"]),
        ("action, 1 worker: project-brief runs (renders)/s", action["executions_per_second"]),
        ("same worker, 2-node core.echo runs/s", echo2["executions_per_second"]),
        ("render runs / echo runs", ratio(action["executions_per_second"], echo2["executions_per_second"])),
    ]
    for label, value in rows:
        print(f"{label:<58} {fmt(value, 2):>12}")
    print(f"action outcomes: {action['statuses']}; echo outcomes: {echo2['statuses']}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Renders per second of the sample project brief.")
    parser.add_argument("--quick", action="store_true", help="200 previews and 200 runs instead of 1,000")
    parser.add_argument("--concurrency", "-c", type=int, default=20, help="worker concurrency (default 20)")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds allowed per phase (default 240)")
    parser.add_argument("--total-timeout", type=float, default=600.0, help="seconds allowed in all (default 600)")
    parser.add_argument("--no-save", action="store_true", help="do not write bench/results/documents-*.json")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    return run_main("documents", parse_args(argv), run, report, errors=(BenchError, psycopg.Error))


if __name__ == "__main__":
    sys.exit(main())
