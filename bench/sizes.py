"""The sizes of one bench/throughput.py run: from the command line, with defaults for a full and a --quick run."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Sizes:
    executions: int
    concurrency: int
    start_batch: int
    latency_executions: int
    latency_interval_ms: float | None
    commits: int
    pool_checks: int
    wide_executions: int
    wide_fanout: int
    chain_executions: int
    chain_length: int
    condition_evals: int
    phase_timeout: float
    # Added with results schema_version 2.
    scale_executions: int = 0
    scale_workers: tuple[int, ...] = (1, 2, 4)
    inflight: int = 1000
    inflight_hold_ms: int = 20_000
    waiting: int = 100_000
    waiting_timeout: float = 900.0
    dbos_executions: int = 0
    dbos_timeout: float = 120.0
    dbos_polling_ms: float = 10.0
    # Added with results schema_version 9: the offered loads (shares of the drain capacity) at which the
    # start latency is measured again after the half-capacity halves (engine.latency.at_load).
    latency_loads: tuple[float, ...] = (0.1, 0.25)
    # Added with results schema_version 11: executions of the branching workflow (engine.branch).
    branch_executions: int = 0


def sizes_from_args(args: argparse.Namespace) -> Sizes:
    quick = args.quick

    def pick(value: Any, default: Any, quick_default: Any) -> Any:
        if value is not None:
            return value
        return quick_default if quick else default

    executions = pick(args.executions, 2000, 300)
    return Sizes(
        executions=executions,
        concurrency=pick(args.concurrency, 40, 40),
        start_batch=pick(args.start_batch, 100, 100),
        latency_executions=pick(args.latency_executions, 400, 50),
        latency_interval_ms=args.latency_interval_ms,
        commits=pick(args.commits, 5000, 1000),
        pool_checks=pick(None, 2000, 500),
        wide_executions=pick(args.wide_executions, 200, 8),
        wide_fanout=50,
        chain_executions=pick(args.chain_executions, 500, 8),
        chain_length=20,
        condition_evals=pick(args.condition_evals, 2000, 300),
        phase_timeout=args.timeout,
        scale_executions=pick(args.scale_executions, executions, executions),
        scale_workers=tuple(args.scale_workers) if args.scale_workers else ((1, 2) if quick else (1, 2, 4)),
        inflight=pick(args.inflight, 1000, 100),
        inflight_hold_ms=pick(None, 20_000, 5_000),
        waiting=pick(args.waiting, 100_000, 1000),
        waiting_timeout=args.waiting_timeout,
        dbos_executions=pick(args.dbos_executions, executions, executions),
        dbos_timeout=args.dbos_timeout,
        dbos_polling_ms=args.dbos_polling_ms,
        branch_executions=pick(getattr(args, "branch_executions", None), 1000, 8),
    )
