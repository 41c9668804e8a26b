"""Executions as callers see them: starting one, reading it, its node states, attempts and events,
and the listeners that have its events NOTIFYed."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from dataworkflows.sqlfiles import QUERIES
from dataworkflows.statuses import AttemptStatus, ExecutionStatus, NodeStatus

if TYPE_CHECKING:
    from dataworkflows.db import Database


class StartedExecution(msgspec.Struct, frozen=True):
    execution_id: UUID
    status: ExecutionStatus
    workflow_version: int
    # False when the request id matched an earlier execution (nothing new was started).
    created: bool


class Execution(msgspec.Struct, frozen=True):
    id: UUID
    workflow_id: str
    workflow_version: int
    workflow_checksum: str
    request_id: str
    status: ExecutionStatus
    trigger: dict[str, Any]
    principal_id: str | None
    principal_type: str | None
    correlation_id: str | None
    parent_execution_id: UUID | None
    lease_owner: str | None
    recovery_count: int
    deadline_at: datetime | None
    created_at: datetime
    start_time: datetime | None
    end_time: datetime | None
    error: Any
    # Control requests (POST /executions/{id}/cancel, /suspend).
    cancel_requested_at: datetime | None = None
    cancel_requested_by: str | None = None
    suspend_requested_at: datetime | None = None
    suspended_at: datetime | None = None
    # The definition's `outputs`, rendered when the run succeeded.
    outputs: Any = None
    # Composition: the node of the parent that started it, the root of its tree (itself for a run
    # nobody started) and how deep it is (0 for a root).
    parent_node_id: str | None = None
    root_execution_id: UUID | None = None
    depth: int = 0
    # The schedule or webhook that started it (dw.triggers; kept when the trigger is deleted).
    trigger_id: UUID | None = None
    # Until when the worker named lease_owner holds the run (it renews it while it runs).
    lease_expires_at: datetime | None = None
    # Its jobs' priority, higher first (migration 0069).
    priority: int = 0
    # Its compensation (migration 0071): None, Compensating, Compensated or CompensationFailed.
    compensation_status: str | None = None


class ChildExecution(msgspec.Struct, frozen=True):
    """An execution a node of another started (a subworkflow)."""

    id: UUID
    workflow_id: str
    workflow_version: int
    parent_node_id: str | None
    status: ExecutionStatus
    created_at: datetime
    start_time: datetime | None
    end_time: datetime | None


class TreeExecution(msgspec.Struct, frozen=True):
    """One execution of a tree (a root, its children, theirs ...)."""

    id: UUID
    parent_execution_id: UUID | None
    parent_node_id: str | None
    depth: int
    workflow_id: str
    workflow_version: int
    status: ExecutionStatus
    created_at: datetime
    start_time: datetime | None
    end_time: datetime | None
    error_code: str | None


class ExecutionListItem(msgspec.Struct, frozen=True):
    id: UUID
    workflow_id: str
    workflow_version: int
    request_id: str
    status: ExecutionStatus
    principal_id: str | None
    created_at: datetime
    start_time: datetime | None
    end_time: datetime | None
    cancel_requested_at: datetime | None = None
    suspended_at: datetime | None = None
    trigger_id: UUID | None = None
    parent_execution_id: UUID | None = None
    # manual | schedule | webhook | subworkflow
    trigger_kind: str = "manual"
    priority: int = 0
    compensation_status: str | None = None


class NodeState(msgspec.Struct, frozen=True):
    node_id: str
    action_type: str
    status: NodeStatus
    attempts: int
    attempt_base: int
    expected_incoming: int
    decided_incoming: int
    satisfied_incoming: int
    outputs: Any
    error: Any
    next_attempt_at: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    interruptions: int = 0


class Attempt(msgspec.Struct, frozen=True):
    id: UUID
    node_id: str
    action_type: str
    attempt: int
    status: AttemptStatus
    parameters: Any
    outputs: Any
    error: Any
    worker: str | None
    start_time: datetime
    end_time: datetime
    # A forEach item attempt's item (None for a node's own attempts).
    item_index: int | None = None
    interrupted: bool = False


class AttemptKey(msgspec.Struct, frozen=True):
    """Where an attempt stands in a run's attempts (the paging key of attempts_page): unique in a run."""

    start_time: datetime
    node_id: str
    # The forEach item's index, -1 for a node's own attempts.
    item_index: int
    attempt: int


def attempt_key(attempt: Attempt) -> AttemptKey:
    return AttemptKey(
        attempt.start_time, attempt.node_id, -1 if attempt.item_index is None else attempt.item_index, attempt.attempt
    )


class ForEachItem(msgspec.Struct, frozen=True):
    """One item of a forEach node."""

    index: int
    status: str
    attempts: int
    node_attempt: int
    outputs: Any
    error: Any
    started_at: datetime | None
    ended_at: datetime | None


class Event(msgspec.Struct, frozen=True):
    id: int
    node_id: str | None
    type: str
    at: datetime
    principal: str | None
    details: dict[str, Any]


class AuditEvent(msgspec.Struct, frozen=True):
    """An event of the execution log with its run and workflow (the tenant's audit log)."""

    id: int
    execution_id: UUID
    workflow_id: str
    node_id: str | None
    type: str
    at: datetime
    principal: str | None
    details: dict[str, Any]


class ExecutionData:
    """Starting and reading executions."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def start(
        self,
        *,
        workflow_id: str,
        request_id: str,
        trigger: dict[str, Any],
        principal_id: str | None,
        principal_type: str | None,
        correlation_id: str | None,
        queue: str,
        trace_context: dict[str, str] | None = None,
        priority: int | None = None,
    ) -> StartedExecution:
        """Starts an execution and queues its run job, or finds the one with this request id.
        trace_context: the caller's W3C trace context (traceparent, tracestate), kept on a new
        execution for its worker (dataworkflows.traces); None: none. priority: the run's (-100 to
        100, higher first; None: its definition's, else 0), which every job of the run carries.

        The start's transaction sends no NOTIFY (dw.start_execution_v4): once it has committed, a
        second statement, in the same message (start_execution_then_notify), wakes the workers, so that
        concurrent starts share their commits' WAL flushes instead of queuing for PostgreSQL's notify
        lock one flush after another, and the workers are woken without waiting for this process to
        read the answer and send again. If the notification cannot be sent, the run is started all the
        same (a warning in the server's log) and a worker finds its job at its next poll
        (Procrastinate's, within 5 s)."""
        row = await self._db.fetch_one_of_message(
            "start_execution_then_notify",
            trace_context=None if trace_context is None else Jsonb(trace_context),
            workflow_id=workflow_id,
            request_id=request_id,
            # Explicit: an empty trigger is still a jsonb object.
            trigger=Jsonb(trigger),
            principal_id=principal_id,
            principal_type=principal_type,
            correlation_id=correlation_id,
            queue=queue,
            priority=priority,
        )
        assert row is not None
        return msgspec.convert(row, StartedExecution)

    async def get(self, execution_id: UUID) -> Execution | None:
        return await self._db.fetch_one_as(Execution, "get_execution", id=execution_id)

    async def trace_context(self, execution_id: UUID) -> dict[str, str] | None:
        """The W3C trace context the execution was started with (or inherited from its parent)."""
        row = await self._db.fetch_one("execution_trace_context", id=execution_id)
        context = None if row is None else row["trace_context"]
        return {str(k): str(v) for k, v in context.items()} if isinstance(context, dict) else None

    async def keep_trace_context(self, execution_id: UUID, context: dict[str, str]) -> None:
        """Stores `context` as the execution's trace context if it has none."""
        await self._db.execute("keep_execution_trace_context", id=execution_id, context=Jsonb(context))

    async def tenant_of(self, execution_id: UUID) -> str | None:
        """The execution's tenant, if this task may see it (under ALL_TENANTS: any execution)."""
        row = await self._db.fetch_one("execution_tenant", id=execution_id)
        return None if row is None else str(row["tenant_id"])

    async def page(
        self,
        *,
        workflow_id: str | None,
        status: str | None,
        after_created: datetime | None,
        after_id: UUID | None,
        limit: int,
        trigger_kind: str | None = None,
        trigger_id: UUID | None = None,
        created_from: datetime | None = None,
        created_to: datetime | None = None,
    ) -> list[ExecutionListItem]:
        """Newest first, after a (created_at, id) cursor; created_from inclusive, created_to exclusive."""
        return await self._db.fetch_all_as(
            ExecutionListItem,
            "list_executions",
            workflow_id=workflow_id,
            status=status,
            trigger_kind=trigger_kind,
            trigger_id=trigger_id,
            created_from=created_from,
            created_to=created_to,
            after_created=after_created,
            after_id=after_id,
            limit=limit,
        )

    async def node_states(self, execution_id: UUID) -> list[NodeState]:
        """In definition order."""
        return await self._db.fetch_all_as(NodeState, "list_node_states", id=execution_id)

    async def has_node(self, execution_id: UUID, node_id: str) -> bool:
        row = await self._db.fetch_one("node_exists", id=execution_id, node_id=node_id)
        return bool(row and row["found"])

    async def attempts(self, execution_id: UUID) -> list[Attempt]:
        """In the order they started."""
        return await self._db.fetch_all_as(Attempt, "list_attempts", id=execution_id)

    async def attempts_page(
        self,
        execution_id: UUID,
        *,
        node_id: str | None,
        after: AttemptKey | None,
        latest: bool,
        limit: int,
        full: bool = True,
    ) -> list[Attempt]:
        """Up to `limit` attempts (of `node_id` only, when given) in the order they started, or the
        latest first, past `after` (the key of the previous page's last attempt: attempt_key); without
        their parameters, outputs and error unless `full` (None in their places)."""
        return await self._db.fetch_all_as(
            Attempt,
            "page_attempts_latest" if latest else "page_attempts",
            id=execution_id,
            full=full,
            node_id=node_id,
            after_time=None if after is None else after.start_time,
            after_node=None if after is None else after.node_id,
            after_item=None if after is None else after.item_index,
            after_attempt=None if after is None else after.attempt,
            limit=limit,
        )

    async def children(
        self, execution_id: UUID, *, after: tuple[datetime, UUID] | None = None, limit: int | None = None
    ) -> list[ChildExecution]:
        """The executions its nodes started, oldest first: after the child (created_at, id) `after`
        (None: from the first), at most `limit` (None: all)."""
        after_created, after_id = after or (None, None)
        return await self._db.fetch_all_as(
            ChildExecution,
            "list_children",
            id=execution_id,
            after_created=after_created,
            after_id=after_id,
            limit=limit,
        )

    async def child_count(self, execution_id: UUID) -> int:
        """How many executions its nodes started."""
        row = await self._db.fetch_one("count_children", id=execution_id)
        return int(row["n"]) if row else 0

    async def tree(
        self, execution_id: UUID, *, after: UUID | None = None, limit: int | None = None
    ) -> list[TreeExecution]:
        """The tree it belongs to (from its root), each child under its parent: after the run `after`
        (None: from the root), at most `limit` (None: all)."""
        return await self._db.fetch_all_as(TreeExecution, "execution_tree", id=execution_id, after=after, limit=limit)

    async def items(
        self, execution_id: UUID, node_id: str, *, after: int = -1, limit: int | None = None
    ) -> list[ForEachItem]:
        """A forEach node's items after index `after`, in order, at most `limit` (None: all); none for
        another node."""
        return await self._db.fetch_all_as(
            ForEachItem, "list_items", id=execution_id, node_id=node_id, after=after, limit=limit
        )

    async def events(self, execution_id: UUID, *, after: int = 0, limit: int = 1000) -> list[Event]:
        """The execution log after event id `after`, in order."""
        return await self._db.fetch_all_as(Event, "list_events", id=execution_id, after=after, limit=limit)

    async def audit_events(
        self, *, after: int, workflow_id: str | None, event_type: str | None, limit: int, settle: float = 0.0
    ) -> list[AuditEvent]:
        """Every run's log events after event id `after`, in order (the tenant's, by row-level
        security), up to the first written less than `settle` seconds ago."""
        return await self._db.fetch_all_as(
            AuditEvent,
            "list_audit_events",
            after=after,
            workflow_id=workflow_id,
            type=event_type,
            limit=limit,
            settle=settle,
        )

    async def prune_event_listeners(self, *, max_age_seconds: float) -> None:
        """Forgets listeners of processes that died without saying so."""
        await self._db.execute("prune_event_listeners", max_age_seconds=max_age_seconds)


# The event hub runs these on its own LISTEN connection, not the pool: it owns that connection and
# handles its errors (a lost connection is reconnected), so they are not translated here.


async def add_event_listener(conn: psycopg.AsyncConnection[Any], execution_id: UUID, listener: str) -> None:
    """From now on, the execution's events are NOTIFYed (for this listener among others)."""
    await conn.execute(QUERIES["add_event_listener"], {"id": execution_id, "listener": listener})


async def renew_event_listeners(conn: psycopg.AsyncConnection[Any], listener: str) -> None:
    """The listener's rows are in use: their age starts again (dw.event_listeners' prune goes by it)."""
    await conn.execute(QUERIES["renew_event_listeners"], {"listener": listener})


async def remove_event_listener(conn: psycopg.AsyncConnection[Any], execution_id: UUID, listener: str) -> None:
    await conn.execute(QUERIES["remove_event_listener"], {"id": execution_id, "listener": listener})
