"""The worker's side of the data layer: the lease, node attempts, checkpoints and the run's end.
Every write is fenced by the lease token in its procedure (SQLSTATE DW010 -> LeaseLost). Every
error written here is scrubbed with the current run's scrubber (dataworkflows.scrubbing): the one
place where node, item and run errors, events and dead letters reach the database from a worker."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import msgspec
from procrastinate.connector import BaseConnector
from psycopg.types.json import Jsonb

from dataworkflows.checkpoints import (
    Acquired,
    AttemptRecord,
    LeaseRenewal,
    NodeChange,
    Recorded,
    Throttle,
    WaitCheckpoint,
)
from dataworkflows.errors import DataWorkflowsError, InvalidInput, InvariantViolation
from dataworkflows.foreach import ItemCheckpoint, ItemRecord
from dataworkflows.json_depth import too_deep
from dataworkflows.planning import Plan, plan_from_json
from dataworkflows.scrubbing import current as current_scrubber
from dataworkflows.sqlfiles import QUERIES
from dataworkflows.statuses import ExecutionStatus, NodeStatus
from dataworkflows.subworkflows import ChildSpec
from dataworkflows.tenancy import ALL_TENANTS, current_tenant
from dataworkflows.waits import WaitSpec

if TYPE_CHECKING:
    from dataworkflows.data.group_commit import GroupCommit
    from dataworkflows.db import Database


class Parked(msgspec.Struct, frozen=True):
    wake_at: datetime | None
    # parked | cancelled | suspended
    outcome: str
    # The run's Procrastinate job ended in the same transaction (park's job_id).
    job_finished: bool = False


class ThrottleParked(msgspec.Struct, frozen=True):
    # The run waits on its row until its turn (false: it is no longer a Pending run nobody holds).
    parked: bool
    # The run's Procrastinate job ended in the same transaction (job_id given).
    job_finished: bool = False


class Suspension(msgspec.Struct, frozen=True):
    # suspended | cancelled | withdrawn | too_late (the run's outcome was decided, every node ended
    # or one failed unhandled, while the request was pending: carry on and end it as it would have
    # ended; dw.refuse_late_suspension_v1)
    outcome: str
    # The run's Procrastinate job ended in the same transaction (suspend's job_id).
    job_finished: bool = False


class Cancellation(msgspec.Struct, frozen=True):
    # cancelled (the run ended Cancelled) | too_late (the outcome was decided, every node had ended or
    # one failed unhandled: nothing was left to stop, the worker ends the run as it would have;
    # dw.cancel_too_late_v1)
    outcome: str
    # The run's Procrastinate job ended in the same transaction (cancel's job_id).
    job_finished: bool = False


class RunData:
    """What a worker reads and writes while it runs an execution."""

    def __init__(self, db: Database) -> None:
        self._db = db
        # A worker's records of concurrent runs, committed together (see GroupCommit); None: each
        # record is a transaction of its own.
        self.group_commit: GroupCommit | None = None

    async def record_one(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        """One attempt's record (dw.record_attempt_v6), a transaction of its own."""
        return await self._db.fetch_all(
            "record_attempt",
            **{
                **params,
                "parameters": _jsonb(params["parameters"]),
                "outputs": _jsonb(params["outputs"]),
                "error": _jsonb(params["error"]),
                "resource_links": _jsonb(params["resource_links"]),
            },
        )

    async def acquire(self, execution_id: UUID, *, owner: str, lease_seconds: float, start: bool = False) -> Acquired:
        """Takes the lease; with it, the run and its node checkpoints (one round trip). start: on
        the run's first acquire, its Ready nodes are started too (Acquired.started names them)."""
        row = await self._db.fetch_one(
            "acquire_run", id=execution_id, owner=owner, lease_seconds=lease_seconds, start=start
        )
        assert row is not None
        return acquired_from_row(row)

    async def renew_lease(self, execution_id: UUID, token: int, *, lease_seconds: float) -> LeaseRenewal:
        """Extends the lease; with it, control requests and waits resolved by others."""
        row = await self._db.fetch_one("renew_lease", id=execution_id, token=token, lease_seconds=lease_seconds)
        assert row is not None
        return msgspec.convert({**row, "waits": row["waits"] or ()}, LeaseRenewal)

    async def defer(self, execution_id: UUID, *, queue: str, at: datetime | None) -> None:
        """Queues a run job for the execution (at a time, or now)."""
        await self._db.fetch_one("defer_run", id=execution_id, queue=queue, scheduled_at=at)

    async def park_throttled(
        self, execution_id: UUID, *, wake_at: datetime, job_id: int | None = None, job_worker: int | None = None
    ) -> ThrottleParked:
        """A run its workflow's limits hold back waits on its row until `wake_at`, Pending, with no
        job (dw.wake_due_runs_v1 queues one then). With job_id (and the Procrastinate worker that
        fetched it), the job the run ran under ends too."""
        parked = await self._db.fetch_one_as(
            ThrottleParked,
            "park_throttled_run",
            id=execution_id,
            wake_at=wake_at,
            job_id=job_id,
            job_worker_id=job_worker,
        )
        assert parked is not None
        return parked

    async def plan(self, workflow_id: str, version: int) -> Plan | None:
        row = await self._db.fetch_one("get_plan", id=workflow_id, version=version)
        return None if row is None else plan_from_json(row["plan"])

    async def start_node_attempt(self, execution_id: UUID, token: int, node_id: str) -> int | None:
        """Marks the node Running for its next attempt; returns the attempt number, or None when an
        operator's cancel or suspension is pending (nothing starts: the run checks its lease)."""
        row = await self._db.fetch_one("start_node_attempt", id=execution_id, token=token, node_id=node_id)
        assert row is not None
        return None if row["attempt"] is None else int(row["attempt"])

    async def attempt_started_at(self, execution_id: UUID, node_id: str, attempt: int) -> datetime | None:
        """When the node's attempt started (its node_started event), if that is known."""
        row = await self._db.fetch_one("attempt_started_at", id=execution_id, node_id=node_id, attempt=attempt)
        return None if row is None else row["at"]

    async def earlier_parameters(self, execution_id: UUID, node_id: str) -> dict[str, Any] | None:
        """The parameters the node's first rendered attempt used."""
        row = await self._db.fetch_one("earlier_parameters", id=execution_id, node_id=node_id)
        return None if row is None else row["parameters"]

    async def record_attempt(self, record: AttemptRecord) -> Recorded:
        """The attempt row, the node's new state, its event, its edge decisions and its resource
        links, in one transaction; with them, the nodes it starts and the run's end when
        record.start_limit and record.complete ask for them. Returns the nodes the edge decisions
        made Ready, Skipped or (started) Running, and whether the run ended."""
        _refuse_too_deep(record.parameters, record.outputs)
        params = {
            "id": record.execution_id,
            "token": record.token,
            "node_id": record.node_id,
            "attempt": record.attempt,
            "action_type": record.action_type,
            "attempt_status": record.attempt_status.value,
            "parameters": record.parameters,
            "outputs": record.outputs,
            "error": current_scrubber().error(record.error),
            "start_time": record.start_time,
            "end_time": record.end_time,
            "worker": record.worker,
            "outcome": record.outcome.value,
            "next_attempt_at": record.next_attempt_at,
            "fired": list(record.fired),
            "resource_links": list(record.resource_links) if record.resource_links else None,
            "interrupted": record.interrupted,
            "start_limit": record.start_limit,
            "complete": record.complete,
            "job_id": record.finish_job,
            "job_worker_id": record.job_worker,
        }
        if self.group_commit is not None:
            rows = await self.group_commit.record(params)
        else:
            rows = await self.record_one(params)
        changes = [
            NodeChange(row["node_id"], NodeStatus(row["status"]), row["attempt"])
            for row in rows
            if row["node_id"] is not None
        ]
        end = next((row for row in rows if row["node_id"] is None), None)
        return Recorded(changes, run_succeeded=end is not None, job_finished=bool(end and end["job_finished"]))

    async def record_event(
        self, execution_id: UUID, token: int, *, node_id: str | None, type: str, details: dict[str, Any]
    ) -> None:
        """An event outside an attempt (a condition that threw), fenced like every worker write."""
        await self._db.execute(
            "record_event",
            token=token,
            id=execution_id,
            node_id=node_id,
            type=type,
            details=_jsonb(current_scrubber().error(details)),
        )

    async def complete(
        self,
        execution_id: UUID,
        token: int,
        *,
        status: ExecutionStatus,
        error: dict[str, Any] | None,
        dead_letter_node: str | None = None,
        dead_letter_error: dict[str, Any] | None = None,
        outputs: Any = None,
        job_id: int | None = None,
        job_worker: int | None = None,
    ) -> bool:
        """Ends the run; a node whose unhandled failure ended it becomes a dead letter; a run that
        succeeded keeps its rendered outputs. Errors are scrubbed of the run's trigger values and
        secrets (dataworkflows.scrubbing), like every error this class records. With job_id (and
        the Procrastinate worker that fetched it), the job running the run ends too; returns
        whether it did."""
        scrubber = current_scrubber()
        row = await self._db.fetch_one(
            "complete_execution",
            id=execution_id,
            token=token,
            status=status.value,
            error=scrubber.error(error),
            dead_letter_node=dead_letter_node,
            dead_letter_error=_jsonb(scrubber.error(dead_letter_error)),
            outputs=_jsonb(outputs),
            job_id=job_id,
            job_worker_id=job_worker,
        )
        return bool(row and row["job_finished"])

    async def park(
        self, execution_id: UUID, token: int, *, queue: str, job_id: int | None = None, job_worker: int | None = None
    ) -> Parked:
        """Gives the lease up; a run job is queued for when the run must next wake up, or none
        when only signals and approvals without a timeout remain. A cancel or suspend request
        that arrived meanwhile takes effect instead (outcome cancelled or suspended). With job_id
        (and the Procrastinate worker that fetched it), the job running the run ends too."""
        parked = await self._db.fetch_one_as(
            Parked,
            "park_execution",
            id=execution_id,
            token=token,
            queue=queue,
            job_id=job_id,
            job_worker_id=job_worker,
        )
        assert parked is not None
        return parked

    async def begin_wait(
        self, execution_id: UUID, token: int, *, node_id: str, attempt: int, parameters: Any, spec: WaitSpec
    ) -> WaitCheckpoint:
        """The node waits from now on (a buffered signal or a due timer resolves it at once)."""
        _refuse_too_deep(parameters, None)
        row = await self._db.fetch_one(
            "begin_wait",
            id=execution_id,
            token=token,
            node_id=node_id,
            attempt=attempt,
            kind=spec.kind,
            name=spec.name,
            correlation_key=spec.correlation_key,
            parameters=_jsonb(parameters),
            details=_jsonb(spec.details),
            due_at=spec.due_at,
            expires_at=spec.expires_at,
        )
        assert row is not None
        return msgspec.convert(row["wait"], WaitCheckpoint)

    async def begin_child(
        self,
        execution_id: UUID,
        token: int,
        *,
        node_id: str,
        attempt: int,
        parameters: Any,
        spec: ChildSpec,
        max_depth: int,
    ) -> tuple[WaitCheckpoint | None, dict[str, Any] | None]:
        """Starts the node's child in its checkpoint: (its wait, None), or (None, the error that
        says why no child started: nesting_too_deep, child_workflow_not_found, child_not_runnable).
        Parameters the attempt could not record are refused before the child starts: checked only
        when the attempt was recorded, after the child had run, they failed the node
        unrecordable_result with the child's work done, and each redrive ran another child."""
        _refuse_too_deep(parameters, None)
        row = await self._db.fetch_one(
            "begin_child",
            id=execution_id,
            token=token,
            node_id=node_id,
            attempt=attempt,
            workflow_id=spec.workflow_id,
            version=spec.version,
            input=Jsonb(spec.input),
            parameters=_jsonb(parameters),
            wait=spec.wait,
            max_depth=max_depth,
        )
        assert row is not None
        if row["wait"] is None:
            return None, row["error"]
        return msgspec.convert(row["wait"], WaitCheckpoint), None

    async def load_items(self, execution_id: UUID, token: int, node_id: str, attempt: int) -> list[ItemCheckpoint]:
        """A forEach node attempt's items, in order (none before it wrote them)."""
        rows = await self._db.fetch_all("load_items", id=execution_id, token=token, node_id=node_id, attempt=attempt)
        return [msgspec.convert(row["item"], ItemCheckpoint) for row in rows]

    async def load_items_at(
        self, execution_id: UUID, token: int, node_id: str, attempt: int, indexes: list[int]
    ) -> list[ItemCheckpoint]:
        """Those of a forEach node attempt's items at `indexes`, in order."""
        rows = await self._db.fetch_all(
            "load_items_at", id=execution_id, token=token, node_id=node_id, attempt=attempt, indexes=indexes
        )
        return [msgspec.convert(row["item"], ItemCheckpoint) for row in rows]

    async def begin_items(
        self, execution_id: UUID, token: int, node_id: str, attempt: int, *, action_type: str, items: list[Any]
    ) -> list[ItemCheckpoint]:
        """Writes a forEach node attempt's items; returns every item, in order."""
        rows = await self._db.fetch_all(
            "begin_items",
            id=execution_id,
            token=token,
            node_id=node_id,
            attempt=attempt,
            action_type=action_type,
            items=Jsonb(items),
        )
        return [msgspec.convert(row["item"], ItemCheckpoint) for row in rows]

    async def start_item_attempts(
        self, execution_id: UUID, token: int, node_id: str, indexes: list[int]
    ) -> dict[int, int]:
        """Items start their next attempt: index -> attempt number (none while an operator's cancel
        or suspension of the run is pending)."""
        rows = await self._db.fetch_all(
            "start_item_attempts", id=execution_id, token=token, node_id=node_id, indexes=indexes
        )
        return {int(row["item_index"]): int(row["attempt"]) for row in rows}

    async def record_item_attempt(
        self, execution_id: UUID, token: int, node_id: str, record: ItemRecord, *, worker: str
    ) -> None:
        """One item attempt's row and the item's new state, in one fenced transaction."""
        _refuse_too_deep(record.parameters, record.outputs)
        await self._db.fetch_one(
            "record_item_attempt",
            id=execution_id,
            token=token,
            node_id=node_id,
            index=record.index,
            attempt=record.attempt,
            action_type=record.action_type,
            attempt_status=record.attempt_status.value,
            item_status=record.item_status,
            parameters=_jsonb(record.parameters),
            outputs=_jsonb(record.outputs),
            error=_jsonb(current_scrubber().error(record.error)),
            start_time=record.start_time,
            end_time=record.end_time,
            worker=worker,
            next_attempt_at=record.next_attempt_at,
            resource_links=_jsonb(list(record.resource_links)) if record.resource_links else None,
            interrupted=record.interrupted,
        )

    async def begin_item_child(
        self,
        execution_id: UUID,
        token: int,
        node_id: str,
        *,
        index: int,
        attempt: int,
        spec: ChildSpec,
        max_depth: int,
        worker: str,
    ) -> tuple[ItemCheckpoint | None, dict[str, Any] | None]:
        """A forEach item starts its child: (the item, None), or (None, why no child started:
        control_request_pending when an operator's request is pending and the node's items whose
        children had not started were put back)."""
        row = await self._db.fetch_one(
            "begin_item_child",
            id=execution_id,
            token=token,
            node_id=node_id,
            index=index,
            attempt=attempt,
            workflow_id=spec.workflow_id,
            version=spec.version,
            input=Jsonb(spec.input),
            wait=spec.wait,
            max_depth=max_depth,
            worker=worker,
        )
        assert row is not None
        if row["item"] is None:
            return None, row["error"]
        return msgspec.convert(row["item"], ItemCheckpoint), None

    async def stop_items(self, execution_id: UUID, token: int, node_id: str, why: str) -> int:
        """The items of a forEach that stopped and never ran are Cancelled; `why` it stopped is in
        their errors ("another item failed (failFast)")."""
        row = await self._db.fetch_one("stop_items", id=execution_id, token=token, node_id=node_id, why=why)
        assert row is not None
        return int(row["stopped"])

    async def fire_due_waits(self, execution_id: UUID, token: int) -> list[WaitCheckpoint]:
        """Timers that came due fire and waits past their timeout time out; returns them."""
        rows = await self._db.fetch_all("fire_due_waits", id=execution_id, token=token)
        return [msgspec.convert(row["wait"], WaitCheckpoint) for row in rows]

    async def cancel(
        self, execution_id: UUID, token: int, *, job_id: int | None = None, job_worker: int | None = None
    ) -> Cancellation:
        """Ends the run Cancelled (its cancel was requested); attempts in flight are recorded Cancelled.
        Outcome too_late, ending nothing, when every node had ended. With job_id (and the
        Procrastinate worker that fetched it), the job running a cancelled run ends too."""
        cancellation = await self._db.fetch_one_as(
            Cancellation, "cancel_execution", id=execution_id, token=token, job_id=job_id, job_worker_id=job_worker
        )
        assert cancellation is not None
        return cancellation

    async def suspend(
        self,
        execution_id: UUID,
        token: int,
        *,
        worker: str,
        job_id: int | None = None,
        job_worker: int | None = None,
    ) -> Suspension:
        """Suspends the run (its suspension was requested): "suspended", "cancelled" (a cancel came
        meanwhile and ended the run), "withdrawn" (resumed meanwhile: carry on) or "too_late" (the
        run's outcome was decided meanwhile: carry on, and end it). With job_id, the job running the
        run ends too, unless the suspension was withdrawn or too late."""
        suspension = await self._db.fetch_one_as(
            Suspension,
            "suspend_execution",
            id=execution_id,
            token=token,
            worker=worker,
            job_id=job_id,
            job_worker_id=job_worker,
        )
        assert suspension is not None
        return suspension

    async def release(self, execution_id: UUID, token: int, *, queue: str, reason: str) -> None:
        """Gives the lease back and re-queues the run at once (this worker is stopping)."""
        await self._db.fetch_one("release_execution", id=execution_id, token=token, queue=queue, reason=reason)


async def fetch_run_jobs(
    connector: BaseConnector,
    *,
    queues: Iterable[str] | None,
    worker_id: int,
    run_task: str,
    owner: str,
    lease_seconds: float,
    start: bool,
    limit: int,
) -> list[dict[str, Any]]:
    """The worker's fetch, through Procrastinate's connector as Procrastinate's own fetch_job query
    runs: up to `limit` jobs in one transaction (none: no job is due), each with its columns and, for
    a run job, the lease (dw.fetch_run_jobs_v2: outcome, lease_token, run, nodes, started; outcome
    None: none taken). In Procrastinate's order (priority, then id): the worker hands the first out at
    once and the others on its loop's next turns, and the procedure answers in no particular order."""
    rows = await connector.execute_query_all_async(
        query=QUERIES["fetch_run_jobs"],
        queues=list(queues) if queues is not None else None,
        worker_id=worker_id,
        run_task=run_task,
        owner=owner,
        lease_seconds=lease_seconds,
        start=start,
        limit=limit,
    )
    return sorted(rows, key=lambda row: (-row["priority"], row["id"]))


async def release_fetched_lease(
    connector: BaseConnector,
    *,
    execution_id: str,
    tenant: str,
    owner: str,
    job_id: int,
    token: int | None,
    queue: str | None,
    reason: str,
) -> bool:
    """Gives back the lease fetch_run_jobs took with job `job_id` for `owner` when the run will not
    run under it (dw.release_fetched_lease_v1): token None when the fetch's answer was lost; `queue`
    to queue the run again (its job ended before its task took the lease). Returns whether one was
    given back."""
    row = await connector.execute_query_one_async(
        query=QUERIES["release_fetched_lease"],
        id=execution_id,
        tenant=tenant,
        owner=owner,
        job_id=job_id,
        token=token,
        queue=queue,
        reason=reason,
    )
    return bool(row["released"])


def acquired_from_row(row: Mapping[str, Any]) -> Acquired:
    """An acquire's answer (dw.try_acquire_execution_v6's columns: outcome, lease_token, run, nodes,
    started), from the acquire itself or from the worker's fetch that took the lease with the job
    (dw.fetch_run_jobs_v2)."""
    if row["outcome"] == "throttled":
        # The procedure says why in `run`: {throttledBy, retryAt}.
        throttle = msgspec.convert(row["run"] or {"throttledBy": "concurrency"}, Throttle)
        return Acquired(outcome="throttled", lease_token=None, throttle=throttle)
    fields = {key: row[key] for key in ("outcome", "lease_token", "run")}
    return msgspec.convert({**fields, "nodes": row["nodes"] or (), "started": row["started"] or ()}, Acquired)


def _jsonb(value: Any) -> Jsonb | None:
    # Any JSON value (a list or a string too, not only a dict) goes to PostgreSQL as jsonb.
    return None if value is None else Jsonb(value)


class PlanCache:
    """Compiled plans by (tenant, workflow, version); versions are immutable, so entries never go
    stale. The tenant is the task's (the run's): workflow ids are unique per tenant only, and one
    worker runs every tenant's runs."""

    def __init__(self, data: RunData, max_entries: int = 512) -> None:
        self._data = data
        self._plans: OrderedDict[tuple[str, str, int], Plan] = OrderedDict()
        self._max = max_entries
        self.loads = 0

    async def get(self, workflow_id: str, version: int) -> Plan:
        tenant = current_tenant()
        if tenant is None or tenant == ALL_TENANTS:
            raise InvariantViolation(f"a plan of {workflow_id} v{version} was asked for outside a tenant")
        key = (tenant, workflow_id, version)
        cached = self._plans.get(key)
        if cached is not None:
            self._plans.move_to_end(key)
            return cached
        plan = await self._data.plan(workflow_id, version)
        if plan is None:
            raise DataWorkflowsError(f"no compiled plan for {workflow_id} v{version}")
        self.loads += 1
        self._plans[key] = plan
        if len(self._plans) > self._max:
            self._plans.popitem(last=False)
        return plan


def _refuse_too_deep(parameters: Any, outputs: Any) -> None:
    """InvalidInput (the attempt is recorded as unrecordable_result instead) for parameters or
    outputs nested deeper than MAX_RESULT_DEPTH."""
    why = too_deep("parameters", parameters) or too_deep("outputs", outputs)
    if why is not None:
        raise InvalidInput(why)
