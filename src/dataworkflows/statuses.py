"""Status enums. Values match the SQL check constraints (and the seeds' spelling)."""

from __future__ import annotations

from enum import StrEnum


class WorkflowStatus(StrEnum):
    DRAFT = "Draft"
    ACTIVE = "Active"
    ARCHIVED = "Archived"


class ExecutionStatus(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    WAITING = "Waiting"
    # Paused by an operator: nothing starts until it is resumed.
    SUSPENDED = "Suspended"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    CANCELLED = "Cancelled"
    TIMED_OUT = "TimedOut"

    @property
    def is_final(self) -> bool:
        return self in _FINAL_EXECUTION


_FINAL_EXECUTION = frozenset(
    {ExecutionStatus.SUCCEEDED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED, ExecutionStatus.TIMED_OUT}
)


class DeadLetterKind(StrEnum):
    """dw.dead_letters.kind (constraint dead_letters_kind_check)."""

    # A node failed for good and nothing handled it.
    NODE_FAILED = "node_failed"
    # The run's worker died more often than DW_MAX_RECOVERIES.
    WORKER_LOST = "worker_lost"
    # A Procrastinate job raised.
    JOB_FAILED = "job_failed"
    # A step of a run's compensation failed for good (README "Compensation"): its redrive runs the
    # failed steps again.
    COMPENSATION_FAILED = "compensation_failed"
    # A root run ran past its workflowTimeout.
    TIMED_OUT = "timed_out"


class WebhookOutcome(StrEnum):
    """dw.webhook_deliveries.outcome (constraint webhook_deliveries_outcome_check)."""

    # A run started.
    ACCEPTED = "accepted"
    # A delivery id (or signed content) seen before: the first delivery's run was answered.
    DUPLICATE = "duplicate"
    # The activation condition was false (or a Slack url_verification was answered).
    NOT_ACTIVATED = "not_activated"
    # A bad signature, a stale timestamp, a body or template that could not be used, a disabled hook.
    REFUSED = "refused"


class NodeStatus(StrEnum):
    PENDING = "Pending"
    READY = "Ready"
    RUNNING = "Running"
    WAITING = "Waiting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"
    CANCELLED = "Cancelled"

    @property
    def is_final(self) -> bool:
        return self in FINAL_NODE


FINAL_NODE = frozenset({NodeStatus.SUCCEEDED, NodeStatus.FAILED, NodeStatus.SKIPPED, NodeStatus.CANCELLED})


class AttemptStatus(StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    RETRIABLE_FAILURE = "RetriableFailure"
    SKIPPED = "Skipped"
    TIMED_OUT = "TimedOut"
    # The run ended (cancelled, failed elsewhere, timed out) while the attempt was in flight.
    CANCELLED = "Cancelled"


class Verdict(StrEnum):
    """The node's next state after an attempt. Values are dw.record_attempt_v6's p_outcome."""

    SUCCEEDED = "succeeded"
    RETRY = "retry"
    FAILED_HANDLED = "failed_handled"
    FAILED_UNHANDLED = "failed_unhandled"

    @property
    def node_status(self) -> NodeStatus:
        return _NODE_STATUS[self]


_NODE_STATUS = {
    Verdict.SUCCEEDED: NodeStatus.SUCCEEDED,
    Verdict.RETRY: NodeStatus.WAITING,
    Verdict.FAILED_HANDLED: NodeStatus.FAILED,
    Verdict.FAILED_UNHANDLED: NodeStatus.FAILED,
}
