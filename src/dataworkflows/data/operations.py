"""What operators and the recovery loop work with: dead letters (redrive, acknowledge), failed
jobs, recovery of runs whose worker vanished, and queue depth."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec

if TYPE_CHECKING:
    from dataworkflows.db import Database


class DeadLetter(msgspec.Struct, frozen=True):
    id: int
    kind: str
    execution_id: UUID | None
    workflow_id: str | None
    node_id: str | None
    job_id: int | None
    payload: dict[str, Any]
    error: Any
    attempts: int
    created_at: datetime
    redriven_at: datetime | None
    redriven_by: str | None
    closed_at: datetime | None
    closed_by: str | None
    close_reason: str | None
    close_note: str | None


class Redrive(msgspec.Struct, frozen=True):
    dead_letter_id: int
    execution_id: UUID
    # What the redrive did to the run (see dw.redrive_dead_letter_v1).
    action: str


class Recovery(msgspec.Struct, frozen=True):
    execution_id: UUID
    # requeued; or, past the recovery limit, failed (worker_lost, or node_failed for a run whose node
    # failed unhandled) or cancelled (its cancel was pending, and not too late); job_reconciled (its
    # run had ended); cascade_requeued (the parent's dw.cancel_children job, whose worker died);
    # overlap_cancel_requeued (a schedule's dw.cancel_overlapped job, whose worker died: its first run).
    action: str
    workflow_id: str | None = None


class QueueDepth(msgspec.Struct, frozen=True):
    queue_name: str
    status: str
    jobs: int
    oldest_seconds: float | None


class WorkerLease(msgspec.Struct, frozen=True):
    """A worker (its DW worker id, host/pid/random) holding live leases on the tenant's runs."""

    worker_id: str
    runs_held: int
    nodes_running: int
    oldest_run_started_at: datetime | None
    lease_expires_at: datetime | None


class FetchLoop(msgspec.Struct, frozen=True):
    """One of Procrastinate's registered fetch loops (a worker process has one or more)."""

    id: int
    last_heartbeat: datetime
    alive: bool
    # Run jobs of the session's tenant it is doing now.
    jobs_doing: int


class OperationsData:
    """Dead letters, job failures, recovery and queue depth."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def dead_letters(
        self,
        *,
        open_only: bool | None,
        kind: str | None,
        before: int | None,
        limit: int,
        execution_id: UUID | None = None,
    ) -> list[DeadLetter]:
        """Newest first, below an id cursor; open_only=False gives only the closed ones; with an
        execution_id, only that execution's."""
        filters = {"open": open_only, "kind": kind, "before": before, "limit": limit}
        if execution_id is not None:
            return await self._db.fetch_all_as(
                DeadLetter, "list_execution_dead_letters", execution_id=execution_id, **filters
            )
        return await self._db.fetch_all_as(DeadLetter, "list_dead_letters", **filters)

    async def worker_leases(self) -> list[WorkerLease]:
        """Workers holding live leases on the tenant's runs."""
        return await self._db.fetch_all_as(WorkerLease, "list_worker_leases")

    async def fetch_loops(self, *, stalled_seconds: float) -> list[FetchLoop]:
        """Procrastinate's fetch loops; alive: a heartbeat within stalled_seconds."""
        return await self._db.fetch_all_as(FetchLoop, "list_fetch_loops", stalled_seconds=stalled_seconds)

    async def dead_letter(self, dead_letter_id: int) -> DeadLetter | None:
        return await self._db.fetch_one_as(DeadLetter, "get_dead_letter", id=dead_letter_id)

    async def dead_letters_by_id(self, ids: list[int]) -> dict[int, DeadLetter]:
        """The letters of these ids that exist, by id."""
        letters = await self._db.fetch_all_as(DeadLetter, "get_dead_letters", ids=ids)
        return {letter.id: letter for letter in letters}

    async def bulk_redrive_candidates(
        self, *, kind: str | None, workflow_id: str | None, after: int, limit: int
    ) -> list[tuple[int, UUID | None]]:
        """The open letters a bulk redrive takes, oldest first, after the id `after`: (id, run)."""
        rows = await self._db.fetch_all(
            "bulk_redrive_candidates", kind=kind, workflow_id=workflow_id, after=after, limit=limit
        )
        return [(int(row["id"]), row["execution_id"]) for row in rows]

    async def redrive(self, dead_letter_id: int, *, principal: str | None, queue: str) -> Redrive:
        """Re-runs the failed part of the letter's run (once; Conflict after that)."""
        redrive = await self._db.fetch_one_as(
            Redrive, "redrive_dead_letter", id=dead_letter_id, principal=principal, queue=queue
        )
        assert redrive is not None
        return redrive

    async def acknowledge(self, dead_letter_id: int, *, principal: str | None, note: str | None) -> None:
        """Closes the letter without a redrive (once; Conflict after that)."""
        await self._db.fetch_one("acknowledge_dead_letter", id=dead_letter_id, principal=principal, note=note)

    async def record_job_failure(
        self, *, job_id: int | None, execution_id: UUID | None, payload: dict[str, Any], error: Any, attempts: int
    ) -> None:
        """A run job that raised becomes a job_failed dead letter."""
        await self._db.fetch_one(
            "record_job_failure",
            job_id=job_id,
            execution_id=execution_id,
            payload=payload,
            error=error,
            attempts=attempts,
        )

    async def database_times(self, wall: Callable[[], float], count: int) -> list[tuple[float, datetime, float]]:
        """`count` readings of the database server's clock (clock_timestamp(), not the transaction's
        start), one after the other on one held connection, each as (this host's `wall` just before
        it was sent, the server's time, `wall` just after its answer came): only the statement's own
        round trip lies between the two, not the wait for a pooled connection nor the session's setup
        (a review: measured through the pool, a 2.4 s wait for a connection read as a clock 1.2 s off)."""
        readings: list[tuple[float, datetime, float]] = []
        async with self._db.transaction() as tx:
            for _ in range(count):
                sent = wall()
                row = await tx.fetch_one("database_time")
                received = wall()
                assert row is not None
                readings.append((sent, row["now"], received))
        return readings

    async def wake_due_runs(self, *, limit: int, queue: str) -> int:
        """Queues a run job for parked runs whose wake-up time has come; returns how many."""
        row = await self._db.fetch_one("wake_due_runs", limit=limit, queue=queue)
        return int(row["woken"]) if row else 0

    async def recover(self, *, max_recoveries: int, stalled_worker_seconds: float, queue: str) -> list[Recovery]:
        """Re-queues runs whose worker vanished; fails those past the recovery limit."""
        return await self._db.fetch_all_as(
            Recovery,
            "recover_executions",
            max_recoveries=max_recoveries,
            stalled_worker_seconds=stalled_worker_seconds,
            queue=queue,
        )

    async def analyze_stale_run_tables(self) -> list[str]:
        """Analyzes the run tables whose planner statistics are missing or far behind (a new
        database's first burst: see sql/procedures/statistics.sql); returns the tables analyzed."""
        row = await self._db.fetch_one("analyze_stale_run_tables")
        return [str(table) for table in (row or {}).get("tables") or ()]

    async def time_out_overdue(self, *, limit: int = 500) -> list[tuple[UUID, str, str]]:
        """Ends runs whose deadline passed while no worker held them (see dw.time_out_overdue_v2):
        (execution id, workflow id, the status it ended with: TimedOut; Cancelled for a run whose
        cancel came in time, Failed for one whose node failed unhandled, before its worker died) of
        each."""
        rows = await self._db.fetch_all("time_out_overdue", limit=limit)
        return [(row["execution_id"], row["workflow_id"], row["status"]) for row in rows]

    async def queue_depth(self) -> list[QueueDepth]:
        """Jobs waiting and running per queue, with the oldest one's age."""
        return await self._db.fetch_all_as(QueueDepth, "queue_depth")
