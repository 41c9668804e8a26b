"""The typed shapes of what a worker reads and writes: the run and node checkpoints that come with
the lease (dw.try_acquire_execution_v3), the per-node state the runtime keeps, and an attempt record
(dw.record_attempt_v3). Pure module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from dataworkflows.statuses import AttemptStatus, NodeStatus, Verdict


class RunInfo(msgspec.Struct, frozen=True, rename="camel"):
    """The execution as its worker needs it (the `run` column of try_acquire_execution_v3)."""

    workflow_id: str
    version: int
    trigger: dict[str, Any] | None
    principal_id: str | None
    correlation_id: str | None
    deadline_at: datetime | None


class NodeCheckpoint(msgspec.Struct, frozen=True, rename="camel"):
    """One node's durable state (an element of the `nodes` column of try_acquire_execution_v3)."""

    node_id: str
    status: NodeStatus
    attempts: int
    # Attempts made before the latest redrive: the node's retry budget counts from here.
    attempt_base: int
    next_attempt_at: datetime | None
    outputs: Any


class Acquired(msgspec.Struct, frozen=True):
    """The answer to a lease request. `run` and `nodes` are set when outcome is "acquired"."""

    outcome: str
    lease_token: int | None
    run: RunInfo | None = None
    nodes: tuple[NodeCheckpoint, ...] = ()


@dataclass
class NodeState:
    """What the runtime knows of one node while it holds the run: its checkpoint, kept current."""

    status: NodeStatus
    attempts: int
    attempt_base: int
    next_at: datetime | None
    outputs: Any

    @classmethod
    def from_checkpoint(cls, checkpoint: NodeCheckpoint) -> NodeState:
        outputs = checkpoint.outputs if checkpoint.status == NodeStatus.SUCCEEDED else None
        return cls(checkpoint.status, checkpoint.attempts, checkpoint.attempt_base, checkpoint.next_attempt_at, outputs)


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


class NodeChange(msgspec.Struct, frozen=True):
    """A node whose status an attempt's edge decisions changed (Ready or Skipped)."""

    node_id: str
    status: NodeStatus
