"""The action contract and registry.

An action is a type name, a msgspec ``Params`` struct and ``async execute(ctx, params)`` returning an
``ActionResult``. Built-in actions register here; other packages add theirs through the
``dataworkflows.actions`` entry-point group (each entry point names an action class, which is
instantiated, or an action instance).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol
from uuid import UUID

import msgspec
import structlog

from dataworkflows.errors import ConfigurationError, DataWorkflowsError
from dataworkflows.statuses import AttemptStatus

ENTRY_POINT_GROUP = "dataworkflows.actions"


class ActionError(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """Why an attempt did not succeed. ``retry_after`` (seconds) overrides the backoff."""

    code: str
    message: str
    retry_after: float | None = None
    details: dict[str, Any] | None = None


class ResourceLink(msgspec.Struct, frozen=True, rename="camel", omit_defaults=True):
    """An external resource an action created or touched (stored with the node's outcome)."""

    resource_type: str
    resource_key: str
    external_id: str
    data: dict[str, Any] | None = None


class ActionResult(msgspec.Struct, frozen=True):
    status: AttemptStatus
    outputs: dict[str, Any] = msgspec.field(default_factory=dict)
    error: ActionError | None = None
    resource_links: tuple[ResourceLink, ...] = ()

    @classmethod
    def succeeded(cls, outputs: dict[str, Any] | None = None) -> ActionResult:
        return cls(AttemptStatus.SUCCEEDED, outputs or {})

    @classmethod
    def failed(cls, code: str, message: str, **details: Any) -> ActionResult:
        return cls(AttemptStatus.FAILED, error=ActionError(code, message, details=details or None))

    @classmethod
    def retriable(cls, code: str, message: str, retry_after: float | None = None) -> ActionResult:
        return cls(AttemptStatus.RETRIABLE_FAILURE, error=ActionError(code, message, retry_after))


class ResourceStore(Protocol):
    """Resource links as actions see them (dataworkflows.resources.DatabaseResources)."""

    async def claim(
        self,
        resource_type: str,
        key: str,
        *,
        workflow_id: str,
        execution_id: UUID,
        node_id: str,
        attempt: int,
        compensating: bool = False,
    ) -> Any:
        """Claims the key for this attempt; `compensating`: the attempt is its node's compensation's
        (its own claim owner: its attempt numbers are its step's, not its node's)."""
        ...

    async def link(
        self,
        resource_type: str,
        key: str,
        external_id: str,
        *,
        workflow_id: str,
        execution_id: UUID,
        node_id: str,
        data: dict[str, Any] | None = None,
    ) -> str: ...

    async def release(
        self,
        resource_type: str,
        key: str,
        *,
        execution_id: UUID,
        node_id: str,
        attempt: int,
        compensating: bool = False,
    ) -> None: ...

    async def linked(self, resource_type: str, external_ids: list[str]) -> set[str]:
        """Which of these external ids a key of this type is linked to already, or was until a
        compensation released it (undone: never an in-doubt create's item)."""
        ...


class SecretSource(Protocol):
    async def get(self, name: str, *, workflow_id: str | None = None) -> Any:
        """A connection's secret (dataworkflows.credentials.Secret). An action's services answer for
        the attempt's workflow whatever `workflow_id` says, and refuse a connection whose allow-list
        does not name it (ConnectionNotAllowed) or, stored, whose kind is not the action's connector
        (ConnectionKindMismatch)."""
        ...


@dataclass(frozen=True)
class ActionServices:
    """What connector actions use: credentials by connection name, the SSRF-guarded HTTP client,
    resource links, and service base URLs (overridable for tests and on-premise endpoints)."""

    credentials: SecretSource
    http: Any
    resources: ResourceStore
    endpoints: Mapping[str, str] = field(default_factory=dict)
    # What core.template.render uses (actions.template_render.DocumentServices); None: it cannot run.
    documents: Any = None


@dataclass(frozen=True)
class ActionContext:
    """What an action may know about the attempt it runs in."""

    execution_id: UUID
    workflow_id: str
    workflow_version: int
    node_id: str
    attempt: int
    max_attempts: int
    trigger: Mapping[str, Any]
    principal_id: str | None = None
    log: Any = field(default_factory=lambda: structlog.get_logger("dataworkflows.action"))
    services: ActionServices | None = None
    # Attempts of this node (or forEach item) made before its latest redrive: the generation of
    # its idempotency key (0 until a redrive).
    generation: int = 0
    # Whether this is the node's compensation (README "Compensation"): it acts under the node's id,
    # but its requests are not the node's, so its idempotency key is its own.
    compensating: bool = False

    @property
    def idempotency_key(self) -> str:
        """One key per node (or forEach item) and redrive: an attempt that is interrupted and runs
        again, and a retry (after a timeout, a lost connection or an error answer: the target may
        have acted on the first call), send the same key, so a de-duplicating receiver acts once;
        a redrive (a person asked for the work to be done again) sends a new one.
        execution:node[#item]:generation; a compensation's execution:node:compensation:generation
        (it sent its node's key: a receiver that de-duplicates by key took the refund for the
        charge, and answered it with the charge's stored answer or refused it)."""
        if self.compensating:
            return f"{self.execution_id}:{self.node_id}:compensation:{self.generation}"
        return f"{self.execution_id}:{self.node_id}:{self.generation}"

    def require_services(self) -> ActionServices:
        if self.services is None:
            raise DataWorkflowsError("this action needs connector services, which this runtime does not provide")
        return self.services


class Action(Protocol):
    type_name: ClassVar[str]
    description: ClassVar[str]
    # The external system the action talks to (core, http, slack, monday...), for the catalog.
    connector: ClassVar[str]
    Params: ClassVar[type[msgspec.Struct]]

    async def execute(self, ctx: ActionContext, params: Any) -> ActionResult: ...


class UnknownActionType(DataWorkflowsError):
    """The action type is not registered."""

    code = "unknown_action_type"


def connector_of(action: Any) -> str:
    """The action's connector (the kind of stored connection it takes); "core" for an action that
    declares none (an installed package's action may not: the protocol does not require it)."""
    connector = getattr(action, "connector", "core")
    return connector if isinstance(connector, str) else "core"


class ActionRegistry:
    """Action types by name."""

    def __init__(self, actions: Iterable[Action] = ()) -> None:
        self._actions: dict[str, Action] = {}
        for action in actions:
            self.register(action)

    def register(self, action: Action) -> None:
        if not isinstance(getattr(action, "type_name", None), str):
            raise TypeError(f"{action!r} has no type_name")
        self._actions[action.type_name] = action

    def get(self, type_name: str) -> Action:
        try:
            return self._actions[type_name]
        except KeyError:
            raise UnknownActionType(f"unknown action type {type_name!r}", type_name=type_name) from None

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._actions

    def types(self) -> list[str]:
        return sorted(self._actions)


def builtin_actions() -> list[Action]:
    from dataworkflows.actions.echo import EchoAction
    from dataworkflows.actions.http import HttpRequestAction
    from dataworkflows.actions.monday import MondayCreateItemAction, MondayGetItemsAction, MondayUpdateItemAction
    from dataworkflows.actions.slack import SlackPostMessageAction
    from dataworkflows.actions.template_render import TemplateRenderAction

    return [
        EchoAction(),
        HttpRequestAction(),
        SlackPostMessageAction(),
        MondayGetItemsAction(),
        MondayCreateItemAction(),
        MondayUpdateItemAction(),
        TemplateRenderAction(),
    ]


def load_entry_point_actions() -> list[Action]:
    """Actions that installed packages declare in the dataworkflows.actions entry-point group."""
    actions: list[Action] = []
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry_point.load()
            action = loaded() if isinstance(loaded, type) else loaded
            if not isinstance(getattr(action, "type_name", None), str):
                # ActionRegistry.register's TypeError was a traceback, exit 1 (a review).
                raise TypeError(f"{action!r} is not an action (it has no type_name)")
            actions.append(action)
        except Exception as exc:
            # A package's import error (a dependency of its own missing) was a traceback, and a
            # worker or an API that met it hung (a review): one line naming the package, exit 2.
            raise ConfigurationError(
                f"the action entry point {entry_point.name} ({entry_point.value}) of the {ENTRY_POINT_GROUP}"
                f" group cannot be loaded: {type(exc).__name__}: {exc}; fix or uninstall the package that"
                " declares it"
            ) from None
    return actions


def default_registry() -> ActionRegistry:
    builtins = builtin_actions()
    taken: dict[str, tuple[str, type]] = {action.type_name: ("built in", type(action)) for action in builtins}
    plugins: list[Action] = []
    for action in load_entry_point_actions():
        # A second action of a type name silently replaced the first: an installed package could
        # take over core.http.request (its destination checks and secret scrubbing with it) without
        # a word (a review). One type, one action.
        if action.type_name in taken:
            said, kind = taken[action.type_name]
            if kind is type(action):
                # The same action under a second entry-point name (an old name kept): one action, not
                # two to uninstall one of (a review).
                continue
            raise ConfigurationError(
                f"two actions are named {action.type_name!r} ({said}, and"
                f" {type(action).__module__}.{type(action).__qualname__} from the {ENTRY_POINT_GROUP} group):"
                " an installed package may not replace an action; uninstall one of them"
            )
        taken[action.type_name] = (f"{type(action).__module__}.{type(action).__qualname__}", type(action))
        plugins.append(action)
    return ActionRegistry([*builtins, *plugins])
