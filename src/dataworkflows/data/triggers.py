"""Triggers (schedules and webhooks) as the API and the CLI see them: create, read, change, delete."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from psycopg.types.json import Jsonb

from dataworkflows import errors, events

if TYPE_CHECKING:
    from dataworkflows.db import Database, Transaction


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
        most_event_triggers: int = 0,
    ) -> Trigger:
        """A new trigger (Conflict when the name is taken for this kind; NotFound without the workflow;
        TooManyEventTriggers when, enabled, it would take one event past `most_event_triggers`)."""
        params = {
            "id": trigger_id,
            "workflow_id": workflow_id,
            "kind": kind,
            "name": name,
            "enabled": enabled,
            "config": Jsonb(config),
            "secret": secret,
            "principal": principal,
            "priority": priority,
        }
        if kind == "event" and enabled and most_event_triggers:
            async with self._db.transaction() as tx:
                await _check_event_fan_out(tx, trigger_id, config, most_event_triggers)
                found = await tx.fetch_one("insert_trigger", **params)
            row = None if found is None else msgspec.convert(found, Trigger)
        else:
            row = await self._db.fetch_one_as(Trigger, "insert_trigger", **params)
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
        most_event_triggers: int = 0,
    ) -> Trigger | None:
        """Changes what is given (a priority, or clear_priority: none of its own); a schedule whose
        cron or time zone changes, or that is enabled again, has its next tick computed afresh by the
        scheduler (from the change). An event trigger enabled, or reconfigured and enabled after,
        is refused with TooManyEventTriggers when it would take one event past `most_event_triggers`
        (0: no limit), unless it stays enabled and matches no event it did not before (a narrowing); what it
        was is read under the tenant's event trigger lock, so a change made meanwhile is counted."""
        params = {
            "id": trigger_id,
            "name": name,
            "enabled": enabled,
            "config": None if config is None else Jsonb(config),
            "priority": priority,
            "clear_priority": clear_priority,
        }
        if not most_event_triggers or (enabled is not True and config is None):
            # A rename, a disable, a priority: nothing that makes a trigger match more.
            return await self._db.fetch_one_as(Trigger, "update_trigger", **params)
        async with self._db.transaction() as tx:
            await tx.fetch_one("lock_event_triggers")
            current = await tx.fetch_one("get_trigger", id=trigger_id)
            if current is not None and current["kind"] == "event":
                enabled_after = current["enabled"] if enabled is None else enabled
                if enabled_after and (config is not None or not current["enabled"]):
                    after = config if config is not None else current["config"]
                    # An enabled one narrowed (or given its config again) matches no event it did
                    # not: never refused, even in a group a lowered setting left past the limit,
                    # which the refusal tells to narrow (until this release only a disable passed).
                    if not (current["enabled"] and _narrows(current["config"], after)):
                        await _check_event_fan_out(tx, trigger_id, after, most_event_triggers)
            row = await tx.fetch_one("update_trigger", **params)
        return None if row is None else msgspec.convert(row, Trigger)

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


def _narrows(before: dict[str, Any], after: dict[str, Any]) -> bool:
    def subscription(config: dict[str, Any]) -> events.Subscription:
        return events.Subscription(str(config["eventType"]), config.get("source"))

    return events.takes_every_event_of(subscription(before), subscription(after))


def _busiest_event(new: events.Subscription, rows: list[dict[str, Any]]) -> tuple[int, str]:
    others = [events.Subscription(str(row["pattern"]), row["source"]) for row in rows]
    return events.busiest_event(new, others)


async def _check_event_fan_out(tx: Transaction, trigger_id: UUID, config: dict[str, Any], most: int) -> None:
    """Refuses an enabled event trigger with this config when one event would then match more than
    `most` of the tenant's enabled event triggers (each starts a run in the publish's one
    transaction). The tenant's event triggers stay locked until the caller's transaction ends."""
    await tx.fetch_one("lock_event_triggers")  # again in a transaction that holds it: no harm
    new = events.Subscription(str(config["eventType"]), config.get("source"))
    # Only the triggers one event could match together with this one (an overlapping pattern, a
    # source it takes): the others cannot change the count, and a tenant's every event trigger was
    # read (100,000 of them: 1.6 s a creation). The count in a thread: over thousands of triggers it
    # held the API's event loop, and every tenant's requests with it, for a second (a review).
    rows = await tx.fetch_all("enabled_event_subscriptions", id=trigger_id, pattern=new.pattern, source=new.source)
    count, event = await asyncio.to_thread(_busiest_event, new, rows)
    if count > most:
        raise errors.TooManyEventTriggers(
            f"an event of {event} would match {count} enabled event triggers of this tenant, one a run started"
            f" in one transaction; at most {most} may match one event (DW_MAX_EVENT_TRIGGERS): disable one, or"
            " narrow it (a longer eventType, a source) first"
        )
