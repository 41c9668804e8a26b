"""Baseline A of bench/throughput.py: a raw Procrastinate worker whose one task does nothing.

It is set up like the engine's worker (workers/app.py): the same connection pool (dataworkflows.db.make_pool,
autocommit, checked on checkout), PsycopgConnector over that pool, LISTEN/NOTIFY, delete_jobs="successful", the
same heartbeat settings. It drains its queue and exits (wait=False), then prints one JSON line of figures:

    DATABASE_URL=... .venv/bin/python bench/noop_worker.py --queue bench_noop --concurrency 20

throughput.py defers the jobs (through build_app() and batch_defer_async) before starting this process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from dataclasses import dataclass

import procrastinate

from dataworkflows.db import make_pool

NOOP_TASK = "bench.noop"


@dataclass
class Stats:
    """First task start and last task end (perf_counter), so process start-up is not counted."""

    jobs: int = 0
    first_start: float | None = None
    last_end: float | None = None

    def record(self, started: float) -> None:
        self.jobs += 1
        if self.first_start is None:
            self.first_start = started
        self.last_end = time.perf_counter()


def build_app(queue: str, stats: Stats | None = None) -> procrastinate.App:
    """The app with the no-op task on `queue`; the deferring side passes no stats."""
    app = procrastinate.App(connector=procrastinate.PsycopgConnector())

    @app.task(name=NOOP_TASK, queue=queue)
    async def noop(**_: object) -> None:
        if stats is not None:
            stats.record(time.perf_counter())

    return app


async def drain(
    conninfo: str, queue: str, concurrency: int, limit_seconds: float, *, listen: bool = False
) -> dict[str, object]:
    """Runs the queue's jobs: until it is empty, or with `listen` as they come until SIGTERM or the limit (jobs
    kept, so their deferred and started events give each job's start latency)."""
    stats = Stats()
    app = build_app(queue, stats)
    # Sized like the engine worker's pool: one connection per concurrent job plus the listener's.
    pool = make_pool(conninfo, min_size=2, max_size=max(10, concurrency + 4), name="noop-worker")
    await pool.open(wait=True, timeout=30)
    timed_out = False
    try:
        async with app.open_async(pool=pool):
            started, cpu_started = time.perf_counter(), time.process_time()
            try:
                async with asyncio.timeout(limit_seconds):
                    await app.run_worker_async(
                        queues=[queue],
                        concurrency=concurrency,
                        name=f"noop-{os.getpid()}",
                        wait=listen,
                        delete_jobs="never" if listen else "successful",
                        shutdown_graceful_timeout=10.0,
                        update_heartbeat_interval=10.0,
                        stalled_worker_timeout=30.0,
                    )
            except TimeoutError:
                timed_out = not listen
            run_seconds = time.perf_counter() - started
            cpu_seconds = time.process_time() - cpu_started
    finally:
        await pool.close()
    span = (stats.last_end - stats.first_start) if stats.first_start and stats.last_end else None
    return {
        "jobs": stats.jobs,
        "span_seconds": span,
        "run_seconds": run_seconds,
        "cpu_seconds": cpu_seconds,
        "timed_out": timed_out,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--queue", default="bench_noop")
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=300.0, help="give up after this many seconds")
    parser.add_argument(
        "--listen", action="store_true", help="run jobs as they come (kept), until SIGTERM or --timeout"
    )
    args = parser.parse_args()
    # The app is built in this script (__main__) on purpose; Procrastinate warns about that once.
    logging.getLogger("procrastinate.blueprints").setLevel(logging.ERROR)
    conninfo = os.environ.get("DATABASE_URL")
    if not conninfo:
        print("error: DATABASE_URL is not set", file=sys.stderr)
        return 2
    result = asyncio.run(drain(conninfo, args.queue, args.concurrency, args.timeout, listen=args.listen))
    print(json.dumps(result), flush=True)
    return 1 if result["timed_out"] else 0


if __name__ == "__main__":
    sys.exit(main())
