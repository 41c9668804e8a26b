"""Retention: finished runs older than their workflow's retention are removed, a whole tree at a
time, in bounded batches (dw.prune_executions_v1; see README "Operating it", Retention).

Used by the workers' retention loop (workers/retention.py) and by `dataworkflows prune`."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from dataworkflows.data.retention import MAX_BATCH, Pruned

if TYPE_CHECKING:
    from dataworkflows.db import Database

# A workflow's retention in days (dw.workflows.retention_days), as the database's check has it:
# 0 (forever) to about a hundred years.
MAX_RETENTION_DAYS = 36_500

# ASCII digits only: \d would take other scripts' digits (Arabic-Indic 30d read as 30 days).
_AGE = re.compile(r"(?P<number>[0-9]+(?:\.[0-9]+)?)\s*(?P<unit>[a-z]+)")
_UNIT_SECONDS = {"s": 1.0, "min": 60.0, "h": 3600.0, "d": 86400.0, "w": 7 * 86400.0}
# Below this an age is taken for a slip (`--older-than 6m`, `0.5h` for 0.5 days): `prune` asks for --force.
MIN_SAFE_AGE_SECONDS = 3600.0


def parse_age(text: str) -> float:
    """`30d`, `12h`, `90min`, `3600s`, `2w` in seconds; ValueError with a message for anything else
    (no unit, an unknown one, zero, more than MAX_RETENTION_DAYS). `m` is refused: minutes or
    months? (it used to mean minutes, so `6m` pruned everything older than six minutes)."""
    match = _AGE.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(f"{text!r} is not an age: give a number and a unit, such as 30d, 12h, 90min or 2w")
    unit = match.group("unit")
    if unit == "m":
        raise ValueError(
            f"{text!r} is ambiguous: say {match.group('number')}min for minutes or use days (such as 180d)"
        )
    if unit not in _UNIT_SECONDS:
        raise ValueError(f"{text!r} is not an age: the unit is one of d, h, min, s, w (such as 30d, 12h, 90min or 2w)")
    seconds = float(match.group("number")) * _UNIT_SECONDS[unit]
    if seconds <= 0:
        raise ValueError(f"{text!r}: the age must be more than zero")
    if seconds > MAX_RETENTION_DAYS * 86400.0:
        raise ValueError(f"{text!r}: the age must be at most {MAX_RETENTION_DAYS} days")
    return seconds


def default_seconds(retention_days: float) -> float | None:
    """DW_RETENTION_DAYS in seconds, None when it is 0 or less (runs of workflows without their own
    retention are kept)."""
    return retention_days * 86400.0 if retention_days > 0 else None


def summary(pruned: Pruned) -> str:
    """`12 trees: 14 executions, 28 node states, …` (the counts that are not zero)."""
    parts = [
        f"{count:,} {label}"
        for label, count in (
            ("executions", pruned.executions),
            ("node states", pruned.node_states),
            ("attempts", pruned.attempts),
            ("events", pruned.events),
            ("waits", pruned.waits),
            ("signals", pruned.signals),
            ("forEach items", pruned.items),
            ("documents", pruned.documents),
            ("dead letters", pruned.dead_letters),
            ("resource touches", pruned.resource_touches),
        )
        if count
    ]
    return f"{pruned.trees:,} trees" + (f": {', '.join(parts)}" if parts else "")


@dataclass(frozen=True)
class Prune:
    """What to prune: runs older than their workflow's retention, `default_seconds` for workflows
    without their own (None: those are kept), optionally one workflow's (in every tenant the caller
    sees, or `tenant`'s), whole trees of at most `batch` runs together a transaction (a larger tree
    alone)."""

    default_seconds: float | None
    batch: int = 1000
    workflow_id: str | None = None
    tenant: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.batch <= MAX_BATCH:
            raise ValueError(f"the batch size is 1 to {MAX_BATCH:,} runs, not {self.batch}")


async def prune_due(
    db: Database,
    what: Prune,
    *,
    stop: asyncio.Event | None = None,
    max_seconds: float | None = None,
    on_batch: Callable[[Pruned], None] | None = None,
) -> Pruned:
    """Removes batches (each its own short transaction) until one removes nothing (nothing else is
    due, or what is due is held by other transactions), `stop` is set or `max_seconds` have passed;
    returns the total. (A batch's size says nothing: it is bounded by runs, and the next tree may
    not have fitted.)"""
    total = Pruned()
    deadline = None if max_seconds is None else time.monotonic() + max_seconds
    while stop is None or not stop.is_set():
        pruned = await db.retention.prune(
            default_seconds=what.default_seconds, batch=what.batch, workflow_id=what.workflow_id, tenant=what.tenant
        )
        total += pruned
        if on_batch is not None:
            on_batch(pruned)
        if not (pruned.trees or pruned.rows) or (deadline is not None and time.monotonic() >= deadline):
            break
    return total


class Progress:
    """An on_batch callback that adds batches up and calls `report` with the total so far at most
    every `every` seconds."""

    def __init__(self, report: Callable[[Pruned], None], *, every: float) -> None:
        self.report = report
        self.every = every
        self.total = Pruned()
        self._shown = time.monotonic()

    def __call__(self, pruned: Pruned) -> None:
        self.total += pruned
        if time.monotonic() - self._shown >= self.every:
            self._shown = time.monotonic()
            self.report(self.total)
