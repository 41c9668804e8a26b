"""Request and response bodies (msgspec, camelCase on the wire), and from_row, which makes them
from the data layer's row structs."""

from __future__ import annotations

from datetime import datetime
from types import SimpleNamespace
from typing import Annotated, Any, Literal, TypeVar
from uuid import UUID

import msgspec

from dataworkflows.priorities import MAX_RUN_PRIORITY, MIN_RUN_PRIORITY
from dataworkflows.rate_limits import MAX_CONCURRENT_EXECUTIONS, MAX_RATE_PER_MINUTE
from dataworkflows.retention import MAX_RETENTION_DAYS


class Camel(msgspec.Struct, rename="camel", omit_defaults=False):
    pass


W = TypeVar("W", bound=Camel)


def from_row(cls: type[W], row: msgspec.Struct, **extra: Any) -> W:
    """A wire struct from a row struct, field by field name (the queries alias their columns to the
    wire's names; columns the wire does not show are left out), plus `extra`: what the row does not
    hold. Nested rows (an execution's nodes) convert the same way."""
    source = SimpleNamespace(**{**msgspec.structs.asdict(row), **extra}) if extra else row
    return msgspec.convert(source, cls, from_attributes=True)


class ExecuteRequest(Camel, forbid_unknown_fields=True):
    trigger: dict[str, Any] = msgspec.field(default_factory=dict)
    # Idempotency key: the same requestId for the same workflow returns the same execution.
    request_id: str | None = None
    correlation_id: str | None = None
    # The run's priority, higher first (README "Run priority"); null: the definition's, else 0.
    priority: Annotated[int, msgspec.Meta(ge=MIN_RUN_PRIORITY, le=MAX_RUN_PRIORITY)] | None = None


class ExecuteResponse(Camel):
    execution_id: UUID
    status: str
    status_url: str
    workflow_id: str
    workflow_version: int
    request_id: str
    # False when requestId matched an earlier execution (nothing new was started).
    created: bool


class WorkflowRead(Camel):
    id: str
    display_name: str
    description: str | None
    status: str
    current_version: int | None
    latest_version: int | None
    is_enabled: bool
    max_concurrent_executions: int | None
    rate_limit_per_minute: int | None
    created_at: datetime
    created_by: str | None
    updated_at: datetime
    archived_at: datetime | None = None
    archived_by: str | None = None
    template_id: str | None = None
    template_version: int | None = None
    definition: dict[str, Any] | None = None
    checksum: str | None = None
    # Days its finished runs are kept (null: the installation's default, DW_RETENTION_DAYS; 0: forever).
    retention_days: int | None = None
    # Who disabled it, and when (null while it is enabled: isEnabled).
    disabled_at: datetime | None = None
    disabled_by: str | None = None


class WorkflowLimitsUpdate(Camel, forbid_unknown_fields=True):
    """PATCH /workflows/{id}/limits: a field left out stays as it is; null clears it."""

    max_concurrent_executions: (
        Annotated[int, msgspec.Meta(ge=1, le=MAX_CONCURRENT_EXECUTIONS)] | msgspec.UnsetType | None
    ) = msgspec.UNSET
    rate_limit_per_minute: Annotated[int, msgspec.Meta(ge=1, le=MAX_RATE_PER_MINUTE)] | msgspec.UnsetType | None = (
        msgspec.UNSET
    )


class WorkflowRetentionUpdate(Camel, forbid_unknown_fields=True):
    """PATCH /workflows/{id}/retention: days its finished runs are kept; 0 forever, null the default."""

    retention_days: Annotated[int, msgspec.Meta(ge=0, le=MAX_RETENTION_DAYS)] | msgspec.UnsetType | None = msgspec.UNSET


class WorkflowList(Camel):
    items: list[WorkflowRead]
    next_cursor: str | None


class VersionRead(Camel):
    workflow_id: str
    version: int
    checksum: str
    created_at: datetime
    created_by: str | None
    published_at: datetime | None
    published_by: str | None
    definition: dict[str, Any] | None = None


class VersionWritten(Camel):
    workflow_id: str
    version: int
    checksum: str
    # False when the same definition (by checksum) already existed: that version is returned.
    created: bool
    workflow_status: str
    current_version: int | None


class TemplateParameterRead(Camel):
    name: str
    type: str
    required: bool
    default: Any = None
    description: str | None = None


class WorkflowTemplateRead(Camel):
    id: str
    version: int
    display_name: str
    description: str | None
    parameters: list[dict[str, Any]]
    checksum: str
    created_at: datetime
    created_by: str | None
    definition: dict[str, Any] | None = None


class WorkflowTemplateStored(WorkflowTemplateRead):
    """A store's answer: the version, and whether the store made it (False: the latest had the same
    content). Reads have no such field (it was null there)."""

    created: bool = True


class InstantiateRequest(Camel, forbid_unknown_fields=True):
    workflow_id: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    template_version: Annotated[int, msgspec.Meta(ge=1, le=2**31 - 1)] | None = None


class NodeStateRead(Camel):
    node_id: str
    action_type: str
    status: str
    attempts: int
    outputs: Any
    error: Any
    next_attempt_at: datetime | None
    start_time: datetime | None
    end_time: datetime | None
    # Attempts cut short by their worker (shutdown or a lost worker): retried without using the
    # retry budget (see "Faults and guarantees" in the README).
    interruptions: int = 0


class ExecutionRead(Camel):
    id: UUID
    workflow_id: str
    workflow_version: int
    workflow_checksum: str
    request_id: str
    status: str
    trigger: dict[str, Any]
    principal_id: str | None
    principal_type: str | None
    correlation_id: str | None
    created_at: datetime
    start_time: datetime | None
    end_time: datetime | None
    error: Any
    recovery_count: int
    nodes: list[NodeStateRead]
    # Control requests: a cancel or suspension asked for (and by whom), and since when it is Suspended.
    cancel_requested_at: datetime | None = None
    cancel_requested_by: str | None = None
    suspend_requested_at: datetime | None = None
    suspended_at: datetime | None = None
    # The workflow's declared `outputs`, rendered when the run succeeded (null otherwise).
    outputs: Any = None
    # Composition: the execution (and its node) that started this one, the root of its tree (itself
    # for a run nobody started), how deep it is (0 for a root), and the executions its nodes started.
    parent_execution_id: UUID | None = None
    parent_node_id: str | None = None
    root_execution_id: UUID | None = None
    depth: int = 0
    # The first 100 children, oldest first; childCount counts them all (the rest: …/children).
    children: list[ChildRead] = msgspec.field(default_factory=list)
    child_count: int = 0
    # The schedule or webhook that started it (its trigger payload's firedBy says more).
    trigger_id: UUID | None = None
    # The worker that holds the run now, and until when (it renews the lease while it runs); null
    # while no worker has it: Pending, parked (Waiting, Suspended), ended, or Running but handed
    # back (its worker stopped) or taken from a lost worker, queued for the next one. A lease past
    # its expiry is a worker that stopped renewing it: recovery queues the run again.
    worker: str | None = None
    lease_expires_at: datetime | None = None
    # Its jobs' priority, higher first (README "Run priority"): the start's, its definition's or its
    # parent's; changed by PUT /executions/{id}/priority.
    priority: int = 0
    # What undid its Succeeded nodes after it ended otherwise than Succeeded (README
    # "Compensation"); null when nothing was to be undone.
    compensation: CompensationRead | None = None


class CompensationStepRead(Camel):
    node_id: str
    # The order the steps run in: 1 first (the node that succeeded last).
    position: int
    # The compensation's action; `subworkflow` for a child run's compensation (childExecutionId).
    action_type: str
    # Pending | Running | Waiting (a child's compensation under way) | Succeeded | Failed
    status: str
    attempts: int
    max_attempts: int
    # The last attempt's rendered parameters, its outputs (Succeeded) or its error.
    parameters: Any
    outputs: Any
    error: Any
    next_attempt_at: datetime | None
    # The child run (a subworkflow node's, a forEach item's) this step undoes, by its own
    # compensation; null for a node's compensating action.
    child_execution_id: UUID | None
    start_time: datetime | None
    end_time: datetime | None


class CompensationRead(Camel):
    # Compensating | Compensated | CompensationFailed
    status: str
    steps: list[CompensationStepRead]


class ChildRead(Camel):
    id: UUID
    workflow_id: str
    workflow_version: int
    parent_node_id: str | None
    status: str
    created_at: datetime
    start_time: datetime | None
    end_time: datetime | None


class TreeNodeRead(Camel):
    id: UUID
    parent_execution_id: UUID | None
    parent_node_id: str | None
    depth: int
    workflow_id: str
    workflow_version: int
    status: str
    created_at: datetime
    start_time: datetime | None
    end_time: datetime | None
    error_code: str | None


class ItemRead(Camel):
    index: int
    # Pending | Running | Waiting | Succeeded | Failed | Cancelled
    status: str
    attempts: int
    # The attempt of the forEach node the item belongs to.
    node_attempt: int
    outputs: Any
    error: Any
    start_time: datetime | None
    end_time: datetime | None


class ExecutionSummary(Camel):
    id: UUID
    workflow_id: str
    workflow_version: int
    request_id: str
    status: str
    principal_id: str | None
    created_at: datetime
    start_time: datetime | None
    end_time: datetime | None
    cancel_requested_at: datetime | None = None
    suspended_at: datetime | None = None
    # What started it: the trigger (schedule or webhook) and the parent run (a subworkflow's).
    trigger_id: UUID | None = None
    parent_execution_id: UUID | None = None
    # manual (the API or the CLI) | schedule | webhook | subworkflow
    trigger_kind: str = "manual"
    # Its jobs' priority, higher first.
    priority: int = 0
    # Compensating | Compensated | CompensationFailed (null: none; README "Compensation").
    compensation_status: str | None = None


class ExecutionList(Camel):
    items: list[ExecutionSummary]
    next_cursor: str | None


class ControlRequest(Camel, forbid_unknown_fields=True):
    # Why (kept in the run's log, and in a cancelled run's error).
    reason: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


class PriorityRequest(Camel, forbid_unknown_fields=True):
    # Higher runs first (README "Run priority").
    priority: Annotated[int, msgspec.Meta(ge=MIN_RUN_PRIORITY, le=MAX_RUN_PRIORITY)]
    # The unfinished runs below it (children, theirs, detached ones too) take it as well.
    descendants: bool = False


class DescendantsPriorityRead(Camel):
    # The runs below that took the priority; those skipped (their row was locked at that moment:
    # the same request again changes them); their queued jobs moved in line.
    changed: int
    skipped: int
    jobs: int


class PriorityResponse(Camel):
    execution_id: UUID
    # The execution's status (unchanged by the request).
    status: str
    priority: int
    previous: int
    # False when it had that priority already (nothing written, nothing logged).
    changed: bool
    # Its queued jobs moved in line (0 while a worker holds the run or it waits: its next job
    # carries the new priority).
    jobs: int
    # With descendants: what the runs below it did (null without).
    descendants: DescendantsPriorityRead | None = None


class EmptyRequest(Camel, forbid_unknown_fields=True):
    """The body of a request that takes none (resume, redrive, a workflow's publish, archive, disable and
    enable): absent, or `{}`. Anything else is a 400, so that a field the client thought would be kept
    (a reason, a version to publish) is not silently dropped."""


class ControlResponse(Camel):
    execution_id: UUID
    # The execution's status after the request.
    status: str
    # cancel: cancelled | requested | too_late | already_requested | already_cancelled; suspend: suspended |
    # requested | too_late | already_suspended | already_requested; resume: resumed | withdrawn.
    outcome: str


class SignalRequest(Camel, forbid_unknown_fields=True):
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    # Idempotency key: the same signalId for the same execution is one signal.
    signal_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    # Delivered only to a wait with this key (or one without a key). An integer is its decimal
    # digits, as a wait's key rendered from a number is.
    correlation_key: Annotated[str, msgspec.Meta(min_length=1, max_length=500)] | int | None = None


class SignalResponse(Camel):
    signal_id: str
    # consumed (a waiting node took it) | buffered (kept for a wait to come) | duplicate (this
    # signalId was delivered before: waitId and nodeId are the first delivery's).
    outcome: str
    wait_id: UUID | None
    node_id: str | None
    execution_status: str


class BroadcastRequest(Camel, forbid_unknown_fields=True):
    payload: dict[str, Any] = msgspec.field(default_factory=dict)
    # The same signal to each run (a run's idempotency key, as for one run's signal); generated when
    # left out, and answered: send it again with the same id to reach the runs it did not.
    signal_id: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = None
    # Only waits with this key (an integer is its decimal digits); left out: only waits without one.
    correlation_key: Annotated[str, msgspec.Meta(min_length=1, max_length=500)] | int | None = None
    # Only runs of this workflow.
    workflow_id: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")] | None = None
    # At most this many runs (those waiting longest first).
    limit: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1000


class BroadcastDeliveryRead(Camel):
    execution_id: UUID
    workflow_id: str | None
    # consumed | buffered (its wait was resolved meanwhile: kept for a wait to come) | duplicate (the
    # run had this signalId) | ended (it ended meanwhile: passed over) | signal_id_reused (the run took
    # another signal under this signalId: passed over)
    outcome: str
    wait_id: UUID | None
    node_id: str | None


class BroadcastResponse(Camel):
    signal_id: str
    deliveries: list[BroadcastDeliveryRead]
    # Runs whose matching waits are still open (past `limit`, or waiting since): send the same
    # signalId again to reach them.
    remaining: int


class EventDeliveryRead(Camel):
    trigger_id: UUID
    workflow_id: str
    # started (a run: executionId) | refused (the workflow could not start one: reason)
    outcome: str
    execution_id: UUID | None
    reason: str | None


class EventPublished(Camel):
    event_id: str
    source: str
    type: str
    # The (source, id) was published before: nothing was started; the first time's deliveries.
    duplicate: bool
    received_at: datetime
    deliveries: list[EventDeliveryRead]


class WaitRead(Camel):
    id: UUID
    node_id: str
    attempt: int
    # timer | signal | approval
    kind: str
    # open | fired | received | approved | rejected | timed_out | withdrawn
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


class RunWaitRead(WaitRead):
    """A wait in a list of several executions' waits (GET /api/v1/waits)."""

    execution_id: UUID


class ApprovalDecisionRead(Camel):
    principal: str
    decision: str
    decided_at: datetime
    comment: str | None = None


class ApprovalEscalationRead(Camel):
    # Who may decide too, from when (the approval's start and its escalation's `after`).
    approvers: list[str]
    at: datetime


class ApprovalRead(Camel):
    id: UUID
    execution_id: UUID
    workflow_id: str
    node_id: str
    # open | approved | rejected | timed_out | withdrawn
    state: str
    title: str | None
    description: str | None
    # Who may decide, how many approvals it needs, and the quorum as the node asked for it ("any",
    # "all" or a number).
    approvers: list[str]
    required: int | None
    quorum: int | str | None
    created_at: datetime
    expires_at: datetime | None
    # When its quorum decided it (null while open, and for one withdrawn or timed out undecided).
    decided_at: datetime | None
    result: Any
    decisions: list[ApprovalDecisionRead]
    # When it stopped taking decisions: decided, timed out, or withdrawn (its run ended).
    closed_at: datetime | None = None
    # Its escalation (README "Waiting node kinds"), null without one.
    escalation: ApprovalEscalationRead | None = None


class DecisionRequest(Camel, forbid_unknown_fields=True):
    decision: Literal["approve", "reject"]
    comment: Annotated[str, msgspec.Meta(max_length=4000)] | None = None


class DecisionResponse(Camel):
    approval_id: UUID
    execution_id: UUID
    node_id: str
    # open (more decisions needed) | approved | rejected
    state: str
    approvals: int
    rejections: int
    required: int


class AttemptRead(Camel):
    id: UUID
    node_id: str
    action_type: str
    attempt: int
    status: str
    parameters: Any
    outputs: Any
    error: Any
    worker: str | None
    start_time: datetime
    end_time: datetime
    # A forEach item attempt's item index (null for a node's own attempts).
    item_index: int | None = None
    # Cut short by its worker (handed back on shutdown, or lost): did not use up the retry budget.
    interrupted: bool = False


class EventRead(Camel):
    id: int
    node_id: str | None
    type: str
    at: datetime
    principal: str | None
    details: dict[str, Any]


class HealthRead(Camel):
    status: str
    database: str | None = None


class DeadLetterRead(Camel):
    id: int
    kind: str
    execution_id: UUID | None
    workflow_id: str | None
    node_id: str | None
    job_id: int | None
    payload: dict[str, Any]
    error: Any
    attempts: int
    created_at: datetime
    redriven_at: datetime | None
    redriven_by: str | None
    # Closed without a redrive: acknowledged by an operator, run_ended (a job failure whose run
    # finished after recovery), or superseded (a child's, by its parent's redrive). Open means
    # neither redriven nor closed.
    closed_at: datetime | None = None
    closed_by: str | None = None
    close_reason: str | None = None
    close_note: str | None = None


class AcknowledgeRequest(Camel, forbid_unknown_fields=True):
    # Why it needs nothing more ("customer cancelled", "fixed by hand"): kept with the letter.
    note: Annotated[str, msgspec.Meta(max_length=2000)] | None = None


class DeadLetterList(Camel):
    items: list[DeadLetterRead]
    next_cursor: str | None


class RedriveResponse(Camel):
    dead_letter_id: int
    execution_id: UUID
    action: str
    status_url: str


class ActionTypeRead(Camel):
    type: str
    connector: str
    description: str
    parameters_schema: dict[str, Any]


class ConnectionWrite(Camel, forbid_unknown_fields=True):
    kind: str
    # Write-only: stored encrypted, never returned.
    secret: str
    # Workflow ids that may use it, or ["*"] for every workflow. Omitted: none for a new
    # connection, unchanged for an existing one (rotating a secret keeps its allow-list).
    allowed_workflows: list[str] | None = None


class ConnectionAccess(Camel, forbid_unknown_fields=True):
    # Replaces the list: workflow ids, or ["*"] for every workflow; [] for none.
    allowed_workflows: list[str]


class ConnectionRead(Camel):
    name: str
    kind: str
    key_id: str
    created_at: datetime
    created_by: str | None
    updated_at: datetime
    allowed_workflows: list[str]


class ResourceLinkRead(Camel):
    link_id: int
    resource_type: str
    resource_key: str
    external_id: str | None
    action: str
    execution_id: UUID | None
    workflow_id: str | None
    node_id: str | None
    at: datetime


class ProblemEntry(msgspec.Struct):
    pointer: str
    detail: str
    code: str | None = None
    # A bad query value's parameter (its pointer is "/<name>").
    parameter: str | None = None


class ProblemDetails(msgspec.Struct):
    """RFC 9457 problem details (application/problem+json)."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    instance: str | None = None
    errors: list[ProblemEntry] | None = None
    # A 403 for want of a role (role_required): the role that would have been enough.
    requiredRole: str | None = None
    # A 422 template_error: the template that failed, and where in it (when the engine says).
    template: str | None = None
    line: int | None = None
    column: int | None = None
    # A 409 workflow_has_executions (deleting a workflow): how many runs it has.
    executionCount: int | None = None


class TriggerWrite(Camel, forbid_unknown_fields=True):
    kind: str
    name: str
    config: dict[str, Any] = msgspec.field(default_factory=dict)
    enabled: bool = True
    # A webhook's signing secret (default: a generated one, answered once); never for a schedule.
    secret: str | None = None
    # The priority of the runs it starts (README "Run priority"); null: their workflow's.
    priority: Annotated[int, msgspec.Meta(ge=MIN_RUN_PRIORITY, le=MAX_RUN_PRIORITY)] | None = None


class TriggerPatch(Camel, forbid_unknown_fields=True):
    name: str | None = None
    enabled: bool | None = None
    config: dict[str, Any] | None = None
    # A number sets it; null clears it (the workflow's again); left out, unchanged.
    priority: Annotated[int, msgspec.Meta(ge=MIN_RUN_PRIORITY, le=MAX_RUN_PRIORITY)] | msgspec.UnsetType | None = (
        msgspec.UNSET
    )


# The longest the secret a rotation replaces may stay valid: a week.
MAX_PREVIOUS_SECRET_SECONDS = 7 * 86_400


class SecretRotation(Camel, forbid_unknown_fields=True):
    # The new secret (default: a generated one); answered once, as at creation.
    secret: str | None = None
    # How long the secret it replaces still verifies deliveries (0: not at all), while the sender
    # is switched over.
    previous_valid_seconds: Annotated[int, msgspec.Meta(ge=0, le=MAX_PREVIOUS_SECRET_SECONDS)] = 0


class TriggerRead(Camel):
    id: UUID
    workflow_id: str
    kind: str
    name: str
    enabled: bool
    config: dict[str, Any]
    # Whether a webhook has a signing secret (the secret itself is shown once, at creation).
    has_secret: bool
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    # Schedules: the next tick due (null until a scheduler computed it) and the last one fired.
    next_tick_at: datetime | None
    last_tick_at: datetime | None
    # Why a schedule stopped firing, if it did.
    error: str | None
    # Webhooks: where senders POST.
    hook_url: str | None = None
    # A signed webhook whose secret was rotated: until when the one it replaced still verifies.
    previous_secret_until: datetime | None = None
    # The priority of the runs it starts; null: their workflow's (README "Run priority").
    priority: int | None = None
    # The generated or given secret, in the creation answer only.
    secret: str | None = None
    # GET /api/v1/triggers only: its latest runs, newest first (at most 5), and whether it has more
    # (GET /api/v1/executions?triggerId= lists them all).
    recent_runs: list[RecentRunRead] | None = None
    more_runs: bool | None = None


class RecentRunRead(Camel):
    id: UUID
    status: str
    created_at: datetime


class DeliveryRead(Camel):
    """A delivery to a webhook, whatever its outcome (dw.webhook_deliveries; never its body)."""

    id: int
    # The sender's id (its delivery id header), else "sha256:" + the hash the hook's answer gave it.
    delivery_id: str | None
    received_at: datetime
    # accepted | duplicate | not_activated | refused
    outcome: str
    # Why it was refused, not activated or a duplicate.
    reason: str | None
    # What the hook answered.
    status_code: int
    # The run it started, or the first delivery's run for a duplicate.
    execution_id: UUID | None
    body_bytes: int | None
    # An unsigned hook's claim of a body that its duplicateWindowSeconds let lapse.
    lapsed_at: datetime | None


class TickRead(Camel):
    """A schedule's tick that fired (dw.schedule_ticks)."""

    tick_at: datetime
    fired_at: datetime
    # The run it started (null: its workflow could not run, the schedule's error says why; or a run
    # the schedule started was still going, overlapped_by, under overlap skip).
    execution_id: UUID | None
    # Ticks the catch-up policy folded into this one after downtime.
    missed_ticks: int
    # The schedule's overlap policy: the newest run still going that it started none beside (skip)
    # or cancelled (cancelOther); for a catch-up's older tick under cancelOther, the newest tick's
    # run that replaced it; null when none was.
    overlapped_by: UUID | None = None
    # It waited (overlap bufferOne, bufferAll, cancelOther) for the schedule's runs to end before starting its
    # run: it waits still while executionId is null.
    buffered: bool = False
    # The run it started was removed by retention since: executionId names it still, and reading it
    # answers 404.
    run_removed: bool = False


class WorkerLeaseRead(Camel):
    # The worker's id as it names itself in leases and attempt rows (host/pid/random).
    worker_id: str
    runs_held: int
    nodes_running: int
    oldest_run_started_at: datetime | None
    lease_expires_at: datetime | None


class FetchLoopRead(Camel):
    id: int
    last_heartbeat: datetime
    # A heartbeat within DW_STALLED_WORKER_SECONDS.
    alive: bool
    jobs_doing: int


class WorkersRead(Camel):
    # Workers holding leases on this tenant's runs now.
    leases: list[WorkerLeaseRead]
    # Procrastinate's registered fetch loops (every worker process has DW_WORKER_FETCHERS of them).
    fetch_loops: list[FetchLoopRead]


class WhoAmIRead(Camel):
    # The caller's id (a token's sub; loose mode: X-Principal-Id), None for an anonymous caller.
    principal_id: str | None
    principal_type: str | None
    tenant: str
    # The roles held as granted (loose mode: every role), in the order viewer, operator, author, admin.
    roles: list[str]
    # "strict" (a bearer token) or "loose" (the X-Principal-Id and X-Tenant-Id headers).
    auth_mode: str
    # Strict mode: until when the token is accepted (its exp, with the leeway).
    valid_until: datetime | None = None
