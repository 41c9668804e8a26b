"""Control of running executions from outside the worker: cancel, suspend and resume requests,
signals, approval decisions, and reading waits and approvals (see sql/procedures/waits.sql)."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from psycopg.types.json import Jsonb

from dataworkflows import metrics
from dataworkflows.errors import ExecutionEnded, ExecutionNotFound
from dataworkflows.sqlfiles import QUERIES
from dataworkflows.statuses import ExecutionStatus

if TYPE_CHECKING:
    import psycopg

    from dataworkflows.db import Database

# Workers LISTEN here: its payload is an execution id whose holder must look at it now.
CONTROL_CHANNEL = "dw_control"


class DescendantsPriority(msgspec.Struct, frozen=True):
    """dw.set_descendants_priority_v1's answer."""

    # The runs below that took the priority; those whose row was locked at that moment (the same
    # request again changes them); the queued jobs moved in line.
    changed: int
    skipped: int
    jobs: int


class PriorityChange(msgspec.Struct, frozen=True):
    """dw.set_execution_priority_v1's answer."""

    # The run's status (unchanged by the request).
    status: str
    priority: int
    previous: int
    # False when it had that priority already (nothing written).
    changed: bool
    # Its queued jobs moved to the new priority (0 while a worker holds the run or it waits).
    jobs: int


class ControlOutcome(msgspec.Struct, frozen=True):
    # The execution's status after the request.
    status: str
    # What the request did: cancelled | requested | too_late | already_requested | already_cancelled
    # (cancel; too_late: the run's outcome is decided, every node has ended or one failed unhandled,
    # and it ends as it would have, dw.cancel_too_late_v1); suspended | requested | too_late |
    # already_suspended | already_requested (suspend; too_late likewise); resumed | withdrawn.
    outcome: str
    # The run's workflow (cancel's answer only).
    workflow_id: str | None = None


class SignalDelivery(msgspec.Struct, frozen=True):
    signal_id: str
    # consumed (a waiting node took it) | buffered (kept for a wait to come) | duplicate (this signal
    # id was delivered before: the first delivery's wait and node are answered).
    outcome: str
    wait_id: UUID | None
    node_id: str | None
    execution_status: str


class BroadcastDelivery(msgspec.Struct, frozen=True):
    """One run a signal sent to every waiting run reached (dw.broadcast_signal_v1)."""

    execution_id: UUID
    workflow_id: str | None
    # consumed | buffered (its wait was resolved meanwhile) | duplicate (it had this signal id) |
    # ended (it ended meanwhile: passed over) | signal_id_reused (it took another signal under this id)
    outcome: str
    wait_id: UUID | None
    node_id: str | None


class Broadcast(msgspec.Struct, frozen=True):
    signal_id: str
    deliveries: list[BroadcastDelivery]
    # The runs whose matching waits are still open after it (past the limit, or waiting since).
    remaining: int


class ApprovalDecision(msgspec.Struct, frozen=True):
    approval_id: UUID
    execution_id: UUID
    node_id: str
    # open (more decisions needed) | approved | rejected
    state: str
    approvals: int
    rejections: int
    required: int


class Wait(msgspec.Struct, frozen=True):
    id: UUID
    execution_id: UUID
    node_id: str
    attempt: int
    kind: str
    state: str
    name: str | None
    correlation_key: str | None
    details: dict[str, Any]
    created_at: datetime
    due_at: datetime | None
    expires_at: datetime | None
    consumed_at: datetime | None
    consumed_by: str | None
    result: Any


class Approval(msgspec.Struct, frozen=True):
    id: UUID
    execution_id: UUID
    workflow_id: str
    node_id: str
    state: str
    # approvers, required, quorum, title, description
    details: dict[str, Any]
    created_at: datetime
    expires_at: datetime | None
    consumed_at: datetime | None
    result: Any
    # Past its timeout while still open (no worker has timed it out yet): it takes no decisions.
    lapsed_at: datetime | None
    decisions: list[dict[str, Any]]


class WaitingRuns(msgspec.Struct, frozen=True):
    status: str
    runs: int


class ControlData:
    """Requests that change a run from outside its worker, and what they wait on."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def cancel(self, execution_id: UUID, *, principal: str | None, reason: str | None) -> ControlOutcome:
        """Cancels a run: at once when no worker holds it, else its worker is told. A run ended here
        (Waiting, Pending, Suspended, throttled) is counted as finished, as its worker counts the end
        it makes: cancels of waiting runs, the most common kind, were counted nowhere."""
        row = await self._db.fetch_one_as(
            ControlOutcome, "request_cancel", id=execution_id, principal=principal, reason=reason
        )
        assert row is not None
        if row.outcome == "cancelled" and row.workflow_id is not None:
            metrics.EXECUTIONS_FINISHED.labels(row.workflow_id, ExecutionStatus.CANCELLED.value).inc()
        return row

    async def bulk_cancel_candidates(
        self, workflow_id: str, *, statuses: list[str], before: datetime | None, limit: int
    ) -> list[tuple[UUID, str]]:
        """The root runs of the workflow a bulk cancel takes (not yet asked to cancel), those not started
        first, then the others, each oldest first, with their statuses when read."""
        rows = await self._db.fetch_all(
            "bulk_cancel_candidates", workflow_id=workflow_id, statuses=statuses, before=before, limit=limit
        )
        return [(row["id"], row["status"]) for row in rows]

    async def cancel_children(self, parent_id: UUID) -> list[UUID]:
        """Cancels the unfinished children a parent that ended must cancel (dw.children_to_cancel_v1),
        each in its own transaction (see the lock order in composition.sql); returns those it asked."""
        rows = await self._db.fetch_all("children_to_cancel", id=parent_id)
        if not rows:
            return []
        principal, reason = await self._cascade_reason(parent_id)
        return await self._cancel_each([row["execution_id"] for row in rows], principal, reason)

    async def cancel_overlapped(self, execution_ids: list[UUID], reason: str) -> list[UUID]:
        """Cancels the runs a schedule's newer tick replaces (overlap cancelOther) whose rows the tick
        found held, each in its own transaction, by "scheduler"; returns those it asked."""
        return await self._cancel_each(execution_ids, "scheduler", reason)

    async def _cancel_each(self, execution_ids: list[UUID], principal: str | None, reason: str) -> list[UUID]:
        """Cancels each run in a transaction of its own; returns those it asked (not those that had
        ended meanwhile, nor those gone: retention removed them)."""
        asked = []
        for execution_id in execution_ids:
            try:
                await self.cancel(execution_id, principal=principal, reason=reason)
            except (ExecutionEnded, ExecutionNotFound):
                continue  # nothing to cancel
            asked.append(execution_id)
        return asked

    async def _cascade_reason(self, parent_id: UUID) -> tuple[str | None, str]:
        """Who cancels a parent's children, and why: a cancelled parent's canceller and reason (the
        children said only that their parent had "ended", whoever cancelled it and why), else how
        the parent ended."""
        parent = await self._db.fetch_one("parent_end", id=parent_id)
        if parent is None:
            return None, f"its parent execution {parent_id} ended"
        if parent["status"] == "Cancelled":
            # The child's error names its canceller as any cancel's does: "cancelled by ops: …".
            why = f": {parent['cancel_reason'][:1000]}" if parent["cancel_reason"] else ""
            return parent["cancel_requested_by"], f"its parent execution {parent_id} was cancelled{why}"
        return None, f"its parent execution {parent_id} ended ({parent['status']})"

    async def suspend(self, execution_id: UUID, *, principal: str | None, reason: str | None) -> ControlOutcome:
        row = await self._db.fetch_one_as(
            ControlOutcome, "request_suspend", id=execution_id, principal=principal, reason=reason
        )
        assert row is not None
        return row

    async def set_priority(self, execution_id: UUID, priority: int, *, principal: str | None) -> PriorityChange:
        """Changes the run's priority and its queued jobs' (an ended run: ExecutionEnded)."""
        row = await self._db.fetch_one_as(
            PriorityChange, "set_execution_priority", id=execution_id, priority=priority, principal=principal
        )
        assert row is not None
        return row

    async def set_descendants_priority(
        self, execution_id: UUID, priority: int, *, principal: str | None
    ) -> DescendantsPriority:
        """The unfinished runs below the run take `priority` (after the run's own change)."""
        row = await self._db.fetch_one_as(
            DescendantsPriority, "set_descendants_priority", id=execution_id, priority=priority, principal=principal
        )
        assert row is not None
        return row

    async def resume(self, execution_id: UUID, *, principal: str | None, queue: str) -> ControlOutcome:
        row = await self._db.fetch_one_as(
            ControlOutcome, "resume_execution", id=execution_id, principal=principal, queue=queue
        )
        assert row is not None
        return row

    async def signal(
        self,
        execution_id: UUID,
        name: str,
        *,
        payload: Any,
        signal_id: str | None,
        correlation_key: str | None,
        principal: str | None,
        queue: str,
    ) -> SignalDelivery:
        row = await self._db.fetch_one_as(
            SignalDelivery,
            "deliver_signal",
            id=execution_id,
            name=name,
            signal_id=signal_id,
            correlation_key=correlation_key,
            payload=Jsonb(payload),
            principal=principal,
            queue=queue,
        )
        assert row is not None
        return row

    async def broadcast(
        self,
        name: str,
        *,
        payload: Any,
        signal_id: str,
        correlation_key: str | None,
        workflow_id: str | None,
        principal: str | None,
        queue: str,
        limit: int,
    ) -> Broadcast:
        """A signal to every run of the tenant waiting for it by name and key (README "Signals to
        every run that waits"), in one transaction."""
        rows = await self._db.fetch_all(
            "broadcast_signal",
            name=name,
            signal_id=signal_id,
            correlation_key=correlation_key,
            payload=Jsonb(payload),
            principal=principal,
            queue=queue,
            workflow_id=workflow_id,
            limit=limit,
        )
        deliveries = [msgspec.convert(row, BroadcastDelivery) for row in rows if row["outcome"] != "none"]
        return Broadcast(signal_id=signal_id, deliveries=deliveries, remaining=int(rows[0]["remaining"]) if rows else 0)

    async def decide(
        self, approval_id: UUID, *, principal: str | None, decision: str, comment: str | None, queue: str
    ) -> ApprovalDecision:
        row = await self._db.fetch_one_as(
            ApprovalDecision,
            "decide_approval",
            id=approval_id,
            principal=principal,
            decision=decision,
            comment=comment,
            queue=queue,
        )
        assert row is not None
        return row

    async def waits(self, execution_id: UUID) -> list[Wait]:
        return await self._db.fetch_all_as(Wait, "list_waits", id=execution_id)

    async def waits_of_runs(self, execution_ids: list[UUID], *, open_only: bool, limit: int) -> list[Wait]:
        """The waits of these executions (those this task's tenant may see), at most `limit`."""
        return await self._db.fetch_all_as(
            Wait, "list_waits_of_runs", ids=execution_ids, open_only=open_only, limit=limit
        )

    async def approvals(
        self,
        *,
        principal: str | None,
        open_only: bool,
        execution_id: UUID | None = None,
        limit: int = 100,
        before: tuple[datetime, UUID] | None = None,
    ) -> list[Approval]:
        """Newest first; `before`: the (created_at, id) of the last approval of the page before."""
        before_at, before_id = before if before is not None else (None, None)
        return await self._db.fetch_all_as(
            Approval,
            "list_approvals",
            principal=principal,
            open_only=open_only,
            execution_id=execution_id,
            limit=limit,
            before_at=before_at,
            before_id=before_id,
        )

    async def approval(self, approval_id: UUID) -> Approval | None:
        return await self._db.fetch_one_as(Approval, "get_approval", id=approval_id)

    async def waiting_runs(self) -> list[WaitingRuns]:
        return await self._db.fetch_all_as(WaitingRuns, "count_waiting_runs")


async def listen_for_control(conn: psycopg.AsyncConnection[Any]) -> None:
    """On the worker's own listening connection (not the pool): from now on, dw_control's
    notifications arrive there."""
    await conn.execute(QUERIES["listen_control"])
