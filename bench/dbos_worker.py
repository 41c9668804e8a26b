"""The peer of bench/throughput.py: DBOS Transact two-step workflows (`pip install -e '.[bench]'`).

Run by bench/dbos_peer.py as a child process (DBOS is a process-wide singleton), in one of two modes, against
DBOS's own database on the benchmark's PostgreSQL server:

    dbos_worker.py enqueue --url URL --count N --concurrency C --polling-ms P
        creates DBOS's schema, registers the queue (C workflows at once per process, polled every P ms), enqueues
        N workflows without running any (this process listens to no queue), prints one JSON line, exits;
    dbos_worker.py drain --url URL
        launches DBOS, which dequeues and runs the queue's workflows (two @DBOS.step functions in a
        @DBOS.workflow, each step checkpointed), until SIGTERM.

The parent counts the finished workflows in DBOS's tables (dbos.workflow_status) and stops the drain.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
from typing import Any

from dbos import DBOS

QUEUE = "dw_bench"
APP = "dw-bench-peer"


@DBOS.step()
def step_one(index: int) -> dict[str, Any]:
    return {"echo": f"hi from step one ({index})"}


@DBOS.step()
def step_two(index: int) -> dict[str, Any]:
    return {"echo": f"hi from step two ({index})"}


@DBOS.workflow()
def two_steps(index: int) -> int:
    step_one(index)
    step_two(index)
    return index


def configure(url: str) -> None:
    DBOS(config={"name": APP, "system_database_url": url, "log_level": "WARNING", "run_migrations": True})


def enqueue(url: str, count: int, concurrency: int, polling_ms: float) -> dict[str, Any]:
    configure(url)
    DBOS.listen_queues([])  # this process only enqueues
    DBOS.launch()
    try:
        DBOS.register_queue(
            QUEUE, worker_concurrency=concurrency, polling_interval_sec=polling_ms / 1000, on_conflict="always_update"
        )
        started = time.perf_counter()
        for i in range(count):
            DBOS.enqueue_workflow(QUEUE, two_steps, i)
        seconds = time.perf_counter() - started
    finally:
        DBOS.destroy()
    return {"enqueued": count, "seconds": seconds}


def drain(url: str) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    configure(url)
    DBOS.listen_queues([QUEUE])
    DBOS.launch()
    try:
        stop.wait()
    finally:
        DBOS.destroy()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["enqueue", "drain"])
    parser.add_argument("--url", required=True, help="DBOS's system database (postgresql://...)")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--polling-ms", type=float, default=10.0)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.mode == "enqueue":
        print(json.dumps(enqueue(args.url, args.count, args.concurrency, args.polling_ms)), flush=True)
    else:
        drain(args.url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
