"""The retention job every worker runs: every DW_RETENTION_INTERVAL_SECONDS it removes finished runs
older than their workflow's retention (DW_RETENTION_DAYS, off by default, for workflows without
their own), a whole tree at a time, in batches of whole trees holding DW_RETENTION_BATCH_SIZE runs
at most (a larger tree alone) (dataworkflows.retention, dw.prune_executions_v1), until a batch
removes nothing.

Each batch is one transaction that locks only finished runs (FOR UPDATE SKIP LOCKED), so running
work never waits for it; batches of several workers take turns (an advisory lock in the
procedure). It runs across tenants (the worker starts it under all_tenants()). A failed pass is
logged and tried again at the next one; what each pass removed is logged and counted
(dataworkflows_retention_removed_total). Its calls are not bounded by DW_WORKER_ANSWER_SECONDS.
"""

from __future__ import annotations

import asyncio
import time

import msgspec
import structlog

from dataworkflows import metrics
from dataworkflows.answers import unbounded_answers
from dataworkflows.config import Settings
from dataworkflows.data.retention import Pruned
from dataworkflows.db import Database
from dataworkflows.errors import ConfigurationError
from dataworkflows.retention import Prune, default_seconds, prune_due, summary
from dataworkflows.workers.app import describe, stopped_within

log = structlog.get_logger("dataworkflows.retention")


def retention_plan(settings: Settings) -> Prune:
    """What the job prunes, from the settings (ConfigurationError for a batch size out of range)."""
    try:
        return Prune(default_seconds=default_seconds(settings.retention_days), batch=settings.retention_batch_size)
    except ValueError as exc:
        raise ConfigurationError(f"DW_RETENTION_BATCH_SIZE: {exc}") from exc


def count(pruned: Pruned) -> None:
    """Adds a batch to dataworkflows_retention_removed_total."""
    for kind, value in msgspec.structs.asdict(pruned).items():
        if value:
            metrics.RETENTION_REMOVED.labels(kind).inc(value)


class RetentionJob:
    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        self.plan = retention_plan(settings)

    async def run(self, stop: asyncio.Event) -> None:
        """A pass every interval (the first one interval after the start) until `stop` is set."""
        while not await stopped_within(stop, self.settings.retention_interval_seconds):
            await self.run_once(stop)

    async def run_once(self, stop: asyncio.Event | None = None) -> Pruned:
        """One pass: batches until nothing else is due (or `stop`). Never raises."""
        started = time.monotonic()
        try:
            # A batch may rightly wait long (another worker's batch holds the advisory lock; a large tree's
            # deletes): not cut off by DW_WORKER_ANSWER_SECONDS.
            with unbounded_answers():
                total = await prune_due(self.db, self.plan, stop=stop, on_batch=count)
        except Exception as exc:
            log.warning("pruning finished executions failed; trying again at the next pass", error=describe(exc))
            return Pruned()
        if total.trees or total.rows:
            log.info(
                f"pruned {summary(total)}",
                seconds=round(time.monotonic() - started, 3),
                retention_days=self.settings.retention_days,
                **msgspec.structs.asdict(total),
            )
        return total


def start_retention(db: Database, settings: Settings, stop: asyncio.Event) -> list[asyncio.Task[None]]:
    """The retention job's task, unless DW_RETENTION_INTERVAL_SECONDS is 0 or less."""
    if settings.retention_interval_seconds <= 0:
        return []
    return [asyncio.create_task(RetentionJob(db, settings).run(stop), name="retention")]
