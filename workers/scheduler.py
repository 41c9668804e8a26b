"""The scheduler every worker runs: it fires the ticks of due schedules (schedule triggers).

A pass locks due schedules in batches (FOR NO KEY UPDATE SKIP LOCKED, so any number of workers
share the work without waiting on each other), computes each one's ticks in Python (croniter, in
its time zone; dataworkflows.schedules), and in the same transaction records each tick
(dw.schedule_ticks, unique per schedule and tick) and starts its run (request id
schedule:<trigger id>:<tick>), then moves the schedule's next tick. A tick therefore fires once,
whatever the number of schedulers, and is not lost while one worker runs: a worker that dies
mid-batch rolls the batch back and its rows are free again.

A tick that waits for the schedule's runs to end (overlap bufferOne, cancelOther) is started by a
later pass, the first that finds none of them going (dw.start_buffered_ticks_v1): within
DW_SCHEDULER_INTERVAL_SECONDS of the last one's end.

Between passes it sleeps until the earliest next tick (looked up in SQL) or
DW_SCHEDULER_INTERVAL_SECONDS, whichever comes first; database errors are logged and retried
with a backoff, never ending the loop.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import msgspec
import structlog

from dataworkflows import metrics
from dataworkflows.answers import answer_timed_out
from dataworkflows.config import Settings
from dataworkflows.data.schedules import DueSchedule, FiredTick, SchedulePlan
from dataworkflows.db import Database
from dataworkflows.schedules import (
    MAX_CATCH_UP_LIMIT,
    Schedule,
    ScheduleConfigError,
    TickPlan,
    plan_ticks,
    zone_unavailable,
)
from dataworkflows.workers.app import Backoff, connection_lost, describe, stopped_within

log = structlog.get_logger("dataworkflows.scheduler")

# Outcomes of dw.fire_schedule_v1 that mean the tick fired now (a run started, or was refused, or
# none started, or its start deferred, by the overlap policy).
_FIRED_NOW = frozenset({"started", "existing", "refused", "overlapped", "buffered"})
# A schedule whose time zone this worker cannot load is looked at again this much later.
ZONE_RETRY = timedelta(minutes=1)


class Scheduler:
    BATCH = 500
    # Batches fired at once in a pass (each on its own connection; SKIP LOCKED keeps them apart):
    # a burst of ticks due at the same instant is handled about twice as fast with two on two
    # cores (bench/triggers.py), since starting runs is the database's work.
    PARALLEL = 2
    # The shortest sleep between passes: when a due schedule is held by another scheduler, it is
    # looked at again this soon (the other one is firing it); and, while passes in a row find
    # something due yet take nothing (another scheduler holds it for a long batch), doubling up to
    # HELD_SLEEP: a worker beside a long catch-up made about 50 transactions a second claiming nothing.
    MIN_SLEEP = 0.05
    HELD_SLEEP = 1.0

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        # The most runs one statement starts (see MAX_BATCH_TICKS): a batch's ticks, and the buffered
        # ticks' runs started at once.
        self.ticks = _Cap("a batch of schedules", MAX_BATCH_TICKS, settings.worker_answer_seconds)
        self.buffered = _Cap("starting buffered ticks", self.BATCH, settings.worker_answer_seconds)

    async def run(self, stop: asyncio.Event) -> None:
        backoff = Backoff()
        held = 0.0
        while not stop.is_set():
            try:
                fired = await self.run_pass(stop)
                delay = await self.delay()
                # Something due, nothing taken: held by another scheduler.
                held = max(held * 2, self.MIN_SLEEP) if not fired and delay <= self.MIN_SLEEP else 0.0
                delay = max(delay, min(held, self.HELD_SLEEP))
                backoff.reset()
            except Exception as exc:
                # Never let the loop die: it is what starts scheduled runs.
                delay = backoff.next()
                if connection_lost(exc):
                    log.warning("scheduler pass failed", error=describe(exc), retry_in=delay)
                else:
                    log.error("scheduler pass failed", error=describe(exc), retry_in=delay, exc_info=exc)
            if await stopped_within(stop, delay):
                return

    async def run_pass(self, stop: asyncio.Event | None = None) -> list[FiredTick]:
        """Fires what is due now, batch after batch, PARALLEL batches at a time; returns the ticks
        handled. An error is raised once every batch in flight has ended."""
        outcomes = await asyncio.gather(*(self._batches(stop) for _ in range(self.PARALLEL)), return_exceptions=True)
        fired: list[FiredTick] = []
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome
            fired.extend(outcome)
        # Ticks that waited for their schedule's runs to end, whose schedules were not due now.
        limit, began = self.buffered.value, time.monotonic()
        try:
            buffered = await self.db.schedules.start_buffered(queue=self.settings.queue, limit=limit)
        except Exception as exc:
            self.buffered.failed(exc, limit)
            raise
        self.buffered.answered(len(buffered), time.monotonic() - began)
        _account((), buffered)
        return fired + buffered

    async def delay(self) -> float:
        """Until the earliest next tick, at most the interval."""
        interval = self.settings.scheduler_interval_seconds
        seconds = await self.db.schedules.seconds_to_next_tick()
        if seconds is None:
            return interval
        # A little past the tick: the database's clock and this one's timer are not the same.
        return min(interval, seconds + 0.002 if seconds > 0 else self.MIN_SLEEP)

    async def _batches(self, stop: asyncio.Event | None) -> list[FiredTick]:
        fired: list[FiredTick] = []
        while stop is None or not stop.is_set():
            more, ticks = await self._fire_batch()
            fired.extend(ticks)
            if not more:
                break
        return fired

    async def _fire_batch(self) -> tuple[bool, list[FiredTick]]:
        """Fires one batch; returns whether more may be due now (a full batch, or one whose planning
        left schedules to the next: plan_batch's budgets) and the ticks handled."""
        planner = _Planner(self.ticks.value)
        began = time.monotonic()
        try:
            batch = await self.db.schedules.fire_due(limit=self.BATCH, queue=self.settings.queue, planner=planner)
        except Exception as exc:
            self.ticks.failed(exc, planner.starts)
            if connection_lost(exc) or not planner.planned:
                raise
            # Not the database being away: one schedule's run could not start (its workflow has no
            # plan, ...). One by one, so that only that schedule misses its ticks.
            log.warning("a batch of schedules failed; firing them one by one", error=describe(exc))
            return len(planner.planned) == self.BATCH, await self._one_by_one(list(planner.planned))
        self.ticks.answered(planner.starts, time.monotonic() - began)
        _account(planner.planned.values(), batch.fired)
        # More may be due now: a full claim, schedules planning left as they were, or a schedule with due
        # ticks it did not fire (past the cap).
        more = batch.claimed == self.BATCH or len(planner.planned) < batch.claimed or planner.left_due
        return more, batch.fired

    async def _one_by_one(self, trigger_ids: list[UUID]) -> list[FiredTick]:
        fired: list[FiredTick] = []
        for trigger_id in trigger_ids:
            planner = _Planner(self.ticks.value)
            try:
                batch = await self.db.schedules.fire_due(
                    limit=1, queue=self.settings.queue, planner=planner, only=trigger_id
                )
            except Exception as exc:
                if connection_lost(exc):
                    self.ticks.failed(exc, planner.starts)
                    raise
                await self._failed(trigger_id, planner.planned.get(trigger_id), exc)
                continue
            _account(planner.planned.values(), batch.fired)
            fired.extend(batch.fired)
        return fired

    async def _failed(self, trigger_id: UUID, plan: SchedulePlan | None, exc: Exception) -> None:
        log.warning(
            "schedule could not fire; its due ticks are skipped", trigger_id=str(trigger_id), error=describe(exc)
        )
        if plan is None:
            return
        metrics.SCHEDULE_TICKS.labels("failed").inc(len(plan.ticks))
        await self.db.schedules.failed(
            trigger_id,
            error=f"a run could not start: {describe(exc)}",
            next_tick=plan.next,
            disable=False,
            due=plan.due,
            updated_at=plan.updated_at,
        )


class _Planner:
    """Plans one batch (ScheduleData.fire_due calls it with the claimed schedules) and keeps the plans:
    how many runs they may start, and whether one leaves due ticks for the next batch."""

    def __init__(self, max_ticks: int) -> None:
        self.planned: dict[UUID, SchedulePlan] = {}
        self.max_ticks = max_ticks
        self.starts = 0
        self.left_due = False

    async def __call__(self, due: list[DueSchedule], now: datetime) -> list[SchedulePlan]:
        # croniter is pure Python: a large batch is computed off the event loop's thread.
        plans = await asyncio.to_thread(plan_batch, due, now, max_ticks=self.max_ticks)
        self.planned = {plan.id: plan for plan in plans}
        configs = {schedule.id: schedule.config for schedule in due}
        self.starts = sum(_starts(configs[plan.id], plan) for plan in plans)
        self.left_due = any(plan.ticks and plan.next is not None and plan.next <= now for plan in plans)
        return plans


class _Cap:
    """How many runs one statement may start (see MAX_BATCH_TICKS): cut to half of what a statement
    held when DW_WORKER_ANSWER_SECONDS (`bound`) cut it off, and doubled again, up to `most`, after a
    full statement answered within a quarter of the bound. A statement that held one run, or whose
    failure was not the bound's, changes nothing (a second review: a lock or a frozen database cut the
    cap of a scheduler with nothing due, twice a pass, for good)."""

    def __init__(self, what: str, most: int, bound: float) -> None:
        self.what = what
        self.most = most
        self.value = most
        self.bound = bound

    def failed(self, exc: BaseException, size: int) -> None:
        cut = max(size // 2, 1)
        if not answer_timed_out(exc) or size <= 1 or cut >= self.value:
            return
        self.value = cut
        log.warning(
            f"{self.what} did not answer within DW_WORKER_ANSWER_SECONDS ({size} runs); from now on at most"
            f" {self.value} a statement",
            error=describe(exc),
        )

    def answered(self, size: int, seconds: float) -> None:
        if self.value < self.most and size >= self.value and self.bound and seconds < self.bound / 4:
            self.value = min(self.value * 2, self.most)


def _starts(config: dict[str, Any], plan: SchedulePlan) -> int:
    """The runs a plan's ticks may start: one for cancelOther (each tick cancels the run of the one
    before it, and in one batch only the newest starts one), else one a tick."""
    return min(len(plan.ticks), 1) if config.get("overlap") == "cancelOther" else len(plan.ticks)


# Schedules whose latest tick this process saw refused (their workflow cannot run): the refusal is a
# warning the first time, and at info while it lasts (its reason is in the schedule's `error`), so
# that a schedule of a Draft workflow ticking every minute does not write a warning a minute. A tick
# that runs again clears it. Bounded: a schedule deleted while refused leaves its id here, and past
# this many the set starts again (each of those warns once more).
_REFUSING: set[UUID] = set()
# Likewise the schedules whose latest tick this process saw overlapped (no run: overlap skip).
_OVERLAPPING: set[UUID] = set()
_REFUSING_MOST = 10_000


def _account(plans: Iterable[SchedulePlan], fired: list[FiredTick]) -> None:
    for plan in plans:
        if plan.skipped:
            metrics.SCHEDULE_TICKS.labels("skipped").inc(plan.skipped)
            log.info("schedule ticks skipped by its catch-up policy", trigger_id=str(plan.id), skipped=plan.skipped)
        if plan.error is not None:
            event = "schedule stopped" if plan.disable else "schedule not fired"
            log.warning(event, trigger_id=str(plan.id), error=plan.error, disabled=plan.disable)
    for tick in fired:
        metrics.SCHEDULE_TICKS.labels(tick.outcome).inc()
        if tick.outcome in _FIRED_NOW:
            metrics.SCHEDULE_LATENESS.observe(max((tick.fired_at - tick.tick_at).total_seconds(), 0.0))
        _log_tick(tick)


def _log_tick(tick: FiredTick) -> None:
    """A tick's line in the log: refusals and overlaps at warning the first time, at info or debug
    while they last."""
    if tick.outcome == "buffer_failed":
        log.warning(
            "a schedule's waiting tick could not start its run (its error says why)", trigger_id=str(tick.trigger_id)
        )
    if tick.outcome in ("refused", "buffer_refused"):
        if tick.trigger_id in _REFUSING:
            log.info("schedule tick not run: its workflow still cannot run", trigger_id=str(tick.trigger_id))
        else:
            if len(_REFUSING) >= _REFUSING_MOST:
                _REFUSING.clear()
            _REFUSING.add(tick.trigger_id)
            log.warning("schedule tick not run: its workflow cannot run", trigger_id=str(tick.trigger_id))
    elif tick.outcome in ("started", "existing", "buffer_started"):
        _REFUSING.discard(tick.trigger_id)
        _OVERLAPPING.discard(tick.trigger_id)
    elif tick.outcome in ("overlapped", "buffered"):
        # At info the first time while it lasts, as a refusal: a per-second schedule whose run is
        # stuck would write a line a second.
        first = tick.trigger_id not in _OVERLAPPING
        if first:
            if len(_OVERLAPPING) >= _REFUSING_MOST:
                _OVERLAPPING.clear()
            _OVERLAPPING.add(tick.trigger_id)
        (log.info if first else log.debug)(
            "schedule tick not run now: the schedule's run is still going (overlap), or a newer tick replaces it",
            trigger_id=str(tick.trigger_id),
            tick=tick.tick_at.isoformat(),
        )


# How long planning one batch may take: the batch's schedules stay locked (FOR NO KEY UPDATE) until
# its transaction ends, and a PATCH or DELETE of one of them waits that long. A schedule far behind
# walks up to MISSED_LIMIT ticks (about 0.15 s): 500 of them held their rows for over a minute, and
# held back the API's writes and the ticks of other schedules. Past this, the rest of the batch is
# left as it was (due, unlocked at the commit) and taken by the next one.
PLAN_BUDGET_SECONDS = 1.0
# The most runs one batch's ticks may start at first: each starts its run in the batch's one statement
# (about 0.9 ms a tick here for a small workflow, 11 ms for one of 1,000 nodes), and the statement must
# answer within DW_WORKER_ANSWER_SECONDS. 500 schedules far behind with catchUp "all" planned up to
# 50,000 ticks (500,000 at maxCatchUp 1,000): 40 schedules of 500 ticks took 17 s, and with the bound
# every pass was cut off and rolled back, so that none fired again (a review). The rest is left to the
# next batch, as past the time budget; a first schedule with more due ticks than the cap fires its
# oldest, and its next tick is the first it left (cancelOther's ticks start one run however many:
# never split). A batch the bound cut off cuts the cap of the scheduler's later batches to half its
# runs, and a full batch answered quickly doubles it again (_Cap: a second review's 1,000 ticks of a
# 1,000-node workflow took 11 s).
MAX_BATCH_TICKS = MAX_CATCH_UP_LIMIT
_PlanKey = tuple[Any, ...]


def plan_batch(
    due: list[DueSchedule],
    now: datetime,
    *,
    budget_seconds: float = PLAN_BUDGET_SECONDS,
    max_ticks: int = MAX_BATCH_TICKS,
) -> list[SchedulePlan]:
    """What to do with the claimed schedules, in order, as many as `budget_seconds` and `max_ticks` (runs
    their ticks may start, _starts) allow (the first always, its oldest `max_ticks` ticks if it has more).
    Schedules with the same cron, time zone, catch-up and next tick (10,000 rows of one cron, whatever
    their payloads) are computed once."""
    parsed: dict[bytes, Schedule | ScheduleConfigError] = {}
    plans: dict[_PlanKey, TickPlan] = {}
    ends = time.monotonic() + budget_seconds
    planned: list[SchedulePlan] = []
    starts = 0
    for schedule in due:
        if planned and time.monotonic() > ends:
            break
        plan = _plan_one(schedule, now, parsed, plans)
        starts += _starts(schedule.config, plan)
        if starts > max_ticks:
            if planned:
                break
            plan = _oldest(plan, max_ticks)
        planned.append(plan)
    return planned


def _oldest(plan: SchedulePlan, count: int) -> SchedulePlan:
    """The plan firing only its oldest `count` ticks; the schedule's next tick is the first it leaves
    (due already: the next batch goes on from there)."""
    count = max(count, 1)
    return msgspec.structs.replace(plan, ticks=plan.ticks[:count], missed=plan.missed[:count], next=plan.ticks[count])


def _plan_one(
    due: DueSchedule,
    now: datetime,
    parsed: dict[bytes, Schedule | ScheduleConfigError],
    plans: dict[_PlanKey, TickPlan],
) -> SchedulePlan:
    key = msgspec.json.encode(due.config)
    if key not in parsed:
        parsed[key] = _parse(due.config)
    schedule = parsed[key]
    if isinstance(schedule, ScheduleConfigError):
        return _config_failure(due, schedule, now)
    # Without a next tick it starts from the moment it was created or changed (updated_at).
    since = due.updated_at if due.next_tick_at is None else None
    # What the ticks depend on: not the payload (nor the name), which schedules of one cron differ in.
    plan_key = (due.config.get("cron"), str(schedule.zone), schedule.catch_up, schedule.max_catch_up)
    plan = plans.get((*plan_key, due.next_tick_at, since))
    if plan is None:
        try:
            plan = plan_ticks(schedule, next_due=due.next_tick_at, now=now, since=since)
        except Exception as exc:  # croniter's, on an expression parse_cron accepted: a bug
            return _failure(due, f"its ticks could not be computed: {exc}", disable=True)
        plans[(*plan_key, due.next_tick_at, since)] = plan
    if plan.next_tick is None:
        return _failure(due, "its cron has no more ticks", disable=True)
    return SchedulePlan(
        due.id,
        ticks=[tick.at for tick in plan.fire],
        missed=[tick.missed for tick in plan.fire],
        next=plan.next_tick,
        skipped=plan.skipped,
        due=due.next_tick_at,
        updated_at=due.updated_at,
    )


def _failure(due: DueSchedule, error: str, *, disable: bool, next_tick: datetime | None = None) -> SchedulePlan:
    return SchedulePlan(
        due.id, error=error, disable=disable, next=next_tick, due=due.next_tick_at, updated_at=due.updated_at
    )


def _config_failure(due: DueSchedule, error: ScheduleConfigError, now: datetime) -> SchedulePlan:
    """A config that cannot be used disables the schedule; but a time zone that only this worker
    cannot load (its tz database lacks it) leaves it enabled, looked at again in ZONE_RETRY."""
    timezone = due.config.get("timezone")
    if all(pointer == "/timezone" for pointer, _, _ in error.problems) and zone_unavailable(timezone):
        log.error("schedule time zone cannot be loaded on this worker", trigger_id=str(due.id), timezone=timezone)
        return _failure(
            due,
            f'its time zone "{timezone}" cannot be loaded on this worker (is the tzdata package installed?); '
            "tried again in a minute",
            disable=False,
            next_tick=now + ZONE_RETRY,
        )
    return _failure(due, f"its config is not valid: {error}", disable=True)


def _parse(config: dict[str, Any]) -> Schedule | ScheduleConfigError:
    try:
        return Schedule.from_config(config)
    except ScheduleConfigError as exc:
        return exc
