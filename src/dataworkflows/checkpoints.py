"""The typed shapes of what a worker reads and writes: the run and node checkpoints that come with
the lease (dw.try_acquire_execution_v6), the per-node state the runtime keeps, and an attempt record
(dw.record_attempt_v6). Pure module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from dataworkflows.statuses import AttemptStatus, NodeStatus, Verdict


class RunInfo(msgspec.Struct, frozen=True, rename="camel"):
    """The execution as its worker needs it (the `run` column of try_acquire_execution_v6)."""

    workflow_id: str
    version: int
    trigger: dict[str, Any] | None
    principal_id: str | None
    correlation_id: str | None
    deadline_at: datetime | None
    # An operator asked to suspend the run, and it was taken anyway: an attempt its previous holder
    # was cut off from is recorded as interrupted first (dw.try_acquire_execution_v6).
    suspend_requested: bool = False


class WaitCheckpoint(msgspec.Struct, frozen=True, rename="camel"):
    """A node's wait (dw.wait_json_v1): open, or resolved and not yet recorded as the node's outcome."""

    id: UUID
    node_id: str
    kind: str
    # open | fired | received | approved | rejected | timed_out | withdrawn
    state: str
    attempt: int
    name: str | None
    correlation_key: str | None
    parameters: Any
    created_at: datetime
    due_at: datetime | None
    expires_at: datetime | None
    result: Any

    @property
    def is_open(self) -> bool:
        return self.state == "open"

    @property
    def wakes_at(self) -> datetime | None:
        """When it resolves by itself (a timer fires, a timeout expires), if ever."""
        return self.due_at or self.expires_at


class LeaseRenewal(msgspec.Struct, frozen=True):
    """The answer to a lease renewal (dw.renew_lease_v3)."""

    renewed: bool
    # Not renewed because the run ended under this lease (its token still current): most often the
    # holder's own end, whose answer the run has not taken in yet; not a lease taken by another.
    ended: bool
    # 'cancel' or 'suspend' when an operator asked for it; None otherwise.
    control: str | None
    # Waits that someone else resolved (a signal, an approval) and whose outcome is not recorded.
    waits: tuple[WaitCheckpoint, ...] = ()


class NodeCheckpoint(msgspec.Struct, frozen=True, rename="camel"):
    """One node's durable state (an element of the `nodes` column of try_acquire_execution_v6)."""

    node_id: str
    status: NodeStatus
    attempts: int
    # Attempts made before the latest redrive: the node's retry budget counts from here.
    attempt_base: int
    next_attempt_at: datetime | None
    outputs: Any
    # The wait of a Waiting node that waits on one (not on a retry's due time).
    wait: WaitCheckpoint | None = None
    # Attempts cut short by their worker since the latest redrive (bounded by DW_MAX_INTERRUPTIONS).
    interruptions: int = 0
    # The node failed and nothing handled the failure: its record decided the run (it fails with this
    # error as the cause), though the worker that wrote it stopped before it ended the run.
    failed_unhandled: bool = False
    error: dict[str, Any] | None = None


class Throttle(msgspec.Struct, frozen=True, rename="camel"):
    """Why a root run may not start yet: "concurrency" (retry_at None: when a running one ends) or
    "rate" (retry_at: its turn under the workflow's rateLimitPerMinute)."""

    throttled_by: str
    retry_at: datetime | None = None


class Acquired(msgspec.Struct, frozen=True):
    """The answer to a lease request. `run` and `nodes` are set when outcome is "acquired",
    `throttle` when it is "throttled"."""

    outcome: str
    lease_token: int | None
    run: RunInfo | None = None
    nodes: tuple[NodeCheckpoint, ...] = ()
    throttle: Throttle | None = None
    # Nodes the acquire started for their next attempt (their checkpoints say Running): the worker
    # runs those attempts; they were not interrupted.
    started: tuple[str, ...] = ()


@dataclass
class NodeState:
    """What the runtime knows of one node while it holds the run: its checkpoint, kept current."""

    status: NodeStatus
    attempts: int
    attempt_base: int
    next_at: datetime | None
    outputs: Any
    wait: WaitCheckpoint | None = None
    interruptions: int = 0
    # A Running forEach parked: nothing to start until an item's child ends or a retry comes due.
    parked: bool = False
    # Started in the database by the acquire or by another node's record (its attempt number is
    # `attempts`), not yet launched by the worker.
    prestarted: bool = False
    # Its failure, recorded under an earlier lease, was unhandled: the run fails (NodeCheckpoint).
    failed_unhandled: bool = False
    error: dict[str, Any] | None = None

    @classmethod
    def from_checkpoint(cls, checkpoint: NodeCheckpoint) -> NodeState:
        outputs = checkpoint.outputs if checkpoint.status == NodeStatus.SUCCEEDED else None
        return cls(
            checkpoint.status,
            checkpoint.attempts,
            checkpoint.attempt_base,
            checkpoint.next_attempt_at,
            outputs,
            checkpoint.wait,
            checkpoint.interruptions,
            failed_unhandled=checkpoint.failed_unhandled,
            error=checkpoint.error,
        )

    @property
    def open_wait(self) -> WaitCheckpoint | None:
        return self.wait if self.wait is not None and self.wait.is_open else None

    @property
    def resolved_wait(self) -> WaitCheckpoint | None:
        """A wait whose result is in and whose outcome this node has not recorded yet."""
        return self.wait if self.wait is not None and not self.wait.is_open else None

    @property
    def retry_due(self) -> datetime | None:
        """When a Waiting node that backs off may try again (None for one that waits on a wait)."""
        return self.next_at if self.status == NodeStatus.WAITING and self.wait is None else None


class AttemptRecord(msgspec.Struct, frozen=True):
    """One attempt and its decided outcome, written in one fenced transaction."""

    execution_id: UUID
    token: int
    node_id: str
    attempt: int
    action_type: str
    attempt_status: AttemptStatus
    parameters: Any
    outputs: Any
    error: dict[str, Any] | None
    start_time: datetime
    end_time: datetime
    worker: str
    outcome: Verdict
    next_attempt_at: datetime | None
    fired: tuple[bool, ...]
    resource_links: tuple[dict[str, Any], ...] = ()
    # The worker running this attempt stopped before it ended (handed back, or lost): recorded as
    # such, counted in the node's interruptions and not against its retry budget.
    interrupted: bool = False
    # The worker's next steps, in the same transaction (dw.record_attempt_v6): start up to this many
    # of the nodes the edge decisions make Ready (its free parallel slots), and end the run as
    # Succeeded if this record leaves nothing to do; when it does, the Procrastinate job running
    # the run (finish_job, its id, fetched by the Procrastinate worker job_worker) ends with it.
    start_limit: int = 0
    complete: bool = False
    finish_job: int | None = None
    job_worker: int | None = None


class NodeChange(msgspec.Struct, frozen=True):
    """A node whose status an attempt's edge decisions changed: Ready or Skipped, or Running with
    its attempt number when the record started it."""

    node_id: str
    status: NodeStatus
    attempt: int | None = None


class Recorded(msgspec.Struct, frozen=True):
    """What recording an attempt changed: other nodes, and whether it ended the run (Succeeded)."""

    changes: list[NodeChange]
    run_succeeded: bool = False
    # The run's end also ended its Procrastinate job (AttemptRecord.finish_job).
    job_finished: bool = False
