"""Triggers (schedules and webhooks) as the API and the CLI see them: create, read, change, delete."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from psycopg.types.json import Jsonb

from dataworkflows import errors

if TYPE_CHECKING:
    from dataworkflows.db import Database


class Trigger(msgspec.Struct, frozen=True):
    id: UUID
    tenant_id: str
    workflow_id: str
    kind: str
    name: str
    enabled: bool
    config: dict[str, Any]
    # Whether a signing secret is stored (never the secret itself).
    has_secret: bool
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    next_tick_at: datetime | None
    last_tick_at: datetime | None
    error: str | None
    # A webhook's secret that a rotation replaced stays valid until then (migration 0045).
    previous_secret_until: datetime | None = None
    # Its runs' priority (migration 0077); None: their workflow's.
    priority: int | None = None
    # The list only (list_all_triggers): its latest runs, newest first.
    recent_runs: list[RecentRun] | None = None


class RecentRun(msgspec.Struct, frozen=True):
    id: UUID
    status: str
    created_at: datetime


# How many of each trigger's latest runs the list carries (one more says there are more).
RECENT_RUNS = 5


class TriggerData:
    """The dw.triggers rows."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self,
        *,
        workflow_id: str,
        kind: str,
        name: str,
        enabled: bool,
        config: dict[str, Any],
        principal: str | None,
        trigger_id: UUID,
        secret: bytes | None,
        priority: int | None = None,
    ) -> Trigger:
        """A new trigger (Conflict when the name is taken for this kind; NotFound without the workflow)."""
        row = await self._db.fetch_one_as(
            Trigger,
            "insert_trigger",
            id=trigger_id,
            workflow_id=workflow_id,
            kind=kind,
            name=name,
            enabled=enabled,
            config=Jsonb(config),
            secret=secret,
            principal=principal,
            priority=priority,
        )
        if row is None:
            # Deleted meanwhile (the API looked it up first).
            raise errors.WorkflowNotFound(f"workflow {workflow_id!r} not found")
        return row

    async def get(self, trigger_id: UUID) -> Trigger | None:
        return await self._db.fetch_one_as(Trigger, "get_trigger", id=trigger_id)

    async def for_workflow(
        self, workflow_id: str, *, kind: str | None = None, limit: int, after: tuple[datetime, UUID] | None = None
    ) -> list[Trigger]:
        """Oldest first; `after`: the (created_at, id) of the last trigger of the page before."""
        after_at, after_id = after if after is not None else (None, None)
        return await self._db.fetch_all_as(
            Trigger,
            "list_triggers",
            workflow_id=workflow_id,
            kind=kind,
            limit=limit,
            after_at=after_at,
            after_id=after_id,
        )

    async def everything(
        self, *, kind: str | None = None, limit: int, after: tuple[str, ...] | None = None
    ) -> list[Trigger]:
        """By workflow, kind and name; `after`: the (workflow_id, kind, name) of the last trigger of the
        page before."""
        after_workflow, after_kind, after_name = after if after is not None else (None, None, None)
        return await self._db.fetch_all_as(
            Trigger,
            "list_all_triggers",
            kind=kind,
            runs=RECENT_RUNS + 1,
            limit=limit,
            after_workflow=after_workflow,
            after_kind=after_kind,
            after_name=after_name,
        )

    async def update(
        self,
        trigger_id: UUID,
        *,
        name: str | None,
        enabled: bool | None,
        config: dict[str, Any] | None,
        priority: int | None = None,
        clear_priority: bool = False,
    ) -> Trigger | None:
        """Changes what is given (a priority, or clear_priority: none of its own); a schedule whose
        cron or time zone changes, or that is enabled again, has its next tick computed afresh by the
        scheduler (from the change)."""
        return await self._db.fetch_one_as(
            Trigger,
            "update_trigger",
            id=trigger_id,
            name=name,
            enabled=enabled,
            config=None if config is None else Jsonb(config),
            priority=priority,
            clear_priority=clear_priority,
        )

    async def rotate_secret(self, trigger_id: UUID, *, secret: bytes, keep_seconds: float) -> Trigger | None:
        """A signed webhook's new (encrypted) secret; the one it replaces stays valid `keep_seconds`.
        None: no such signed webhook."""
        return await self._db.fetch_one_as(
            Trigger, "rotate_trigger_secret", id=trigger_id, secret=secret, keep_seconds=keep_seconds
        )

    async def delete(self, trigger_id: UUID) -> bool:
        row = await self._db.fetch_one("delete_trigger", id=trigger_id)
        return row is not None

    async def secret(self, trigger_id: UUID) -> bytes | None:
        """The encrypted signing secret (for the webhook endpoint)."""
        row = await self._db.fetch_one("get_trigger_secret", id=trigger_id)
        return None if row is None else row["secret"]
