"""Runs that nobody picks up still end: every run has a deadline (its definition's workflowTimeout, else
DW_DEFAULT_WORKFLOW_TIMEOUT_SECONDS), and a run whose deadline passed while no worker held it
(throttled, parked on a wait, suspended, or no worker running at all) is ended TimedOut by
dw.time_out_overdue_v2, unless it ends as a worker taking it back would end it: Cancelled if its cancel
came in time, Failed if a node failed unhandled before its worker died. Workers call it with their
recovery pass; the API runs `overdue_loop`, so that runs time out also while no worker runs. SKIP LOCKED
keeps the callers from doubling up, and a run a worker holds is left to that worker, which times it out
itself."""

from __future__ import annotations

import asyncio
from uuid import UUID

import structlog

from dataworkflows import metrics
from dataworkflows.db import Database
from dataworkflows.tenancy import all_tenants

log = structlog.get_logger("dataworkflows.deadlines")


async def time_out_overdue(db: Database, *, limit: int = 500) -> list[tuple[UUID, str]]:
    """One pass: ends at most `limit` overdue runs; returns (execution id, workflow id) of each.
    Never raises (a maintenance loop must not die): a failed pass is logged and the next one
    tries again."""
    try:
        with all_tenants():
            ended = await db.operations.time_out_overdue(limit=limit)
    except Exception as exc:
        log.warning("timing out overdue runs failed", error=str(exc), error_type=type(exc).__name__)
        return []
    for execution_id, workflow_id, status in ended:
        metrics.EXECUTIONS_FINISHED.labels(workflow_id, status).inc()
        if status == "TimedOut":
            log.warning("overdue execution timed out", execution_id=str(execution_id), workflow_id=workflow_id)
        else:
            # Its worker died after a cancel it had not taken in, or after a node failed unhandled:
            # it ends as the worker taking it back would have ended it (Cancelled, Failed).
            log.warning(
                "overdue execution ended", execution_id=str(execution_id), workflow_id=workflow_id, status=status
            )
    return [(execution_id, workflow_id) for execution_id, workflow_id, _ in ended]


async def overdue_loop(db: Database, interval_seconds: float) -> None:
    """Calls time_out_overdue every interval until cancelled (a full batch goes again at once)."""
    while True:
        ended = await time_out_overdue(db)
        if len(ended) < 500:
            await asyncio.sleep(interval_seconds)
