"""Schedules: the scheduler's claims of due schedules and the ticks it fires (dw.schedule_ticks)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
import psycopg.errors
from psycopg.types.json import Jsonb

from dataworkflows.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from dataworkflows.db import Database


class DueSchedule(msgspec.Struct, frozen=True):
    """A schedule the scheduler holds (its row locked until the batch commits)."""

    id: UUID
    config: dict[str, Any]
    # None: not computed yet (new, enabled again, cron or time zone changed): it starts from
    # updated_at (the moment of that change).
    next_tick_at: datetime | None
    updated_at: datetime


class SchedulePlan(msgspec.Struct, frozen=True):
    """What to do with one claimed schedule: fire these ticks (oldest first, each with the number of
    missed ticks it stands for) and look again at `next`; or, with an error, record it and skip the
    due ticks (go on from `next`) or disable the schedule."""

    id: UUID
    ticks: list[datetime] = []
    missed: list[int] = []
    next: datetime | None = None
    error: str | None = None
    disable: bool = False
    # Due ticks the catch-up policy skipped (for the scheduler's metrics; the database ignores it).
    skipped: int = 0
    # The row as claimed (next_tick_at, updated_at): an error is recorded only if it still is.
    due: datetime | None = None
    updated_at: datetime | None = msgspec.field(default=None, name="updatedAt")
    # Made by this release's scheduler, which reads every field of this release's configs: its errors
    # are carried out as they are (a plan without it is a previous release's, dw.schedule_failed_v1).
    checked: bool = True


class FiredTick(msgspec.Struct, frozen=True):
    trigger_id: UUID
    tick_at: datetime
    fired_at: datetime
    execution_id: UUID | None
    # started | existing | duplicate | refused | overlapped | buffered, and for a tick that waited for
    # the schedule's runs to end: buffer_started | buffer_refused | buffer_failed | buffer_dropped (see
    # dw.fire_schedule_v1)
    outcome: str


class Batch(msgspec.Struct, frozen=True):
    claimed: int
    fired: list[FiredTick]


class Tick(msgspec.Struct, frozen=True):
    """A fired tick as the API and the CLI list it (a row of dw.schedule_ticks)."""

    trigger_id: UUID
    tick_at: datetime
    fired_at: datetime
    # The run it started; None when its workflow could not run (the schedule's error says why), or
    # when a run the schedule started was still going (overlap skip: overlapped_by).
    execution_id: UUID | None
    # Ticks the catch-up policy folded into this one after downtime.
    missed_ticks: int
    # The schedule's overlap policy: the newest run still going that it started none beside (skip) or
    # cancelled (cancelOther), or for a catch-up's older tick under cancelOther the newest's run.
    overlapped_by: UUID | None = None
    # It waited (bufferOne, bufferAll, cancelOther) for the schedule's runs to end before starting its run: it
    # waits still while execution_id is None.
    buffered: bool = False
    # The run it started was removed by retention since (execution_id names it still).
    run_removed: bool = False


# How long a scheduler's claim may sit idle (between the claim and the fire: planning, which
# PLAN_BUDGET_SECONDS bounds to about a second, and the event loop's turns) before PostgreSQL ends it.
CLAIM_IDLE_TIMEOUT_SECONDS = 5.0

# Given the claimed schedules and the database's clock, what to do with each.
Planner = Callable[[list[DueSchedule], datetime], Awaitable[list[SchedulePlan]]]


class ScheduleData:
    """What the scheduler reads and writes."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def fire_due(
        self,
        *,
        limit: int,
        queue: str,
        planner: Planner,
        only: UUID | None = None,
        idle_timeout: float = CLAIM_IDLE_TIMEOUT_SECONDS,
    ) -> Batch:
        """In one transaction: locks up to `limit` due schedules (SKIP LOCKED; `only`: that one
        schedule, if due and free), asks the planner what to do with them, fires their ticks and
        moves their next ticks. A tick's run starts in the transaction that records the tick.

        The planner runs in this process between the claim and the fire, the schedules' rows locked
        meanwhile, and other schedulers pass over locked rows: a worker that hung there (stopped, its
        event loop blocked, its VM paused) held those schedules for as long as it hung (a review: 40 s
        without a tick while three other workers ran). The transaction therefore ends the session
        when it sits idle past `idle_timeout` seconds (PostgreSQL's idle_in_transaction_session_timeout,
        for this transaction only): the batch rolls back, the rows are free for the others, and this
        worker's pool replaces the connection."""
        try:
            return await self._fire_due(limit=limit, queue=queue, planner=planner, only=only, idle_timeout=idle_timeout)
        except DatabaseUnavailable as exc:
            if not isinstance(exc.__cause__, psycopg.errors.IdleInTransactionSessionTimeout):
                raise
            raise DatabaseUnavailable(
                f"this scheduler's claim sat idle over {idle_timeout:g} s (the process hung?), and PostgreSQL ended it:"
                " its batch was rolled back, and the schedules are free for the other schedulers"
            ) from exc

    async def _fire_due(
        self, *, limit: int, queue: str, planner: Planner, only: UUID | None, idle_timeout: float
    ) -> Batch:
        async with self._db.transaction() as tx:
            await tx.fetch_one("bound_claim_idle", ms=str(max(int(idle_timeout * 1000), 1)))
            if only is None:
                rows = await tx.fetch_all("claim_due_schedules", limit=limit)
            else:
                rows = await tx.fetch_all("claim_due_schedule", id=only)
            if not rows:
                return Batch(0, [])
            due = [msgspec.convert(row, DueSchedule) for row in rows]
            plans = await planner(due, rows[0]["now"])
            fired_rows = await tx.fetch_all("fire_schedules", plans=Jsonb(msgspec.to_builtins(plans)), queue=queue)
            fired = [msgspec.convert(row, FiredTick) for row in fired_rows]
        return Batch(len(due), fired)

    async def start_buffered(self, *, queue: str, limit: int) -> list[FiredTick]:
        """Starts the runs of ticks waiting for their schedule's runs to end (overlap bufferOne, bufferAll,
        cancelOther) once none of those is going, up to `limit` schedules whose rows nobody holds;
        drops a disabled schedule's waiting tick. Returns the ticks that stopped waiting."""
        rows = await self._db.fetch_all("start_buffered_ticks", queue=queue, limit=limit)
        return [msgspec.convert(row, FiredTick) for row in rows]

    async def failed(
        self,
        trigger_id: UUID,
        *,
        error: str,
        next_tick: datetime | None,
        disable: bool,
        due: datetime | None,
        updated_at: datetime | None,
    ) -> None:
        """Records why a schedule could not fire: it skips its due ticks and goes on from
        `next_tick`, or it is disabled; only if its row is still as claimed (next tick `due`,
        `updated_at`), so a concurrent fire or change is not overwritten."""
        await self._db.execute(
            "schedule_failed",
            id=trigger_id,
            error=error,
            next_tick=next_tick,
            disable=disable,
            due=due,
            updated_at=updated_at,
        )

    async def prune_ticks(self, *, keep_seconds: float, limit: int = 10_000) -> int:
        """Deletes up to `limit` tick rows fired more than `keep_seconds` ago (keeping each
        schedule's newest tick and a tick still waiting to start its run); returns how many."""
        row = await self._db.fetch_one("prune_schedule_ticks", keep_seconds=keep_seconds, limit=limit)
        return 0 if row is None else int(row["deleted"])

    async def ticks(self, trigger_id: UUID, *, limit: int, before: datetime | None = None) -> list[Tick]:
        """A schedule's fired ticks, newest first; `before`: the tick_at of the last tick of the page
        before."""
        return await self._db.fetch_all_as(
            Tick, "list_schedule_ticks", trigger_id=trigger_id, limit=limit, before_at=before
        )

    async def seconds_to_next_tick(self) -> float | None:
        """Until the earliest next tick of an enabled schedule (0: due now); None without any."""
        row = await self._db.fetch_one("seconds_to_next_tick")
        return None if row is None else float(row["seconds"])
