"""A run's compensation steps (sql/procedures/compensations.sql): claimed one at a time, in order,
by the worker running the run's dw.compensate job, and recorded attempt by attempt."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from psycopg.types.json import Jsonb

if TYPE_CHECKING:
    from dataworkflows.db import Database


class Claim(msgspec.Struct, frozen=True):
    """dw.claim_compensation_v1's answer: claimed, later, held, waiting or done."""

    outcome: str
    node_id: str | None
    action_type: str | None
    # The step's attempt number (what the record is fenced by) and its attempts since its latest
    # redrive (what its retry policy counts).
    attempt: int | None
    tries: int | None
    due_at: datetime | None


class CompensationScope(msgspec.Struct, frozen=True):
    """What a step's templates read (dw.compensation_scope_v1)."""

    workflow_id: str
    workflow_version: int
    status: str
    trigger: Any
    principal_id: str | None
    error: Any
    nodes: dict[str, Any]
    errors: dict[str, Any]
    # Why it is undone: {cause, parent} (dw.compensation_scope_v2).
    compensation: Any = None


class CompensationStep(msgspec.Struct, frozen=True):
    """One step as GET /api/v1/executions/{id} shows it."""

    node_id: str
    position: int
    action_type: str
    status: str
    attempts: int
    max_attempts: int
    parameters: Any
    outputs: Any
    error: Any
    next_attempt_at: datetime | None
    # The child run whose compensation the step is (None: the node's own compensating action).
    child_execution_id: UUID | None
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


def _json(value: Any) -> Jsonb | None:
    return None if value is None else Jsonb(value)


class CompensationData:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def claim(self, execution_id: UUID, worker: str) -> Claim:
        row = await self._db.fetch_one_as(Claim, "claim_compensation", id=execution_id, worker=worker)
        assert row is not None
        return row

    async def record(
        self,
        execution_id: UUID,
        node_id: str,
        attempt: int,
        outcome: str,
        *,
        parameters: Any = None,
        outputs: Any = None,
        error: Any = None,
        retry_at: datetime | None = None,
        resource_links: list[dict[str, Any]] | None = None,
    ) -> bool:
        row = await self._db.fetch_one(
            "record_compensation",
            id=execution_id,
            node_id=node_id,
            attempt=attempt,
            outcome=outcome,
            parameters=_json(parameters),
            outputs=_json(outputs),
            error=_json(error),
            retry_at=retry_at,
            resource_links=_json(resource_links or None),
        )
        return bool(row and row["recorded"])

    async def scope(self, execution_id: UUID) -> CompensationScope | None:
        return await self._db.fetch_one_as(CompensationScope, "compensation_scope", id=execution_id)

    async def defer(self, execution_id: UUID, at: datetime | None) -> None:
        await self._db.fetch_one("defer_compensation_job", id=execution_id, at=at)

    async def steps(self, execution_id: UUID) -> list[CompensationStep]:
        return await self._db.fetch_all_as(CompensationStep, "list_compensations", id=execution_id)
