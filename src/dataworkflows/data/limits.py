"""Rate limits: the API's token buckets and workflows' start limits (sql/procedures/limits.sql)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import msgspec

from dataworkflows import errors

if TYPE_CHECKING:
    from dataworkflows.db import Database, Transaction


class BucketLevel(msgspec.Struct, frozen=True):
    """A token bucket after a request: the tokens left, and whether the request got one."""

    tokens: float
    granted: bool


class WorkflowLimits(msgspec.Struct, frozen=True):
    """A change to a workflow's limits: set_* says whether to change that one (None clears it)."""

    set_concurrent: bool = False
    max_concurrent: int | None = None
    set_rate: bool = False
    rate_per_minute: int | None = None


class LimitData:
    """dw.api_rate_buckets and the limit columns of dw.workflows."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def take_token(self, *, tenant: str, subject: str, per_second: float, burst: int) -> BucketLevel:
        """Takes one token from the caller's bucket, if it has one (one statement)."""
        row = await self._db.fetch_one(
            "take_api_token", tenant=tenant, subject=subject, per_second=per_second, burst=float(burst)
        )
        assert row is not None
        return msgspec.convert(row, BucketLevel)

    async def prune_buckets(self, *, limit: int = 10_000) -> int:
        """Deletes up to `limit` buckets that have filled up again; returns how many."""
        row = await self._db.fetch_one("prune_api_rate_buckets", limit=limit)
        return 0 if row is None else int(row["deleted"])

    async def set_workflow_limits(self, workflow_id: str, limits: WorkflowLimits) -> bool:
        """Changes a workflow's limits; False when there is no such workflow (the function raises
        WorkflowNotFound for an operator's psql call)."""
        try:
            row = await self._db.fetch_one("set_workflow_limits", id=workflow_id, **msgspec.structs.asdict(limits))
        except errors.WorkflowNotFound:
            return False
        return row is not None


async def apply_published_limits(tx: Transaction, workflow_id: str, version: int) -> None:
    """Inside a publish: the limits the version's definition states (orchestration's
    maxConcurrentExecutions and rateLimitPerMinute; null clears) become the workflow's; one it does
    not mention keeps its current value (set through the API or the CLI)."""
    row = await tx.fetch_one("published_limits", id=workflow_id, version=version)
    if row is None or not (row["sets_concurrent"] or row["sets_rate"]):
        return
    await tx.fetch_one(
        "set_workflow_limits",
        id=workflow_id,
        set_concurrent=bool(row["sets_concurrent"]),
        max_concurrent=row["max_concurrent"],
        set_rate=bool(row["sets_rate"]),
        rate_per_minute=row["rate_per_minute"],
    )
