"""The exception hierarchy. Each class's docstring is its default message."""

from __future__ import annotations

from typing import Any


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


class InvalidInput(DataWorkflowsError):
    """The input is invalid."""

    code = "invalid_input"


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


class WorkflowExists(Conflict):
    """A workflow with this id already exists."""

    code = "workflow_exists"


class WorkflowNotRunnable(Conflict):
    """The workflow cannot be executed in its current state."""

    code = "workflow_not_runnable"


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
