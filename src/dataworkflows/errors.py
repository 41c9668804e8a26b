"""The exception hierarchy. Each class's docstring is its default message. SqlState names the
SQLSTATE codes the engine's own SQL raises; dataworkflows.db maps each one to a class here."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class SqlState(StrEnum):
    """`RAISE ... USING ERRCODE = 'DWnnn'` in sql/. tests/unit/test_data_layer.py fails when SQL
    raises a code that is not a member here, or a member that dataworkflows.db does not map."""

    # No workflow with this id.
    WORKFLOW_NOT_FOUND = "DW001"
    # The workflow cannot start an execution: not Active, disabled, or without a compiled plan.
    WORKFLOW_NOT_RUNNABLE = "DW002"
    # The workflow has no version with this number.
    VERSION_NOT_FOUND = "DW003"
    # Archiving a Draft: it was never published, so there is nothing to archive.
    NOTHING_TO_ARCHIVE = "DW004"
    # The dead letter is already redriven or closed, or its run has nothing left to redrive.
    DEAD_LETTER_CLOSED = "DW005"
    # No dead letter with this id.
    DEAD_LETTER_NOT_FOUND = "DW006"
    # A start's request id names a run that another request (a different trigger) started.
    REQUEST_ID_REUSED = "DW007"
    # Deleting a workflow that has executions (DETAIL: how many): runs are the audit log.
    WORKFLOW_HAS_EXECUTIONS = "DW008"
    # The caller's fencing token is not the execution's current lease (another worker holds it).
    LEASE_LOST = "DW010"
    # The node is not in a state that allows an attempt (or this outcome).
    NODE_NOT_RUNNABLE = "DW011"
    # No execution with this id.
    EXECUTION_NOT_FOUND = "DW012"
    # A worker's write broke an invariant the procedure checks (an unknown outcome, a count of edge
    # decisions that does not match the node's edges): an engine bug, never the input's fault.
    WORKER_INVARIANT = "DW013"
    # The execution has already ended: it takes no more signals, cancel or suspend requests.
    EXECUTION_ENDED = "DW014"
    # The control request does not apply in the run's state (resume a run that is not suspended,
    # suspend one that is being cancelled).
    CONTROL_CONFLICT = "DW015"
    # No approval with this id.
    APPROVAL_NOT_FOUND = "DW016"
    # The caller is not one of the approval's approvers.
    NOT_AN_APPROVER = "DW017"
    # The approval is already decided, or this approver has already decided it.
    APPROVAL_DECIDED = "DW018"
    # A signal id already named another signal of the execution (another name, correlation key or
    # payload).
    SIGNAL_ID_REUSED = "DW019"
    # A published workflow version's definition or checksum was to be changed.
    VERSION_IMMUTABLE = "DW020"
    # An execution event was to be updated, deleted or truncated: the log is append-only.
    EVENTS_APPEND_ONLY = "DW021"
    # A published event's (source, id) already named another event (another type, subject or data).
    EVENT_ID_REUSED = "DW022"
    # No trigger with this id.
    TRIGGER_NOT_FOUND = "DW030"
    # A schedule's cron expression or time zone is not valid (dw.schedule_v1).
    INVALID_SCHEDULE = "DW031"
    # Work that needs a tenant ran without one, or a transaction of one tenant tried to work for
    # another (dw.enter_tenant_v1): an engine bug, never the input's fault.
    TENANT_REQUIRED = "DW040"


class DataWorkflowsError(Exception):
    """A DataWorkflows error occurred."""

    code = "error"

    def __init__(self, message: str | None = None, **attributes: Any) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        self.attributes = attributes
        for key, value in attributes.items():
            setattr(self, key, value)

    @property
    def message(self) -> str:
        return str(self.args[0]) if self.args else ""


class ConfigurationError(DataWorkflowsError):
    """The configuration is invalid."""

    code = "configuration_error"


class DefinitionError(DataWorkflowsError):
    """The workflow definition is invalid."""

    code = "invalid_definition"

    def __init__(self, problems: list[Any], message: str | None = None) -> None:
        super().__init__(message or f"the workflow definition has {len(problems)} problem(s)")
        self.problems = problems


class ConnectionsNotAllowed(DefinitionError):
    """A definition names stored connections whose allow-lists do not name its workflow (one
    problem per node parameter)."""

    code = "connection_not_allowed"


class ConnectionKindsMismatch(DefinitionError):
    """A definition names stored connections whose kind is not its actions' connector (one problem
    per node parameter)."""

    code = "connection_kind_mismatch"


class InvalidTriggerConfig(DefinitionError):
    """A schedule's or a webhook's config is invalid (one problem per field, like a definition's)."""

    code = "invalid_trigger_config"


class ConnectionNotAllowed(DataWorkflowsError):
    """A stored connection's allow-list does not name the workflow that asks for it (at run time:
    the node fails; at publish: the definition is refused)."""

    code = "connection_not_allowed"


class ConnectionSecretTooShort(DataWorkflowsError):
    """A connection's value is too short for the run's scrubber to look for (dataworkflows.scrubbing
    MIN_LENGTH), so it could reach logs, errors and outputs: at run time the node fails, without the
    action seeing it. PUT /api/v1/connections refuses such a secret; an environment connection, or
    one stored before that check, is refused here."""

    code = "secret_too_short"

    def __init__(self, connection: str, minimum: int) -> None:
        super().__init__(
            f"connection {connection!r} holds a value shorter than {minimum} characters, which could not be "
            "kept out of logs, errors and outputs; store a real credential",
            connection=connection,
        )


class ConnectionKindMismatch(DataWorkflowsError):
    """A stored connection's kind is not the connector of the action that asks for it (at run time:
    the node fails; at publish: the definition is refused)."""

    code = "connection_kind_mismatch"

    def __init__(self, connection: str, kind: str, action_type: str, connector: str) -> None:
        # Names the connection and the kinds, never any part of the secret.
        super().__init__(
            f"connection {connection!r} has kind {kind!r}, but {action_type} takes a {connector!r} connection "
            "(GET /api/v1/connections lists each connection's kind)",
            connection=connection,
            kind=kind,
            action_type=action_type,
            connector=connector,
        )


class InvalidInput(DataWorkflowsError):
    """The input is invalid."""

    code = "invalid_input"

    def __init__(self, message: str | None = None, *, problems: list[Any] | None = None, **attributes: Any) -> None:
        super().__init__(message, **attributes)
        # validation.Problem entries (a JSON pointer into the request body each), when the input has
        # fields to point at: answered as the problem details' errors[].
        self.problems = list(problems or [])


class ValueTooLarge(InvalidInput):
    """PostgreSQL cannot hold a value this large in one piece (a single allocation is at most 1 GB).
    Written, it is the input's fault (its code stays invalid_input); read, the request sent nothing
    too large: the API answers that a stored value cannot be answered (stored_value_too_large)."""


class HeaderRefused(DataWorkflowsError):
    """A request header's value is not taken: not UTF-8 text, too long, or with a control character.
    The message names the header and the rule, never the value."""

    code = "bad_request"


class NotFound(DataWorkflowsError):
    """The resource was not found."""

    code = "not_found"


class WorkflowNotFound(NotFound):
    """The workflow was not found."""

    code = "workflow_not_found"


class ExecutionNotFound(NotFound):
    """The execution was not found."""

    code = "execution_not_found"


class Conflict(DataWorkflowsError):
    """The request conflicts with the current state."""

    code = "conflict"


class TemplateInUse(Conflict):
    """A document template (or set) that published workflow versions render cannot be deleted."""

    code = "template_in_use"

    def __init__(self, what: str, uses: str) -> None:
        super().__init__(
            f"{what} is rendered by published workflow versions: {uses}. A rollback may publish any "
            "version of a workflow again: archive those workflows (and let their runs finish) first"
        )


class WorkflowHasExecutions(Conflict):
    """A workflow with executions cannot be deleted: its runs are the audit log."""

    code = "workflow_has_executions"

    def __init__(self, message: str | None = None, *, detail: str | None = None, **attributes: Any) -> None:
        super().__init__(message, **attributes)
        # How many (dw.delete_workflow_v1 says it as the error's DETAIL); the problem's executionCount.
        self.execution_count = int(detail) if detail and detail.isdigit() else None


class RequestIdReused(Conflict):
    """The request id already started an execution with a different trigger."""

    code = "request_id_reused"


class SignalIdReused(Conflict):
    """The signal id already named another signal of the execution."""

    code = "signal_id_reused"


class EventIdReused(Conflict):
    """A CloudEvent's (source, id) already named another event of the tenant."""

    code = "event_id_reused"


class WorkflowExists(Conflict):
    """A workflow with this id already exists."""

    code = "workflow_exists"


class TriggerNameTaken(Conflict):
    """Another trigger of the tenant has this kind and name (unique per tenant and kind)."""

    code = "trigger_name_taken"


class TooManyEventTriggers(Conflict):
    """One event would match more of the tenant's enabled event triggers than DW_MAX_EVENT_TRIGGERS."""

    code = "too_many_event_triggers"


class Immutable(Conflict):
    """The record cannot be changed: a published version, or the execution log."""

    code = "immutable"


class WorkflowNotRunnable(Conflict):
    """The workflow cannot be executed in its current state."""

    code = "workflow_not_runnable"


class ExecutionEnded(Conflict):
    """The execution has already ended."""

    code = "execution_ended"


class Forbidden(DataWorkflowsError):
    """The caller may not do this."""

    code = "forbidden"


class InvariantViolation(DataWorkflowsError):
    """A worker's write broke an invariant of the procedure it called (an engine bug)."""

    code = "invariant_violation"


class LeaseLost(DataWorkflowsError):
    """This worker no longer holds the execution's lease; its writes are refused."""

    code = "lease_lost"


class NodeNotRunnable(DataWorkflowsError):
    """The node is not in a state that allows an attempt."""

    code = "node_not_runnable"


class DatabaseUnavailable(DataWorkflowsError):
    """The database is unreachable."""

    code = "database_unavailable"


class MigrationError(DataWorkflowsError):
    """A migration failed."""

    code = "migration_failed"


class DatabaseNewerError(MigrationError):
    """A newer release migrated the database: this one leaves it alone."""

    code = "database_newer"


def first_line(said: object, *, or_else: str = "") -> str:
    """The first line of an error's text (a driver's error carries PostgreSQL's CONTEXT after it), or
    `or_else` when it says nothing."""
    return (str(said).strip().splitlines() or [or_else])[0]
