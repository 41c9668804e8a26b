"""Retention: removing finished runs past their workflow's retention (sql/procedures/retention.sql)
and setting a workflow's retention."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

import msgspec

from dataworkflows import errors

if TYPE_CHECKING:
    from dataworkflows.db import Database

# dw.prune_executions_v1 takes batches of 1 to this many runs (a larger tree goes alone).
MAX_BATCH = 100_000


class Pruned(msgspec.Struct, frozen=True):
    """What one batch (or several, added up) removed: trees (a root run with every child run under
    it), their runs, and the rows that hung off those runs."""

    trees: int = 0
    executions: int = 0
    node_states: int = 0
    attempts: int = 0
    events: int = 0
    waits: int = 0
    signals: int = 0
    items: int = 0
    documents: int = 0
    dead_letters: int = 0
    resource_touches: int = 0

    def __add__(self, other: Pruned) -> Pruned:
        mine, theirs = msgspec.structs.asdict(self), msgspec.structs.asdict(other)
        return Pruned(**{name: mine[name] + theirs[name] for name in mine})

    @property
    def rows(self) -> int:
        """Every row removed (trees are not rows of their own: their runs are)."""
        return sum(value for name, value in msgspec.structs.asdict(self).items() if name != "trees")


class PrunePreview(msgspec.Struct, frozen=True):
    """What pruning would remove now: trees, runs, events, and the oldest root's end time."""

    trees: int
    executions: int
    events: int
    oldest_ended_at: datetime | None


class RetentionData:
    """Pruning finished runs (across tenants under ALL_TENANTS, which the maintenance role may use)
    and workflows' retention."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def prune(
        self, *, default_seconds: float | None, batch: int, workflow_id: str | None = None, tenant: str | None = None
    ) -> Pruned:
        """Removes one batch of whole trees past their retention (`default_seconds` for workflows
        without their own; None: those are kept) holding at most `batch` runs together, or one
        larger tree alone. A batch that removed nothing means nothing else is due now."""
        pruned = await self._db.fetch_one_as(
            Pruned,
            "prune_executions",
            default_seconds=default_seconds,
            batch=batch,
            workflow_id=workflow_id,
            tenant=tenant,
        )
        assert pruned is not None
        return pruned

    async def preview(
        self, *, default_seconds: float | None, workflow_id: str | None = None, tenant: str | None = None
    ) -> PrunePreview:
        """What prune() would remove now, every batch together; removes nothing."""
        preview = await self._db.fetch_one_as(
            PrunePreview, "preview_prune", default_seconds=default_seconds, workflow_id=workflow_id, tenant=tenant
        )
        assert preview is not None
        return preview

    async def workflow_known(self, workflow_id: str, tenant: str | None) -> bool:
        """Whether the workflow exists (in `tenant`, or in any tenant the caller sees)."""
        row = await self._db.fetch_one("workflow_known", workflow_id=workflow_id, tenant=tenant)
        return bool(row and row["known"])

    async def set_workflow_retention(self, workflow_id: str, days: int | None) -> bool:
        """How many days the workflow's finished runs are kept (None: the default; 0: forever);
        False when there is no such workflow (the function raises WorkflowNotFound for an operator's psql
        call)."""
        try:
            return await self._db.fetch_one("set_workflow_retention", id=workflow_id, days=days) is not None
        except errors.WorkflowNotFound:
            return False
